"""Builds the ASGI app from a configuration: the three loops' parts, the operator's app (API,
console, probes) behind ingress, and the lifespan that starts and stops them (`server/`)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.routing import Mount

from alertbridge import targets as target_types
from alertbridge.api import admin_api
from alertbridge.api.alertmanager import alertmanager_api
from alertbridge.api.integrations import integrations_api
from alertbridge.api.objects.service import Objects
from alertbridge.config import Config
from alertbridge.console import console_routes
from alertbridge.delivery.dispatcher import Dispatcher, default_transport
from alertbridge.delivery.retention import Janitor
from alertbridge.delivery.transport import Transport
from alertbridge.ingress import Ingress
from alertbridge.metrics import Metrics
from alertbridge.routing import Rules, compile_rules
from alertbridge.routing.router import Router
from alertbridge.routing.teams import TeamDirectory
from alertbridge.server.lifespan import Runtime, lifespan
from alertbridge.server.live import Live, endpoint_of
from alertbridge.server.probes import not_found, probe_routes
from alertbridge.server.reload import Reload
from alertbridge.sources.base import Endpoint
from alertbridge.store import Store, masked, open_store, store_url
from alertbridge.targets import ConfiguredTarget
from alertbridge.vault import Vault


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
    router, dispatcher = build_loops(config, services, store, metrics, rules, targets, teams)
    ingresses: list[Ingress] = []  # made last: what the API saves changes its endpoints

    def endpoints() -> MutableMapping[str, Endpoint]:
        return ingresses[0].endpoints

    vault = Vault()
    objects = Objects(
        config, store, vault, Live(config, endpoints, targets, router, dispatcher, services.clock), services.clock
    )
    reload = Reload(store, objects, endpoints, vault)
    # Other replicas' commits wake this one's router and dispatcher, and what they saved through the
    # API (endpoints, targets, integrations) goes live here too (PostgreSQL's LISTEN/NOTIFY).
    store.subscribe(on_events=router.wake, on_deliveries=dispatcher.wake, on_config=reload.config_changed)
    run = Runtime(
        store,
        teams,
        reload,
        objects,
        router,
        dispatcher,
        Janitor(store, config.retention, services.clock),
        services.clock,
        started=lambda: {
            "endpoints": sorted(endpoints()),
            "targets": sorted(targets),
            "routes": len(rules.routes),
            "store": described,
        },
    )
    ingress = Ingress(
        build_endpoints(config, services.clock),
        store,
        rules.templates,
        metrics,
        on_stored=router.wake,
        fallback=operator_app(config, run, vault, endpoints, metrics),
        clock=services.clock,
        ingest_timeout=config.server.ingest_timeout,
    )
    ingresses.append(ingress)
    return ingress


def operator_app(
    config: Config,
    run: Runtime,
    vault: Vault,
    endpoints: Callable[[], MutableMapping[str, Endpoint]],
    metrics: Metrics,
) -> Starlette:
    """Whatever ingress does not take: seed 001's integrations, the console, the admin API, the probes."""
    store, clock = run.store, run.clock
    return Starlette(
        routes=[
            *integrations_api(store, endpoints, vault, clock),
            *console_routes(store, clock),
            Mount("/api/v1", admin_api(config, store, run.teams, clock, run.objects)),
            Mount("/api/v2", alertmanager_api(config, store, run.teams, clock)),
            *probe_routes(config, store, run.router, run.dispatcher, metrics),
        ],
        exception_handlers={404: not_found(metrics), 405: not_found(metrics)},
        lifespan=lifespan(run),
    )


def build_loops(
    config: Config,
    services: Services,
    store: Store,
    metrics: Metrics,
    rules: Rules,
    targets: MutableMapping[str, ConfiguredTarget],
    teams: TeamDirectory,
) -> tuple[Router, Dispatcher]:
    """The router and the dispatcher it wakes, with what each reads of the configuration."""
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
        episodes={e.name: e.episodes.effects() for e in config.endpoints if e.episodes is not None},
        echo_systems=echo_systems,
        echo_window=config.delivery.echo_window,
        teams=teams,
        lease=config.routing.lease,
    )
    return router, dispatcher
