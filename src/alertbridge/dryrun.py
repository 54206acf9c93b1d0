"""`alertbridge send --dry-run`: what routing would do with a payload now, given what the store holds.

The decision alone can mislead: an action whose once-per-ticket key was used already is not
sent again, an action that needs a link not made yet waits for it, and paused deliveries wait in
the outbox, and a silence or a maintenance window active now mutes it, as an inhibit rule does while
an alert fires. So the dry run reads the store as the router would (links, teams, echoes, used keys,
silences, firing alerts),
through a read-only opening that never creates a database, and says what would really happen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from alertbridge import targets as target_types
from alertbridge.config import Config
from alertbridge.events import Event
from alertbridge.metrics import Metrics
from alertbridge.routing import compile_rules
from alertbridge.routing.decide import Decision, decide
from alertbridge.routing.router import Router
from alertbridge.routing.silences import silencer
from alertbridge.routing.teams import TeamDirectory
from alertbridge.store import StoreUnavailable, masked, open_store

WITHOUT_STATE = "the decision below does not know the store's state (once-per-ticket keys used, links, teams)"


@dataclass
class Preview:
    notes: list[str] = field(default_factory=list)  # about the run as a whole: the store, a pause
    decisions: list[tuple[Event, Decision]] = field(default_factory=list)


async def preview(config: Config, url: str, events: Sequence[Event], clock: Callable[[], float]) -> Preview:
    """Each event's decision as the router would make it now, with what would not go out and why."""
    rules = compile_rules(config)
    targets = target_types.configure(config)
    result = Preview()
    store = open_store(url)
    try:
        try:
            present = await store.open_existing()
        except StoreUnavailable as exc:
            present = False
            result.notes.append(f"cannot read the store ({exc}): {WITHOUT_STATE}")
        else:
            if not present:
                result.notes.append(f"no store at {masked(url)} yet (nothing created): {WITHOUT_STATE}")
        if present:
            router = Router(
                store,
                rules,
                targets,
                Metrics(),
                on_deliveries=lambda: None,
                clock=clock,
                ignore_actors={e.name: e.ignore_actors for e in config.endpoints},
                episodes={e.name: e.episodes.effects() for e in config.endpoints if e.episodes is not None},
                echo_systems={e.source for e in config.endpoints},
                echo_window=config.delivery.echo_window,
                teams=TeamDirectory(config),
            )
            claimed: dict[str, str] = {}  # once-keys used before, or by an earlier event of this payload
            for event in events:
                decision = await router.preview(event)
                keys = [d.idempotency_key for d in decision.deliveries if d.idempotency_key.startswith("key:")]
                claimed = {**(await store.deliveries_with_keys(event.org, keys)), **claimed}
                _annotate(decision, claimed)
                result.decisions.append((event, decision))
        else:
            for event in events:
                muted = silencer(rules.windows, event, clock())  # the file's windows; stored silences unknown
                decision = (
                    Decision("silenced", [muted])
                    if muted
                    else decide(event, rules.routes, targets, rules.templates, clock)
                )
                _annotate(decision, {})
                result.decisions.append((event, decision))
    finally:
        await store.close()
    if config.delivery.paused and any(d.deliveries for _, d in result.decisions):
        result.notes.append(
            "deliveries are paused (delivery.paused: true): what is sent below would wait in the outbox"
            " until the flag is removed and the service restarted"
        )
    return result


def _annotate(decision: Decision, claimed: dict[str, str]) -> None:
    """Say, on each action of the trace, what would keep it from going out now."""
    by_id = {d.id: d for d in decision.deliveries}
    for step in decision.trace:
        for action in step.get("actions", []):
            delivery = by_id.get(action.get("delivery", ""))
            if delivery is None:
                continue
            key = delivery.idempotency_key
            first = claimed.get(key)
            if first is not None:
                once = key.removeprefix("key:")
                action["not_sent"] = f"would not be sent: once-per-ticket key {once} already used by delivery {first}"
            elif action.get("waiting"):
                waiting: Any = action.pop("waiting")
                action["not_sent"] = f"would wait for link: {str(waiting).removeprefix('for ')}"
            if key.startswith("key:"):
                claimed.setdefault(key, f"{delivery.id} (an earlier action of this dry run)")
