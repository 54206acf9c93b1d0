"""Applies endpoints and targets saved through the API to the running server, without a restart.

Data keeps flowing one way (ingress → router → outbox → dispatcher → target), so a change is
made in that order's reverse when it adds and in its order when it removes: a new target gets
its transport in the dispatcher before the router can make deliveries for it; a removed one
leaves the router's view first, and its deliveries still queued go dead ("no longer
configured"), to be replayed once a target of that name exists again. An endpoint takes
webhooks as soon as it is in the ingress's map, and stops as soon as it leaves it.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping

from alertbridge import sources
from alertbridge.config import Config, EndpointConfig, TargetConfig
from alertbridge.delivery.dispatcher import Dispatcher
from alertbridge.routing.router import Router
from alertbridge.sources.base import Endpoint
from alertbridge.targets import ConfiguredTarget, configure_one


def endpoint_of(item: EndpointConfig, config: Config, clock: Callable[[], float]) -> Endpoint:
    """The runtime endpoint of a validated endpoint config (the file's or the API's)."""
    source = sources.get(item.source)
    return Endpoint(
        config=item,
        source=source,
        settings=source.settings.model_validate(item.extra),
        org=item.org or config.server.org,
        max_body_bytes=item.max_body_bytes or config.server.max_body_bytes,
        clock=clock,
    )


class Live:
    def __init__(
        self,
        config: Config,
        endpoints: Callable[[], MutableMapping[str, Endpoint]],
        targets: MutableMapping[str, ConfiguredTarget],
        router: Router,
        dispatcher: Dispatcher,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.endpoints = endpoints  # the ingress's map by path, made after this
        self.targets = targets  # the map the router and the dispatcher read
        self.router = router
        self.dispatcher = dispatcher
        self.clock = clock

    def put_endpoint(self, item: EndpointConfig) -> None:
        """Serve an endpoint (replacing the one of the same name, wherever its path was)."""
        self.remove_endpoint(item.name)
        episodes = item.episodes.effects() if item.episodes is not None else None
        self.router.endpoint_changed(item.name, item.source, item.ignore_actors, episodes)
        self.dispatcher.watch(item.source)
        self.endpoints()[item.path] = endpoint_of(item, self.config, self.clock)

    def remove_endpoint(self, name: str) -> None:
        live = self.endpoints()
        for path in [p for p, e in live.items() if e.name == name]:
            del live[path]
        self.router.endpoint_changed(name, None)

    def put_target(self, item: TargetConfig, org: str) -> None:
        target = configure_one(item, self.config.delivery.retry, org)
        self.dispatcher.prepare(target)
        self.targets[item.name] = target
        self.router.targets_changed()

    def remove_target(self, name: str) -> None:
        self.targets.pop(name, None)
        self.router.targets_changed()
        self.dispatcher.retire(name)
