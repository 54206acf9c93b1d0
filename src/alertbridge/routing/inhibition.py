"""Inhibition, as Alertmanager's `inhibit_rules`: while a source alert fires, its targets are muted.

An alert fires while its episode is open (`routing/episodes.py`); the episodes row keeps what the
matchers can read of the event that last moved it (`silences.values_of`), so the router knows the
firing alerts' labels without reading their events. For each routing batch the router builds an
`Inhibitor` from the store's open alerts, tells it every step the batch's events take (an alert
that fires in the batch inhibits the batch's later events), and asks it, per event, whether a rule
mutes it: the event matches the rule's target matchers, and an alert other than its own (an alert
never inhibits itself) that matches the source matchers fires with the same values of every
`equal` label (a label both lack is equal, as in Alertmanager). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alertbridge.events import Event
from alertbridge.routing.silences import Matcher, value_of

Alert = tuple[str, str]  # (org, alert) as the episodes table keys it


@dataclass(frozen=True)
class InhibitRule:
    name: str
    sources: tuple[Matcher, ...]
    targets: tuple[Matcher, ...]
    equal: tuple[str, ...]

    def is_source(self, values: Mapping[str, str]) -> bool:
        return all(m.holds(values.get(m.name, "")) for m in self.sources)

    def is_target(self, event: Event) -> bool:
        return all(m.matches(event) for m in self.targets)


@dataclass(frozen=True)
class Firing:
    """An open alert as the episodes table keeps it: the event that last moved it, and its values."""

    event_id: str
    values: Mapping[str, str]


@dataclass
class Inhibitor:
    """The firing source alerts of each rule, kept up to date through a routing batch."""

    rules: tuple[InhibitRule, ...]
    # rule index → the alerts firing now that match its source matchers
    sources: list[dict[Alert, Firing]] = field(default_factory=list)

    @classmethod
    def of(cls, rules: Iterable[InhibitRule], open_alerts: Iterable[Mapping[str, Any]]) -> Inhibitor:
        """From the store's open alerts (rows with org, alert, event_id and labels: `values_of`)."""
        inhibitor = cls(tuple(rules))
        inhibitor.sources = [{} for _ in inhibitor.rules]
        for row in open_alerts:
            inhibitor.moved((row["org"], row["alert"]), True, row["event_id"], row["labels"] or {})
        return inhibitor

    def moved(self, alert: Alert, firing: bool, event_id: str, values: Mapping[str, str]) -> None:
        """An alert opened, repeated or closed its episode: it fires (or not) with these values now."""
        for rule, found in zip(self.rules, self.sources, strict=True):
            if firing and rule.is_source(values):
                found[alert] = Firing(event_id, values)
            else:
                found.pop(alert, None)

    def mutes(self, event: Event, alert: Alert | None) -> dict[str, Any] | None:
        """The trace step of the first rule that mutes the event, naming the source alert; or None."""
        for rule, found in zip(self.rules, self.sources, strict=True):
            if not found or not rule.is_target(event):
                continue
            wanted = {name: value_of(event, name) for name in rule.equal}
            for source, firing in found.items():
                if source == alert or source[0] != event.org:
                    continue
                if all(firing.values.get(name, "") == value for name, value in wanted.items()):
                    return _step(rule, source[1], firing, wanted)
        return None


def _step(rule: InhibitRule, alert: str, firing: Firing, equal: Mapping[str, str]) -> dict[str, Any]:
    shown = ", ".join(f"{m.name}={firing.values.get(m.name, '')!r}" for m in rule.sources)
    same = " with the same " + ", ".join(f"{k}={v!r}" for k, v in equal.items()) if equal else ""
    return {
        "result": "inhibited",
        "rule": rule.name,
        "by_alert": alert,
        "by_event": firing.event_id,
        "equal": dict(equal),
        "source_matchers": [str(m) for m in rule.sources],
        "target_matchers": [str(m) for m in rule.targets],
        "why": f"inhibit rule {rule.name!r}: alert {alert} ({shown}) is firing{same}, so this is muted",
    }
