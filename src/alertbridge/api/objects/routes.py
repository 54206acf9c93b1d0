"""/api/v1/endpoints, /api/v1/targets and /api/v1/catalog: endpoints and targets listed with the
file's, made, changed and removed through the admin API.

    GET    /api/v1/endpoints            the file's (provisioned, read-only) and the API's, secrets masked
    POST   /api/v1/endpoints            {name, source, path, <the source's settings>}   (admins)
    GET    /api/v1/endpoints/{name}
    PUT    /api/v1/endpoints/{name}     the whole object again; a masked secret sent back keeps it
    DELETE /api/v1/endpoints/{name}
    … and the same for /api/v1/targets ({name, type, timeout?, rate_limit?, retry?, <its settings>}).

An object belongs to the caller's org: another org's is a 404. Names (and endpoint paths) are
unique on the server, because webhooks arrive by path and routes name targets. What the file
declares is changed in the file only (409). Changes go live at once (`server/live.py`) and are loaded
again at start-up (`service.Objects`).
"""
# No `from __future__ import annotations` here: FastAPI reads these annotations at run time.

from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Response
from pydantic import BaseModel

from alertbridge import sources
from alertbridge import targets as target_types
from alertbridge.api.deps import Caller, Context, Ctx, Principal
from alertbridge.api.objects.checks import Kind, Rejected, secret_fields
from alertbridge.api.objects.service import EndpointOut, Objects, TargetOut


class KindOut(BaseModel):
    name: str
    fields: list[str]
    required: list[str]
    secrets: list[str]


class Catalog(BaseModel):
    """What the console's forms offer: each source and target type with its settings."""

    sources: list[KindOut]
    targets: list[KindOut]


def _kind_out(name: str, model: type[BaseModel]) -> KindOut:
    fields = model.model_fields
    return KindOut(
        name=name,
        fields=list(fields),
        required=[n for n, f in fields.items() if f.is_required()],
        secrets=secret_fields(model),
    )


router = APIRouter(tags=["configuration"])
Object = Annotated[dict[str, Any], Body(description="the object as the YAML file would hold it")]


def admin(caller: Principal) -> None:
    if caller.role != "admin":
        raise HTTPException(403, "only an admin can change endpoints and targets")


def objects_of(ctx: Context) -> Objects:
    """The app's `Objects` (these routes are mounted only when it has one)."""
    assert ctx.objects is not None
    return ctx.objects


async def run(work: Awaitable[Any]) -> Any:
    try:
        return await work
    except Rejected as exc:
        raise HTTPException(exc.status, exc.message) from None


@router.get("/catalog", response_model=Catalog)
async def catalog(caller: Caller) -> Catalog:
    """Every source and target type, with its settings and which of them are secrets."""
    return Catalog(
        sources=[_kind_out(n, sources.get(n).settings) for n in sources.names()],
        targets=[_kind_out(n, target_types.get(n).settings) for n in target_types.names()],
    )


def kind_routes(kind: Kind, one: type[BaseModel], many: Any, docs: dict[str, str]) -> None:
    """The five routes of one kind (`/endpoints`, `/targets`), each answering with the kind's own
    model. Each handler is named as it would be written out (list_endpoints, create_endpoint, …):
    FastAPI makes the operation's id and summary of it. `docs` describe the operations, by verb."""
    plural = f"/{kind}s"

    async def listing(caller: Caller, ctx: Ctx) -> Any:
        return await objects_of(ctx).listing(kind, caller.org)

    async def create(body: Object, caller: Caller, ctx: Ctx) -> Any:
        admin(caller)
        return await run(objects_of(ctx).save(kind, caller.org, body, caller.user or caller.name))

    async def get(name: str, caller: Caller, ctx: Ctx) -> Any:
        return await run(objects_of(ctx).get(kind, caller.org, name))

    async def update(name: str, body: Object, caller: Caller, ctx: Ctx) -> Any:
        admin(caller)
        return await run(objects_of(ctx).save(kind, caller.org, body, caller.user or caller.name, name))

    async def delete(name: str, caller: Caller, ctx: Ctx) -> Response:
        admin(caller)
        await run(objects_of(ctx).delete(kind, caller.org, name, caller.user or caller.name))
        return Response(status_code=204)

    for verb, path, method, handler, model, status in (
        ("list", plural, "GET", listing, many, 200),
        ("create", plural, "POST", create, one, 201),
        ("get", f"{plural}/{{name}}", "GET", get, one, 200),
        ("update", f"{plural}/{{name}}", "PUT", update, one, 200),
        ("delete", f"{plural}/{{name}}", "DELETE", delete, None, 204),
    ):
        router.add_api_route(
            path,
            handler,
            methods=[method],
            name=f"list_{kind}s" if verb == "list" else f"{verb}_{kind}",
            description=docs.get(verb, ""),
            response_model=model,
            status_code=status,
        )


kind_routes(
    "endpoint",
    EndpointOut,
    list[EndpointOut],
    {
        "list": "Where webhooks come in: the file's (provisioned, read-only) and the API's; secrets masked.",
        "create": "A new endpoint, taking webhooks at once: `{name, source, path, …the source's settings}`.",
        "update": "Replace an endpoint made through the API; a masked secret sent back keeps the saved one.",
    },
)
kind_routes(
    "target",
    TargetOut,
    list[TargetOut],
    {
        "list": "Where actions go: the file's (shared by every org, read-only) and the org's own; secrets masked.",
        "create": "A new target, usable at once: `{name, type, …the type's settings}`.",
        "delete": "Remove a target; its deliveries still queued go dead (replayable once it exists again).",
    },
)
