"""/api/v1/routes: the routing rules from the configuration file (provisioned, read-only)."""
# No `from __future__ import annotations` here: FastAPI reads these annotations at run time.

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from alertbridge.api.deps import Caller, Ctx

router = APIRouter(tags=["configuration"])


class RouteOut(BaseModel):
    name: str
    match: dict[str, Any]
    actions: list[dict[str, Any]]
    continue_: bool = Field(alias="continue")
    provisioned: bool = True
    read_only: bool = True


@router.get("/routes", response_model=list[RouteOut])
async def routes(ctx: Ctx, caller: Caller) -> list[RouteOut]:
    return [
        RouteOut.model_validate(
            {
                "name": r.name,
                "match": r.match,
                "actions": [{"target": a.target, "action": a.action, **a.fields} for a in r.actions],
                "continue": r.continue_,
            }
        )
        for r in ctx.config.routes
    ]
