"""The canonical event: one record of one thing that happened, whatever sent it.

Sources turn payloads into `Event`s; everything after ingress (routing, templates,
deliveries, the CLI) only ever sees this shape. Unknown or missing fields are None,
never an exception.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import msgspec

PRIORITIES = ("P1", "P2", "P3", "P4", "P5")  # P1 is the highest
URGENCIES = ("high", "low")  # high is the higher
SEVERITIES = ("critical", "error", "warning", "info")  # critical is the highest

# What an event does to its alert's episode: an alert that resolves and fires again is a new episode,
# which pages again (`key:` values are per episode). Sources declare it per kind (`Source.episodes`).
# What an event does to its alert's episodes: opens one (a repeat while one is open belongs to it),
# closes it, or restarts: opens the next even if one is open, as a sender that sends each firing
# once (Alertmanager: a new startsAt is a new firing) means a new firing while open = a lost resolve.
EpisodeEffect = Literal["open", "close", "restart"]


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
    actor: str | None = None  # who acted, as the sender identifies them (a user id)
    actor_name: str | None = None  # and as people read it (a name or email)
    note: str | None = None
    url: str | None = None
    tags: tuple[str, ...] = ()
    identifiers: dict[str, str] = msgspec.field(default_factory=dict)
    dedup_key: str | None = None
    labels: dict[str, Any] = msgspec.field(default_factory=dict)
    # Why the endpoint keeps this event without routing it (a filter of its own, e.g. a PagerDuty
    # integration key): stored and answered like any, its trace says this, and nothing is sent.
    filtered: str | None = None
    # The alert's episode (1, 2, …), set by the router, not by sources, and only for the events of a
    # source or endpoint that declares episodes; the decision trace records it.
    episode: int | None = None
    raw: Any = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def decode(data: bytes | str) -> Event:
    return _decoder.decode(data)


_CONTAINERS = {"teams": list, "assignees": list, "tags": list, "identifiers": dict, "labels": dict}
_ABSENT = dict.fromkeys(Event.__struct_fields__)


def to_dict(event: Event) -> dict[str, Any]:
    """A plain dict view, for templates and match paths.

    The raw payload is shared, not copied: it is already plain JSON values, and copying it was
    most of the cost for a large payload."""
    raw = event.raw
    # omit_defaults drops empty fields; templates want them present as None/empty.
    shallow = event if raw is None else msgspec.structs.replace(event, raw=None)
    result: dict[str, Any] = {**_ABSENT, **msgspec.to_builtins(shallow)}
    for name, empty in _CONTAINERS.items():
        if result[name] is None:
            result[name] = empty()
    result["raw"] = raw
    return result


def refs(event: Event, aliases: Mapping[str, tuple[str, str]]) -> list[tuple[str, str, str]]:
    """Every (system, type, id) the event's subject is known by: its subject, and the other names
    it goes by carried in `identifiers` (`aliases`: identifier → (system, type), which the sources
    declare; `sources.refs` passes them). Links and echo detection match on any of them."""
    found = [(event.subject.system, event.subject.type, event.subject.id)] if event.subject else []
    for name, (system, kind) in aliases.items():
        value = event.identifiers.get(name)
        if value:
            found.append((system, kind, value))
    return found


class Expected(NamedTuple):
    """A change alertbridge is about to make to an object, as that system's webhook will report it.

    `fingerprint` is of the content it writes (a note's text), `actor` the name it acts under there
    (Opsgenie's `user`): a webhook with other content, or naming someone else, is not its echo.
    """

    system: str
    type: str
    object_id: str
    change: str
    fingerprint: str | None = None
    actor: str | None = None


def fingerprint(text: str | None) -> str | None:
    """A digest of written content that survives what providers do to whitespace and Unicode form,
    so our own note is recognised when it comes back; None for no content."""
    if text is None:
        return None
    normal = " ".join(unicodedata.normalize("NFC", text).split())
    return hashlib.sha256(normal.encode()).hexdigest()[:32] if normal else None


def rank(scale: tuple[str, ...], value: str | None) -> int | None:
    """Position on a scale where 0 is the highest (P1, high, critical); None if off the scale."""
    if value is None:
        return None
    folded = value.strip().casefold()
    for position, name in enumerate(scale):
        if name.casefold() == folded:
            return position
    return None
