"""The router task: routes stored events and writes their deliveries, in the background.

It wakes when ingress commits, and looks at the store every half second anyway, so events
stored by another process (`alertbridge send`) or left over from a crash are routed too.
Deciding and recording happen in one transaction per event; routing the same event twice
(a crash in between) writes nothing new because delivery keys are unique.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping

from alertbridge import logs
from alertbridge.metrics import Metrics
from alertbridge.routing import Rules
from alertbridge.routing.decide import decide
from alertbridge.store.base import Store
from alertbridge.targets import ConfiguredTarget

log = logs.get("alertbridge.router")

BATCH = 256
IDLE_POLL = 0.5


class Router:
    def __init__(
        self,
        store: Store,
        rules: Rules,
        targets: Mapping[str, ConfiguredTarget],
        metrics: Metrics,
        on_deliveries: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.rules = rules
        self.targets = targets
        self.metrics = metrics
        self.on_deliveries = on_deliveries
        self.clock = clock
        self._wake = asyncio.Event()
        self.running = False

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        self.running = True
        try:
            while True:
                self._wake.clear()
                try:
                    routed = await self.route_pending()
                except Exception as exc:  # the store hiccuped: the events wait, nothing is lost
                    log.error("routing_failed", error=str(exc))
                    routed = 0
                if routed < BATCH:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), IDLE_POLL)
        finally:
            self.running = False

    async def route_pending(self) -> int:
        events = await self.store.unrouted_events(BATCH)
        if not events:
            return 0
        writes = []
        for event in events:
            original = None
            in_reply_to = event.identifiers.get("in_reply_to")
            if in_reply_to:
                row = await self.store.get_event(in_reply_to)
                original = row.event if row else None
            decision = decide(event, self.rules.routes, self.targets, self.rules.templates, self.clock, original)
            writes.append((event, decision))
        results = await asyncio.gather(
            *(self.store.record_decision(e.id, d.status, d.trace, d.deliveries, self.clock()) for e, d in writes)
        )
        created = 0
        for (event, decision), existing in zip(writes, results, strict=True):
            created += sum(1 for x in existing if x is None)
            self.metrics.routed.labels(decision.status).inc()
            log.info(
                "routed",
                event_id=event.id,
                kind=event.kind,
                status=decision.status,
                deliveries=[d.id for d, x in zip(decision.deliveries, existing, strict=True) if x is None],
                already_done=[x for x in existing if x],
            )
        if created:
            self.on_deliveries()
        return len(events)
