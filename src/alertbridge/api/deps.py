"""What every /api/v1 handler may ask for: the server's parts (`Ctx`) and the authenticated caller
(`Caller`), as FastAPI dependencies, so the resource routers stay module-level and the assembly
(`api/__init__.py`) puts the parts on the app once."""
# No `from __future__ import annotations` here: FastAPI reads these annotations at run time.

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Query, Request
from pydantic import BaseModel

from alertbridge.auth import Refused, caller
from alertbridge.config import Config
from alertbridge.routing.teams import TeamDirectory
from alertbridge.store.base import Store

if TYPE_CHECKING:
    from alertbridge.api.objects.service import Objects


@dataclass(frozen=True)
class Context:
    """The server's parts the API reads and changes, kept on the FastAPI app's state."""

    config: Config
    store: Store
    clock: Callable[[], float]
    teams: TeamDirectory
    objects: "Objects | None" = None


class Principal(BaseModel):
    org: str
    role: str
    name: str
    user: str | None = None  # the user a token was made for (the inbox is per user)


def context(request: Request) -> Context:
    found: Context = request.app.state.context
    return found


async def principal(request: Request) -> Principal:
    """An API token or a console session; refused as FastAPI's `{"detail": …}` with its status."""
    ctx = context(request)
    try:
        found = await caller(request, ctx.store, ctx.clock)
    except Refused as exc:
        raise HTTPException(exc.status, exc.message) from None
    return Principal(org=found.org, role=found.role, name=found.name, user=found.user)


def user_of(caller: Principal) -> str:
    """The user a token was made for: the inbox is a user's, not an org's."""
    if caller.user is None:
        raise HTTPException(403, "this token is not a user's: make one with tokens create --user EMAIL")
    return caller.user


Ctx = Annotated[Context, Depends(context)]
Caller = Annotated[Principal, Depends(principal)]
Limit = Annotated[int, Query(ge=1, le=1000)]
