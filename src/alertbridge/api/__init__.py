"""The admin API under /api/v1: what came in, what was done with it and why, and replay.

Described by OpenAPI at /api/v1/openapi.json (browsable at /api/v1/docs). Every request carries
an API token (`Authorization: Bearer …`, made with `alertbridge tokens create`); a token belongs
to one org and sees only that org: anything of another org is a 404, as if it did not exist.
Roles: `viewer` reads; `member` and `admin` may also replay; `admin` may also make endpoints and
targets (`api/objects/`). Objects that come from the YAML file (endpoints, targets, routes,
teams) are marked `provisioned` and are read-only here. Seed 004's team routing
(`/config/me`, `/internal/routing/lookup`) authenticates teams and internal services instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI

from alertbridge import __version__
from alertbridge.api import deliveries, events, inbox, integrations, routes, silences
from alertbridge.api import teams as team_api
from alertbridge.api.deps import Context
from alertbridge.config import Config
from alertbridge.routing.teams import TeamDirectory
from alertbridge.store.base import Store

if TYPE_CHECKING:
    from alertbridge.api.objects.service import Objects


def admin_api(
    config: Config,
    store: Store,
    teams: TeamDirectory,
    clock: Callable[[], float] = time.time,
    objects: Objects | None = None,
) -> FastAPI:
    """The FastAPI app mounted at /api/v1: one router per resource, the server's parts on its state."""
    api = FastAPI(
        title="alertbridge admin API",
        version=__version__,
        description=__doc__,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    api.state.context = Context(config, store, clock, teams, objects)
    if objects is not None:
        from alertbridge.api.objects.routes import router as object_routes

        api.include_router(object_routes)
    for resource in (events, deliveries, inbox, integrations, routes, silences, team_api):
        api.include_router(resource.router)
    return api
