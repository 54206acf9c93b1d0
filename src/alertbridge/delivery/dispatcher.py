"""The dispatcher: claims due deliveries, sends them, records every attempt, schedules retries.

The retry loop lives here once; what an answer means lives with each target (`classify`).
A delivery is claimed with a lease: if this process dies mid-send, the lease runs out and
the delivery is sent again, which is safe for targets that dedupe (PagerDuty's dedup_key).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Collection, Mapping
from typing import Protocol

from alertbridge import logs
from alertbridge.config import DeliveryConfig
from alertbridge.delivery.alarms import Alarms
from alertbridge.delivery.backoff import exhausted, next_delay
from alertbridge.delivery.ratelimit import SlidingWindow
from alertbridge.delivery.transport import AiohttpTransport, Timeout, Transport, TransportError
from alertbridge.metrics import Metrics
from alertbridge.sources import refs
from alertbridge.store.base import Attempt, AttemptResult, Delivery, Inbox, NewDelivery, Outbox
from alertbridge.targets import ConfiguredTarget, Outcome
from alertbridge.targets.base import Sending
from alertbridge.templating.context import DEAD_WHY

log = logs.get("alertbridge.dispatcher")

ON_DEAD = "on_dead"  # an action's field: what to do once it is dead-lettered
EXPIRY_EVERY = 30.0  # seconds between looks for deliveries that waited too long for a link
IDLE_POLL = 0.5  # seconds between looks at the store when nothing wakes us (retries, replays, other processes)


class DispatchStore(Outbox, Inbox, Protocol):
    """The dispatcher's roles: its outbox, and the inbox that alarms and local targets (the inbox) write."""


def default_transport(target: ConfiguredTarget) -> Transport:
    return AiohttpTransport(target.config.timeout)


class Dispatcher:
    def __init__(
        self,
        store: DispatchStore,
        targets: Mapping[str, ConfiguredTarget],
        config: DeliveryConfig,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        transport_factory: Callable[[ConfiguredTarget], Transport] = default_transport,
        echo_systems: Collection[str] = (),
        team_tokens: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        self.echo_systems = frozenset(echo_systems)
        self.alarms = Alarms(config.failure_alert, store, targets)
        self.team_tokens = dict(team_tokens or {})
        self._next_expiry = 0.0
        self.store = store
        self.targets = targets
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.rng = rng or random.Random()
        self.transport_factory = transport_factory
        self.transports = {name: transport_factory(target) for name, target in targets.items()}
        self._retired: list[Transport] = []  # transports of changed or removed targets, closed at the end
        self.windows = {
            name: SlidingWindow(t.rate_limit.limit, t.rate_limit.per) for name, t in targets.items() if t.rate_limit
        }
        self._wake = asyncio.Event()
        self._sending: set[asyncio.Task[None]] = set()
        self.running = False

    def wake(self) -> None:
        self._wake.set()

    def prepare(self, target: ConfiguredTarget) -> None:
        """Ready the transport and rate window of a target saved through the API, before routing can use it.
        The old transport is kept open for sends already under way."""
        old = self.transports.get(target.name)
        if old is not None:
            self._retired.append(old)
        self.transports[target.name] = self.transport_factory(target)
        if target.rate_limit:
            self.windows[target.name] = SlidingWindow(target.rate_limit.limit, target.rate_limit.per)
        else:
            self.windows.pop(target.name, None)

    def retire(self, name: str) -> None:
        """Forget a removed target's transport (closed at the end) and window; its deliveries go dead."""
        old = self.transports.pop(name, None)
        if old is not None:
            self._retired.append(old)
        self.windows.pop(name, None)

    def watch(self, source: str) -> None:
        """A source that now sends us webhooks: changes made there by us come back as echoes."""
        self.echo_systems = self.echo_systems | {source}

    async def run(self) -> None:
        self.running = True
        try:
            while True:
                if self.config.paused:
                    await asyncio.sleep(IDLE_POLL)
                    continue
                claimed = await self._claim()
                if claimed == 0:
                    await self._idle()
        finally:
            self.running = False

    async def _claim(self) -> int:
        free = self.config.concurrency - len(self._sending)
        if free <= 0:
            return 0
        now = self.clock()
        capacity = {name: window.available(now) for name, window in self.windows.items()}
        limits = {name: (window.limit, window.per) for name, window in self.windows.items()}  # across replicas
        try:
            batch = await self.store.claim_deliveries(now, self.config.lease, free, capacity, limits)
        except Exception as exc:  # the store is down: keep the loop alive, try again shortly
            log.error("claim_failed", error=str(exc))
            return 0
        for delivery in batch:
            window = self.windows.get(delivery.target)
            if window is not None:
                window.take(now)
            task = asyncio.create_task(self._deliver(delivery))
            self._sending.add(task)
            task.add_done_callback(self._done)
        return len(batch)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._wake.set()  # capacity freed

    async def _expect_echoes(self, target: ConfiguredTarget, delivery: Delivery, now: float) -> None:
        """Before changing an object in a system that sends us webhooks, note the change we expect back."""
        echoes = [
            e
            for e in target.type.echo(target.settings, delivery.action, delivery.fields)
            if e.system in self.echo_systems
        ]
        if echoes:
            await self.store.expect_echoes(delivery, echoes, now)

    async def _expire_waiting(self, now: float) -> None:
        if now < self._next_expiry:
            return
        self._next_expiry = now + EXPIRY_EVERY
        try:
            expired = await self.store.expire_waiting(now, self.config.link_wait)
        except Exception as exc:
            log.error("expire_failed", error=str(exc))
            return
        for delivery_id, target in expired:
            self.metrics.deliveries.labels(target, "dead").inc()
            log.error("dead_lettered", delivery=delivery_id, target=target, reason="the link it waited for never came")

    async def _idle(self) -> None:
        timeout = IDLE_POLL
        now = self.clock()
        await self._expire_waiting(now)
        for window in self.windows.values():
            if window.available(now) <= 0:
                timeout = min(timeout, max(0.01, window.free_at(now) - now))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    async def _deliver(self, delivery: Delivery) -> None:
        self.metrics.in_flight.inc()
        try:
            await self._attempt(delivery)
        except Exception as exc:  # never let one delivery kill the loop; its lease will bring it back
            log.exception("delivery_crashed", delivery=delivery.id, error=str(exc))
        finally:
            self.metrics.in_flight.dec()

    async def _attempt(self, delivery: Delivery) -> None:
        target = self.targets.get(delivery.target)
        started = self.clock()
        status_code: int | None = None
        if target is not None and target.org is not None and target.org != delivery.org:
            target = None  # a target made through the API serves its own org only
        if target is None:
            outcome = Outcome("permanent", f"target {delivery.target!r} is no longer configured")
        else:
            await self._expect_echoes(target, delivery, started)
            outcome, status_code = await self._send(target, delivery)
        finished = self.clock()
        number = delivery.attempts + 1
        policy = target.retry if target else self.config.retry
        reason: str | None = None  # why the retries ran out, if they did

        if outcome.kind == "success":
            result = AttemptResult("delivered", finished, None, outcome.result, outcome.actor)
        elif outcome.kind == "permanent":
            result = AttemptResult("dead", finished, outcome.message)
        else:
            reason = exhausted(policy, number, delivery.budget_from, finished)
            if reason:
                result = AttemptResult("dead", finished, f"{outcome.message}; {reason}")
            else:
                delay = next_delay(policy, number, self.rng, outcome.retry_after)
                result = AttemptResult("pending", finished + delay, outcome.message)

        attempt = Attempt(delivery.id, number, started, finished - started, outcome.kind, status_code, outcome.message)
        follow_ups = self._follow_ups(delivery, outcome, finished) if result.status == "delivered" else []
        if result.status == "dead":
            follow_ups = self._on_dead(delivery, finished, _why_dead(outcome, status_code, number, reason))
        if self.alarms is not None and target is not None:
            follow_ups += await self.alarms.attempt(
                delivery, outcome.kind == "success", result.status == "dead", outcome.message, finished
            )
        links = []
        if result.status == "delivered" and outcome.created and delivery.event is not None:
            links = [(subject, made) for subject in refs(delivery.event) for made in outcome.created]
        released = await self.store.record_attempt(delivery, attempt, result, follow_ups, links)
        if follow_ups or released:
            self.wake()
        if released:
            log.info("link_released", delivery=delivery.id, links=links, released=released)

        label = "dead" if result.status == "dead" else outcome.kind
        self.metrics.deliveries.labels(delivery.target, outcome.kind).inc()
        if result.status == "dead":  # given up: its own series, so "dead" is a count of dead letters
            self.metrics.deliveries.labels(delivery.target, "dead").inc()
        self.metrics.send_seconds.labels(delivery.target).observe(finished - started)
        if result.status == "delivered" and delivery.event_received_at:
            self.metrics.end_to_end_seconds.labels(delivery.target).observe(finished - delivery.event_received_at)
        team = delivery.fields.get("team")
        if team:
            source = delivery.event.source if delivery.event else "-"
            self.metrics.team_deliveries.labels(source, str(team), label).inc()
            if result.status == "delivered" and delivery.event_received_at:
                elapsed = finished - delivery.event_received_at
                self.metrics.team_end_to_end_seconds.labels(source, str(team)).observe(elapsed)
        log_fields = dict(
            delivery=delivery.id,
            event_id=delivery.event_id,
            target=delivery.target,
            action=delivery.action,
            attempt=number,
            outcome=outcome.kind,
            status=status_code,
        )
        if result.status == "delivered":
            log.info("delivered", **log_fields)
        elif result.status == "dead":
            log.error("dead_lettered", reason=result.error, **log_fields)
        else:
            log.warning(
                "retry_scheduled",
                reason=outcome.message,
                retry_in=round(result.next_attempt_at - finished, 2),
                **log_fields,
            )

    def _on_dead(self, delivery: Delivery, now: float, why: str) -> list[NewDelivery]:
        """The action a route asked for when this one is given up (tell the team in Slack), once per death:
        keyed on this delivery and the start of its retry budget, which a replay moves, so a repeated
        record of the same death adds nothing and a replay that dies again tells the team again."""
        spec = delivery.fields.get(ON_DEAD)
        if not isinstance(spec, dict) or spec.get("target") not in self.targets:
            return []
        fields = {k: _with_why(v, why) for k, v in spec.items() if k not in ("target", "action")}
        return [
            NewDelivery.after(
                delivery,
                route=f"{delivery.route} → {delivery.target} (dead)",
                target=str(spec["target"]),
                action=str(spec.get("action")),
                fields=fields,
                key=f"dead:{delivery.id}:{delivery.budget_from!r}",
                now=now,
            )
        ]

    def _follow_ups(self, delivery: Delivery, outcome: Outcome, now: float) -> list[NewDelivery]:
        """Deliveries a success asks for, keyed on this delivery so a repeated success adds none."""
        made = []
        for index, follow in enumerate(outcome.follow_ups):
            target = self.targets.get(follow.target)
            if target is None:
                log.error("follow_up_dropped", delivery=delivery.id, reason=f"no target named {follow.target!r}")
                continue
            order = target.type.order_key(target.settings, follow.action, follow.fields)
            made.append(
                NewDelivery.after(
                    delivery,
                    route=f"{delivery.route} → {delivery.target}",
                    target=follow.target,
                    action=follow.action,
                    fields=follow.fields,
                    key=f"follow:{delivery.id}:{index}",
                    now=now,
                    order_key=f"{follow.target}:{order}" if order else None,
                )
            )
        return made

    async def _send(self, target: ConfiguredTarget, delivery: Delivery) -> tuple[Outcome, int | None]:
        team = delivery.fields.get("team")
        team_token = self.team_tokens.get((delivery.org, str(team))) if team else None
        sending = Sending(delivery.id, delivery.event, self.clock(), target.name, delivery.action, team_token)
        fields = {k: v for k, v in delivery.fields.items() if k != ON_DEAD}
        if target.type.local is not None:
            try:
                return await target.type.local(self.store, target.settings, delivery.action, fields, sending), None
            except Exception as exc:  # the store is busy or down: try again later
                return Outcome("retry", f"{type(exc).__name__}: {exc}"), None
        try:
            request = target.type.request(target.settings, delivery.action, fields, sending)
        except Exception as exc:
            return Outcome("permanent", f"cannot build the request: {type(exc).__name__}: {exc}"), None
        transport = self.transports.get(target.name)
        if transport is None:  # removed through the API while this was being sent
            return Outcome("retry", f"target {target.name!r} was changed while sending"), None
        try:
            response = await transport.send(request)
        except Timeout as exc:
            return Outcome("retry", str(exc)), None
        except TransportError as exc:
            return Outcome("retry", f"could not reach {target.name}: {exc}"), None
        return target.type.classify(response, target.settings, delivery.fields, sending), response.status_code

    async def close(self) -> None:
        """Stop; run it after the claim loop stopped. Sends under way get `shutdown_grace` to finish and
        be recorded: one cut off is sent again after a restart, a repeat where the target cannot dedupe."""
        if self._sending and self.config.shutdown_grace > 0:
            await asyncio.wait(set(self._sending), timeout=self.config.shutdown_grace)
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
        for transport in [*self.transports.values(), *self._retired]:
            await transport.close()


def _why_dead(outcome: Outcome, status: int | None, attempts: int, exhausted: str | None) -> str:
    """Why a delivery died, in words for the people an `on_dead` message tells: a refusal is not a
    receiver that stayed away, and retrying it would not have helped."""
    if outcome.kind == "permanent":
        if status is None:  # refused before any answer: the request could not be built, the target is gone
            return f"{outcome.message}, not retried"
        said = "" if outcome.message in ("", f"HTTP {status}") else f" ({outcome.message})"
        return f"refused with {status}{said}, not retried"
    after = (exhausted or "").removeprefix("gave up ") or f"after {attempts} attempts"
    return f"{after} (last: {outcome.message})"


def _with_why(value: object, why: str) -> object:
    """An on_dead field with `{{ dead.why }}` (rendered as DEAD_WHY when routed) made the real reason."""
    if isinstance(value, str):
        return value.replace(DEAD_WHY, why)
    if isinstance(value, dict):
        return {k: _with_why(v, why) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_why(v, why) for v in value]
    return value
