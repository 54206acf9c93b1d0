"""Builds the ASGI app from a configuration; its lifespan starts and stops the router and dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from alertbridge import logs
from alertbridge import targets as target_types
from alertbridge.admin_api import admin_api
from alertbridge.config import Config
from alertbridge.console import console_routes
from alertbridge.delivery.dispatcher import Dispatcher, default_transport
from alertbridge.delivery.transport import Transport
from alertbridge.ingress import Ingress
from alertbridge.integrations_api import KIND as INTEGRATION_KIND
from alertbridge.integrations_api import apply as apply_integration
from alertbridge.integrations_api import integrations_api
from alertbridge.lifecycle import Janitor
from alertbridge.live import Live, endpoint_of
from alertbridge.metrics import Metrics
from alertbridge.objects_api import Objects
from alertbridge.routing import compile_rules
from alertbridge.routing.router import Router
from alertbridge.routing.teams import TeamDirectory
from alertbridge.sources.base import Endpoint
from alertbridge.store import Store, masked, open_store, store_url
from alertbridge.targets import ConfiguredTarget
from alertbridge.team_api import team_api
from alertbridge.vault import Vault, VaultUnavailable

log = logs.get("alertbridge.app")


@dataclass
class Services:
    """What the app runs, passed in so tests and embedders can supply time, randomness and HTTP."""

    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)
    transport_factory: Callable[[ConfiguredTarget], Transport] = default_transport


def build_endpoints(config: Config, clock: Callable[[], float]) -> dict[str, Endpoint]:
    return {item.path: endpoint_of(item, config, clock) for item in config.endpoints}


def create_app(config: Config, services: Services | None = None, store: Store | None = None) -> Ingress:
    services = services or Services()
    url = store_url(config.store)
    described = masked(url) if store is None else type(store).__name__  # for the log: never a password
    store = store or open_store(url)
    metrics = Metrics()
    rules = compile_rules(config)
    targets = target_types.configure(config)
    teams = TeamDirectory(config)
    # Echoes can only come back from systems that send us webhooks.
    echo_systems = {e.source for e in config.endpoints}
    dispatcher = Dispatcher(
        store,
        targets,
        config.delivery,
        metrics,
        clock=services.clock,
        rng=services.rng,
        transport_factory=services.transport_factory,
        echo_systems=echo_systems,
        team_tokens={key: team.token.get_secret_value() for key, team in teams.teams.items()},
    )
    router = Router(
        store,
        rules,
        targets,
        metrics,
        on_deliveries=dispatcher.wake,
        clock=services.clock,
        ignore_actors={e.name: e.ignore_actors for e in config.endpoints},
        echo_systems=echo_systems,
        echo_window=config.delivery.echo_window,
        teams=teams,
        lease=config.routing.lease,
    )
    tasks: list[asyncio.Task[None]] = []
    reloads: set[asyncio.Task[None]] = set()

    async def apply_integrations() -> None:
        for org, kind, saved in await store.integrations():
            if kind == INTEGRATION_KIND:
                try:
                    apply_integration(live[0].endpoints, org, saved, vault)
                except VaultUnavailable as exc:
                    log.error("integration_not_applied", org=org, kind=kind, error=str(exc))

    async def reload_config() -> None:
        try:
            await objects.sync()
            await apply_integrations()
        except Exception as exc:  # the store hiccuped: the next change, or a restart, brings it in
            log.error("config_reload_failed", error=str(exc))

    def config_changed() -> None:
        task = asyncio.get_running_loop().create_task(reload_config())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    # Other replicas' commits wake this one's router and dispatcher, and what they saved through the
    # API (endpoints, targets, integrations) goes live here too (PostgreSQL's LISTEN/NOTIFY).
    store.subscribe(on_events=router.wake, on_deliveries=dispatcher.wake, on_config=config_changed)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        if teams.enabled:
            overridden = await store.provision_teams(*teams.provisioning(), services.clock())
            for claim in overridden:
                log.warning("claim_overridden", claim=claim, note="the configuration file decides")
        await apply_integrations()
        await objects.load()
        released = await store.release_claims(services.clock())
        if released:
            log.warning("released_claims", count=released, note="deliveries in flight when the last run stopped")
        tasks.append(asyncio.create_task(router.run(), name="router"))
        tasks.append(asyncio.create_task(dispatcher.run(), name="dispatcher"))
        tasks.append(asyncio.create_task(Janitor(store, config.retention, services.clock).run(), name="retention"))
        # What start-up made (modules, the API's models, templates) lives as long as the process: out
        # of the collector's sight, a full collection no longer walks it (80 ms of CPU, a p99 spike).
        gc.collect()
        gc.freeze()
        log.info(
            "started",
            endpoints=sorted(live[0].endpoints),
            targets=sorted(targets),
            routes=len(rules.routes),
            store=described,
        )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await dispatcher.close()
            await store.close()

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

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            metrics.refused.labels("-", "unknown_path").inc()
            log.warning("refused", endpoint=None, status=404, reason="unknown_path", path=request.url.path)
            return JSONResponse({"ok": False, "error": f"no endpoint at {request.url.path}"}, status_code=404)
        return JSONResponse({"ok": False, "error": str(getattr(exc, "detail", exc))}, status_code=status)

    api = team_api(config, store, teams, services.clock)
    vault = Vault()
    live: list[Ingress] = []  # the ingress, made below: integrations saved through the API change its endpoints
    applier = Live(config, lambda: live[0].endpoints, targets, router, dispatcher, services.clock)
    objects = Objects(config, store, vault, applier, services.clock)
    operator = Starlette(
        routes=[
            *api,
            *integrations_api(store, lambda: live[0].endpoints, vault, services.clock),
            *console_routes(store, services.clock),
            Mount("/api/v1", admin_api(config, store, services.clock, objects)),
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
            Route("/health", healthz, methods=["GET", "HEAD"]),
            Route("/readyz", readyz, methods=["GET", "HEAD"]),
            Route("/metrics", metrics_page, methods=["GET"]),
        ],
        exception_handlers={404: not_found, 405: not_found},
        lifespan=lifespan,
    )
    endpoints = build_endpoints(config, services.clock)
    ingress = Ingress(
        endpoints,
        store,
        rules.templates,
        metrics,
        on_stored=router.wake,
        fallback=operator,
        clock=services.clock,
        ingest_timeout=config.server.ingest_timeout,
    )
    live.append(ingress)
    return ingress
