"""Seed 004's team routing API: teams read and claim their routing identifiers, and internal
services look up which team owns an identifier.

    GET  /api/v1/config/me                 Authorization: Bearer <team token>
    PUT  /api/v1/config/me                 {"routing": {"slack_channel_ids": [...], "services": [...]}}
    POST /api/v1/internal/routing/lookup   X-Internal-Token: <routing.internal_token>
                                           {"identifiers": {"slack_channel_id": "C0A4967KRBM"}}

A PUT replaces the team's claims of the kinds it names; claiming an identifier another team of
the org owns is refused with 409 and changes nothing. Team tokens are kept hashed in the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alertbridge import logs
from alertbridge.config import Config
from alertbridge.routing.teams import TeamDirectory, parse_claims, plural_view
from alertbridge.security import same_secret, token_hash
from alertbridge.sources import CLAIM_KINDS, EXAMPLE_CLAIM
from alertbridge.store.base import Store

log = logs.get("alertbridge.team_api")


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def team_api(config: Config, store: Store, teams: TeamDirectory, clock: Callable[[], float]) -> list[Route]:
    internal = config.routing.internal_token

    async def caller(request: Request) -> tuple[str, str] | Response:
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() != "bearer ":
            return _error(401, "Authorization: Bearer <team token> is required")
        found = await store.team_by_token(token_hash(auth[7:].strip()))
        if found is None:
            return _error(403, "this token belongs to no team")
        return found

    async def me(request: Request) -> Response:
        found = await caller(request)
        if isinstance(found, Response):
            return found
        org, name = found
        if request.method == "PUT":
            try:
                body = json.loads(await request.body())
            except ValueError:
                return _error(400, "the body is not JSON")
            claims, problem = parse_claims(body.get("routing") if isinstance(body, dict) else None)
            if problem:
                return _error(400, problem)
            conflicts = await store.set_claims(org, name, claims, clock())
            if conflicts:
                shown = [{"identifier": kind, "value": value, "team": owner} for kind, value, owner in conflicts]
                first = conflicts[0]
                return _error(
                    409,
                    f"{first[0]} {first[1]!r} already belongs to team {first[2]!r}: an identifier has one team per org",
                    conflicts=shown,
                )
            log.info("claims_changed", org=org, team=name, kinds=sorted(claims))
        claimed = await store.claims_of(org, name)
        return JSONResponse({"team": name, "org": org, "routing": plural_view(claimed)})

    async def lookup(request: Request) -> Response:
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
        match = await teams.find(store, org, pairs)
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

    return [
        Route("/api/v1/config/me", me, methods=["GET", "PUT"]),
        Route("/api/v1/internal/routing/lookup", lookup, methods=["POST"]),
    ]
