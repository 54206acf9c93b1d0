"""What templates see: the event, its labels, the event it answers, its links, its team.

Ingress renders an endpoint's labels and response with it, routing an action's fields: both read
it here, along the flow, rather than one reaching into the other."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alertbridge.events import Event, to_dict
from alertbridge.templating.links import Links, Ref

# What `{{ dead.why }}` renders to when an `on_dead` action is routed; the dispatcher puts why the
# delivery died in its place once it dies ("refused with 400 (…), not retried", "after 6 attempts …").
DEAD_WHY = "⟦why it died⟧"


class _Lenient(dict[str, Any]):
    def __missing__(self, key: str) -> None:
        return None


def context(
    event: Event,
    original: Event | None = None,
    links: Sequence[Ref] = (),
    team: Mapping[str, Any] | None = None,
    subject: Ref | None = None,
) -> dict[str, Any]:
    """What templates see: the event, its labels, the event it answers (an agent's note), if any,
    the objects in other systems linked to what it is about, and (for `on_dead`) why a delivery died.
    `subject` is the first name the event's subject goes by (`sources.refs`: an Opsgenie alert
    known only by its alias is still someone); without it, the event's own `subject`."""
    view = to_dict(event)
    # An identifier or label an event lacks reads as none, so `a or b` chains work in templates.
    view["identifiers"] = _Lenient(view["identifiers"])
    view["labels"] = _Lenient(view["labels"])
    if subject is None and event.subject:
        subject = (event.subject.system, event.subject.type, event.subject.id)
    return {
        "event": view,
        "labels": view["labels"],
        "original": to_dict(original) if original else None,
        "links": Links(subject, links),
        "team": team,
        "dead": {"why": DEAD_WHY},
    }
