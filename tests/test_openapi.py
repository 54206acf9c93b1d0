"""Every route the server answers under /api/v1 is in its OpenAPI document: the routes are read
from the app that `create_app` builds, the document from the running server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

from alertbridge.app import create_app
from alertbridge.config import Config
from alertbridge.store import open_store

from .conftest import Server

PREFIX = "/api/v1"


def served(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(path under /api/v1, method) of every route the API answers, but its own documentation."""
    docs = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    for context in iter_route_contexts(app.routes):
        path = str(context.path)
        if path in docs:
            continue
        for method in sorted(context.methods or ()):
            if method != "HEAD":  # answered with GET's headers, not an operation of its own
                yield path, method


def test_every_api_route_is_in_the_openapi_document(server_factory: Callable[..., Server]) -> None:
    server = server_factory("endpoints: []\n")
    operator: Any = create_app(Config(), store=open_store(server.store)).fallback  # what ingress does not take
    outside = [r.path for r in operator.routes if r.path.startswith(PREFIX) and not isinstance(r, Mount)]
    assert outside == [], "every /api/v1 route is FastAPI's"
    (mount,) = [r for r in operator.routes if isinstance(r, Mount) and r.path == PREFIX]

    spec = server.client.get(f"{PREFIX}/openapi.json").json()
    assert isinstance(mount.app, FastAPI)
    routes = sorted(served(mount.app))
    assert ("/config/me", "GET") in routes and ("/config/me", "PUT") in routes
    assert ("/internal/routing/lookup", "POST") in routes
    missing = [(path, method) for path, method in routes if method.lower() not in spec["paths"].get(path, {})]
    assert missing == []
