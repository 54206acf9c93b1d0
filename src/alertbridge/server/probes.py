"""The probes (`/healthz`, `/health`, `/readyz`, `/metrics`), and the operator app's answer for a path
or a method nothing serves (counted and logged as a refused webhook: senders reach it too)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alertbridge import logs
from alertbridge.config import Config
from alertbridge.delivery.dispatcher import Dispatcher
from alertbridge.metrics import Metrics
from alertbridge.routing.router import Router
from alertbridge.store.base import Store

log = logs.get("alertbridge.app")


def probe_routes(config: Config, store: Store, router: Router, dispatcher: Dispatcher, metrics: Metrics) -> list[Route]:
    """Alive, ready (store reachable, both loops running) and the Prometheus page."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> Response:
        problems = []
        try:
            await store.ping()
        except Exception as exc:
            problems.append(f"store: {exc}")
        if not router.running:
            problems.append("router is not running")
        if not dispatcher.running:
            problems.append("dispatcher is not running")
        if problems:
            return JSONResponse({"ok": False, "problems": problems}, status_code=503)
        return JSONResponse({"ok": True, "paused": config.delivery.paused})

    async def metrics_page(request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/health", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
        Route("/metrics", metrics_page, methods=["GET"]),
    ]


def not_found(metrics: Metrics) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The handler for 404 and 405: `{"ok": false, "error": …}`, as ingress answers."""

    async def handler(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            metrics.refused.labels("-", "unknown_path").inc()
            log.warning("refused", endpoint=None, status=404, reason="unknown_path", path=request.url.path)
            return JSONResponse({"ok": False, "error": f"no endpoint at {request.url.path}"}, status_code=404)
        return JSONResponse({"ok": False, "error": str(getattr(exc, "detail", exc))}, status_code=status)

    return handler
