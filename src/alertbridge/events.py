"""The canonical event: one record of one thing that happened, whatever sent it.

Sources turn payloads into `Event`s; everything after ingress (routing, templates,
deliveries, the CLI) only ever sees this shape. Unknown or missing fields are None,
never an exception.
"""

from __future__ import annotations

from typing import Any

import msgspec

PRIORITIES = ("P1", "P2", "P3", "P4", "P5")  # P1 is the highest
URGENCIES = ("high", "low")  # high is the higher
SEVERITIES = ("critical", "error", "warning", "info")  # critical is the highest


class Subject(msgspec.Struct, frozen=True, omit_defaults=True):
    """The ticket, incident or alert an event is about."""

    system: str
    type: str
    id: str


class Service(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str | None = None
    name: str | None = None


class Event(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    org: str
    endpoint: str
    source: str
    kind: str
    received_at: float
    delivery_key: str
    occurred_at: str | None = None
    subject: Subject | None = None
    title: str | None = None
    description: str | None = None
    priority: str | None = None
    urgency: str | None = None
    severity: str | None = None
    status: str | None = None
    service: Service | None = None
    teams: tuple[str, ...] = ()
    assignees: tuple[str, ...] = ()
    actor: str | None = None
    note: str | None = None
    url: str | None = None
    tags: tuple[str, ...] = ()
    identifiers: dict[str, str] = msgspec.field(default_factory=dict)
    dedup_key: str | None = None
    labels: dict[str, Any] = msgspec.field(default_factory=dict)
    raw: Any = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def decode(data: bytes | str) -> Event:
    return _decoder.decode(data)


def to_dict(event: Event) -> dict[str, Any]:
    """A plain dict view, for templates and match paths."""
    result: dict[str, Any] = msgspec.to_builtins(event)
    # omit_defaults drops empty fields; templates want them present as None/empty.
    for name in Event.__struct_fields__:
        result.setdefault(name, None)
    for name in ("teams", "assignees", "tags"):
        if result[name] is None:
            result[name] = []
    for name in ("identifiers", "labels"):
        if result[name] is None:
            result[name] = {}
    return result


def rank(scale: tuple[str, ...], value: str | None) -> int | None:
    """Position on a scale where 0 is the highest (P1, high, critical); None if off the scale."""
    if value is None:
        return None
    folded = value.strip().casefold()
    for position, name in enumerate(scale):
        if name.casefold() == folded:
            return position
    return None
