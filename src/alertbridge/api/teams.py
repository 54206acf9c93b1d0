"""Teams: the file's teams for operators (`/api/v1/teams`), and seed 004's team routing API, where
teams read and claim their routing identifiers and internal services look up which team owns one.

    GET  /api/v1/config/me                 Authorization: Bearer <team token>
    PUT  /api/v1/config/me                 {"routing": {"slack_channel_ids": [...], "services": [...]}}
    POST /api/v1/internal/routing/lookup   X-Internal-Token: <routing.internal_token>
                                           {"identifiers": {"slack_channel_id": "C0A4967KRBM"}}

A PUT replaces the team's claims of the kinds it names; claiming an identifier another team of
the org owns is refused with 409 and changes nothing. Team tokens are kept hashed in the store.
Seed 004's answers are its own (`{"error": …}`, bodies read as they come rather than validated by
FastAPI), so those handlers take the request and answer with JSON themselves; their OpenAPI
entries describe the bodies.
"""
# No `from __future__ import annotations` here: FastAPI reads these annotations at run time.

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from alertbridge import logs
from alertbridge.api.deps import Caller, Context, Ctx
from alertbridge.routing.teams import parse_claims, plural_view
from alertbridge.security import same_secret, token_hash
from alertbridge.sources import CLAIM_KINDS, EXAMPLE_CLAIM

log = logs.get("alertbridge.team_api")
router = APIRouter()


class TeamOut(BaseModel):
    name: str
    org: str
    slack_channel: str | None = None
    routing: dict[str, list[str]]
    provisioned: bool = True


@router.get("/teams", response_model=list[TeamOut], tags=["teams"])
async def teams(ctx: Ctx, caller: Caller) -> list[TeamOut]:
    config = ctx.config
    out = []
    for team in config.teams:
        org = team.org or config.server.org
        if org != caller.org:
            continue
        claims = await ctx.store.claims_of(org, team.name)
        out.append(TeamOut(name=team.name, org=org, slack_channel=team.slack_channel, routing=plural_view(claims)))
    return out


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI: the statuses a seed 004 handler answers besides 200, each `{"error": …}`."""
    error = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
    return {s: {"description": "refused", "content": {"application/json": {"schema": error}}} for s in statuses}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI: the JSON body a handler reads itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


IDENTIFIER_LISTS = {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}
CLAIMS_BODY = {"type": "object", "properties": {"routing": IDENTIFIER_LISTS}, "required": ["routing"]}
LOOKUP_BODY = {
    "type": "object",
    "properties": {
        "identifiers": {"type": "object", "additionalProperties": {"type": "string"}},
        "org_id": {"type": "string"},
    },
    "required": ["identifiers"],
}


async def _team(request: Request, ctx: Context) -> tuple[str, str] | Response:
    """The team whose token the request carries, or the refusal."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() != "bearer ":
        return _error(401, "Authorization: Bearer <team token> is required")
    found = await ctx.store.team_by_token(token_hash(auth[7:].strip()))
    if found is None:
        return _error(403, "this token belongs to no team")
    return found


async def _view(ctx: Context, org: str, name: str) -> Response:
    claimed = await ctx.store.claims_of(org, name)
    return JSONResponse({"team": name, "org": org, "routing": plural_view(claimed)})


@router.get("/config/me", tags=["team routing"], responses=_answers(401, 403))
async def read_claims(request: Request, ctx: Ctx) -> Response:
    """The calling team (by its team token) and the routing identifiers it claims."""
    found = await _team(request, ctx)
    if isinstance(found, Response):
        return found
    return await _view(ctx, *found)


@router.put(
    "/config/me", tags=["team routing"], responses=_answers(400, 401, 403, 409), openapi_extra=_body(CLAIMS_BODY)
)
async def change_claims(request: Request, ctx: Ctx) -> Response:
    """Replace the team's claims of the kinds the body names; an identifier another team of the org
    owns is a 409 (with every conflict) and nothing changes."""
    found = await _team(request, ctx)
    if isinstance(found, Response):
        return found
    org, name = found
    try:
        body = json.loads(await request.body())
    except ValueError:
        return _error(400, "the body is not JSON")
    claims, problem = parse_claims(body.get("routing") if isinstance(body, dict) else None)
    if problem:
        return _error(400, problem)
    conflicts = await ctx.store.set_claims(org, name, claims, ctx.clock())
    if conflicts:
        shown = [{"identifier": kind, "value": value, "team": owner} for kind, value, owner in conflicts]
        first = conflicts[0]
        return _error(
            409,
            f"{first[0]} {first[1]!r} already belongs to team {first[2]!r}: an identifier has one team per org",
            conflicts=shown,
        )
    log.info("claims_changed", org=org, team=name, kinds=sorted(claims))
    return await _view(ctx, org, name)


@router.post(
    "/internal/routing/lookup",
    tags=["team routing"],
    responses=_answers(400, 401, 403),
    openapi_extra=_body(LOOKUP_BODY),
)
async def lookup(request: Request, ctx: Ctx) -> Response:
    """Which team owns an identifier (for internal services: `X-Internal-Token`)."""
    config, teams = ctx.config, ctx.teams
    internal = config.routing.internal_token
    if internal is None:
        return _error(403, "internal lookups are off: set routing.internal_token in the configuration")
    given = request.headers.get("x-internal-token") or ""
    auth = request.headers.get("authorization", "")
    if not given and auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    if not given:
        return _error(401, "an internal credential is required: X-Internal-Token")
    if not same_secret(given, internal.get_secret_value()):
        return _error(403, "wrong internal credential")
    try:
        body = json.loads(await request.body())
    except ValueError:
        return _error(400, "the body is not JSON")
    identifiers = body.get("identifiers") if isinstance(body, dict) else None
    if not isinstance(identifiers, dict) or not identifiers:
        return _error(400, f'the body must be {{"identifiers": {{"{EXAMPLE_CLAIM.identifier}": "C…", ...}}}}')
    unknown = [k for k in identifiers if k not in CLAIM_KINDS.values()]
    if unknown:
        return _error(400, f"unknown identifier {unknown[0]!r}; known: {', '.join(teams.priority)}")
    org = str(body.get("org_id") or config.server.org)
    pairs = [(kind, str(identifiers[kind])) for kind in teams.priority if identifiers.get(kind)]
    match = await teams.find(ctx.store, org, pairs)
    if match is None:
        return JSONResponse({"found": False, "error": "No team found for identifiers", "identifiers": identifiers})
    return JSONResponse(
        {
            "found": True,
            "org_id": match.org,
            "team_node_id": match.name,
            "matched_by": match.matched_by,
            "team_token": teams.token(match.org, match.name),
        }
    )


# These two paths were Starlette routes in front of the API until FastAPI served them: HEAD was
# answered as GET, and a method they do not take, or a trailing slash, fell through to the API's
# 404 (not a 405, not a redirect). Kept so: seed 004's paths answer as they did.
ANY_METHOD = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


async def unserved() -> None:
    raise HTTPException(404, "Not Found")


router.add_api_route("/config/me", read_claims, methods=["HEAD"], include_in_schema=False)
for _path, _taken in (("/config/me", {"GET", "HEAD", "PUT"}), ("/internal/routing/lookup", {"POST"})):
    router.add_api_route(_path, unserved, methods=[m for m in ANY_METHOD if m not in _taken], include_in_schema=False)
    router.add_api_route(f"{_path}/", unserved, methods=list(ANY_METHOD), include_in_schema=False)
