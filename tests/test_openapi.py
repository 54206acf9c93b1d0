"""Every route the server answers under /api/v1 is in its OpenAPI document: the routes are read
from the app that `create_app` builds, the document from the running server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from starlette.routing import Mount

from alertbridge.app import create_app
from alertbridge.config import Config
from alertbridge.store import open_store

from .conftest import Server

PREFIX = "/api/v1"


def served(app: FastAPI) -> Iterator[tuple[str, str, bool]]:
    """(path under /api/v1, method, in the schema?) of every route of the API, but its documentation."""
    docs = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    try:  # FastAPI 0.165 keeps an included router as one route, which this walks into
        from fastapi.routing import iter_route_contexts
    except ImportError:  # earlier FastAPI copies the included routes into the app's
        routes: list[Any] = list(app.routes)
    else:
        routes = list(iter_route_contexts(app.routes))
    for route in routes:
        path = str(route.path)
        if path not in docs:
            for method in sorted(route.methods or ()):
                yield path, method, bool(getattr(route, "include_in_schema", True))


def test_every_api_route_is_in_the_openapi_document(server_factory: Callable[..., Server]) -> None:
    server = server_factory("endpoints: []\n")
    operator: Any = create_app(Config(), store=open_store(server.store)).fallback  # what ingress does not take
    outside = [r.path for r in operator.routes if r.path.startswith(PREFIX) and not isinstance(r, Mount)]
    assert outside == [], "every /api/v1 route is FastAPI's"
    (mount,) = [r for r in operator.routes if isinstance(r, Mount) and r.path == PREFIX]

    spec = server.client.get(f"{PREFIX}/openapi.json").json()
    assert isinstance(mount.app, FastAPI)
    routes = sorted(served(mount.app))
    shown = [(path, method) for path, method, in_schema in routes if in_schema]
    assert {("/config/me", "GET"), ("/config/me", "PUT"), ("/internal/routing/lookup", "POST")} <= set(shown)
    missing = [(path, method) for path, method in shown if method.lower() not in spec["paths"].get(path, {})]
    assert missing == []
    # What a route leaves out of the document serves nothing of its own: HEAD (GET's answer without
    # its body), or seed 004's paths keeping the 404 they gave other methods before FastAPI served them.
    for path, method, in_schema in routes:
        if in_schema:
            continue
        answer = server.client.request(method, PREFIX + path.replace("{name}", "x"), headers={"X-Internal-Token": "x"})
        if answer.status_code != 404:
            assert method == "HEAD" and (path, "GET") in shown and answer.content == b"", (path, method)
