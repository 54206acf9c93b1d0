"""The routing decision for one event: which routes match, and the deliveries they ask for.

Pure: no I/O, no clock but the one passed in. The router task persists what this returns;
`alertbridge send --dry-run` prints it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alertbridge.events import Event
from alertbridge.ids import new_id
from alertbridge.routing.episodes import per_episode
from alertbridge.routing.repeats import InEpisode, per_repeat, repeat_of
from alertbridge.routing.routes import Route
from alertbridge.sources import refs
from alertbridge.store.base import NewDelivery
from alertbridge.targets import ConfiguredTarget
from alertbridge.templating.context import context
from alertbridge.templating.links import MissingLink, Ref, as_markers, missing_in
from alertbridge.templating.templates import Bound, RenderError, Templates


@dataclass
class Decision:
    status: str  # routed | unmatched | failed
    trace: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[NewDelivery] = field(default_factory=list)
    repeat_at: float | None = None  # when the next repeat interval of a matched route begins


def decide(
    event: Event,
    routes: list[Route],
    targets: Mapping[str, ConfiguredTarget],
    templates: Templates,
    clock: Callable[[], float],
    original: Event | None = None,
    links: Sequence[Ref] = (),
    team: Mapping[str, Any] | None = None,
    in_episode: InEpisode | None = None,
) -> Decision:
    subject = refs(event)  # its own name first, then the aliases the sources declare
    view = context(event, original, links, team, subject[0] if subject else None)
    bound = templates.bind(view)
    decision = Decision(status="unmatched")
    winner: str | None = None
    # Conditions see the event's fields, and `team.*` when a team owns what it is about.
    matchable = {**view["event"], "team": team} if team else view["event"]
    for route in routes:
        if winner is not None:
            decision.trace.append(
                {"route": route.name, "matched": False, "reasons": [f"not tried: {winner!r} matched first"]}
            )
            continue
        matched, reasons = route.check(matchable)
        step: dict[str, Any] = {"route": route.name, "matched": matched, "reasons": reasons}
        decision.trace.append(step)
        if not matched:
            continue
        if decision.status == "unmatched":
            decision.status = "routed"
        repeat = None
        if route.repeat_interval is not None and in_episode is not None:
            number, step["repeat"] = repeat_of(route.repeat_interval, in_episode, clock())
            repeat = (in_episode.alert, number)
            after = in_episode.opened_at + (number + 1) * route.repeat_interval
            decision.repeat_at = after if decision.repeat_at is None else min(decision.repeat_at, after)
        step["actions"] = []
        for index, action in enumerate(route.actions):
            step["actions"].append(_plan(event, route, index, action, targets, bound, clock, decision, repeat))
        if not route.continue_:
            winner = route.name
    if decision.status == "unmatched":
        decision.trace.append({"result": "no route matched: nothing will be sent"})
    return decision


def _plan(
    event: Event,
    route: Route,
    index: int,
    action: Any,
    targets: Mapping[str, ConfiguredTarget],
    templates: Bound,
    clock: Callable[[], float],
    decision: Decision,
    repeat: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """Render one action into a delivery, or record why it could not be. `repeat`: (the alert, its
    repeat interval) on a route with `repeat_interval` (`routing/repeats.py`)."""
    where = f"routes.{route.name}.actions[{index}]"
    try:
        target_name = str(templates.render(action.target, f"{where}.target"))
        target = targets.get(target_name)
        if target is None or (target.org is not None and target.org != event.org):  # another org's: not there
            raise RenderError(f"{where}.target: no target named {target_name!r}")
        defaults = target.type.actions.get(action.action)
        if defaults is None:
            raise RenderError(f"{where}.action: {target.type.name} has no action {action.action!r}")
        fields = templates.render({**defaults, **action.fields}, where)
        fields = {k: v for k, v in fields.items() if v is not None and v != ""}
        waiting = None
        if templates.context["links"].misses:  # a template asked for a link that is not there (yet)
            waiting, fields = _needs_link(event, target, action.action, fields)
        if action.key:
            key = per_episode(f"key:{templates.render(action.key, f'{where}.key')}", event.episode)
        elif repeat is not None:  # repeats of the alert are deduplicated without a key of the route's
            key = per_episode(f"key:alert:{repeat[0]}:{route.name}:{index}", event.episode)
        else:
            key = f"event:{event.id}:{route.name}:{index}"
        if repeat is not None:
            key = per_repeat(key, repeat[1])
        order = target.type.order_key(target.settings, action.action, fields)
    except RenderError as exc:
        decision.status = "failed"
        return {"target": action.target, "action": action.action, "error": str(exc)}
    delivery = NewDelivery(
        id=new_id(clock()),
        org=event.org,
        event_id=event.id,
        route=route.name,
        target=target_name,
        action=action.action,
        fields=fields,
        idempotency_key=key,
        order_key=f"{target_name}:{order}" if order else None,
        created_at=clock(),
        waiting_for=waiting,
    )
    decision.deliveries.append(delivery)
    step = {"target": target_name, "action": action.action, "fields": fields, "key": key, "delivery": delivery.id}
    if waiting:
        want, of = waiting["want"], waiting["refs"][0] if waiting["refs"] else ["?", "?", "?"]
        step["waiting"] = f"for the {want[0]} {want[1]} linked to {of[0]} {of[1]} {of[2]}"
    return step


def _needs_link(
    event: Event, target: ConfiguredTarget, action: str, fields: dict[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(what the delivery waits for or None, its fields). A link that is not there yet makes the
    delivery wait only if the action cannot be sent without it (`Target.needs`, read here, never
    probed by building a request); otherwise the field is left out."""
    missing = missing_in(fields)
    if not missing:
        return None, fields
    embedded = any(not isinstance(v, MissingLink) and missing_in(v) for v in fields.values())
    if not embedded and not target.type.waits_for_links:
        without = {k: v for k, v in fields.items() if not isinstance(v, MissingLink)}
        if target.type.can_send(action, without):
            return None, without
    first = missing[0]
    waiting = {"refs": [list(r) for r in refs(event)], "want": [first.system, first.type], "marker": first.marker}
    return waiting, as_markers(fields)
