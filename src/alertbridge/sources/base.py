"""What every source provides, and the runtime endpoint that sources build events for."""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, count
from typing import Any

import msgspec
from pydantic import BaseModel

from alertbridge.config import EndpointConfig
from alertbridge.events import EpisodeEffect, Event
from alertbridge.ids import new_id


class Refused(Exception):
    """The source refuses the request: `status` with `message`, counted under `reason` (a short
    metric label), with any `headers` (e.g. retry-after on a 429)."""

    def __init__(self, status: int, reason: str, message: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason  # missing_token, bad_token, bad_signature, rate_limited …
        self.message = message
        self.headers = tuple(headers)


class Unauthorized(Refused):
    """The request is not from who it claims to be. 401 when credentials are missing, 403 when wrong."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(status, reason, message)


class BadPayload(Exception):
    """The body cannot be read as this source's payload (answered 400)."""


@dataclass(frozen=True)
class Incoming:
    """The parts of an HTTP request a source may look at; the body is the raw bytes as received."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class Reply:
    """An answer a source gives itself (a probe or a handshake), without storing anything."""

    status: int
    body: Any = None
    media_type: str = "application/json"


@dataclass(frozen=True)
class Accepted:
    """What ingress did with a request's events, for a source that answers in its own API's shape:
    the events as stored, their ids (an earlier event's for a redelivery), and whether all were
    redeliveries."""

    events: Sequence[Event]
    ids: Sequence[str]
    duplicate: bool


@dataclass
class Endpoint:
    """A configured endpoint at runtime: its config, its source's validated settings, its clock."""

    config: EndpointConfig
    source: Source
    settings: Any
    org: str
    max_body_bytes: int
    clock: Callable[[], float]
    enabled: bool = True  # an integration turned off through the API refuses webhooks (404)

    @property
    def name(self) -> str:
        return self.config.name

    def event(self, *, kind: str, delivery_key: str, **fields: Any) -> Event:
        """A new event from this endpoint, stamped with id, org, endpoint, source and time."""
        now = self.clock()
        return Event(
            id=new_id(now),
            org=self.org,
            endpoint=self.name,
            source=self.source.name,
            kind=kind,
            received_at=now,
            delivery_key=delivery_key,
            **fields,
        )


@dataclass(frozen=True)
class Source:
    """One kind of sender. Registered in `alertbridge.sources`."""

    name: str
    settings: type[BaseModel]
    parse: Callable[[Incoming, Endpoint], list[Event]]
    verify: Callable[[Incoming, Endpoint], None]
    # Probes and challenges answered without storing anything; None means "not a handshake".
    handshake: Callable[[Incoming, Endpoint], Reply | None] = lambda request, endpoint: None
    methods: frozenset[str] = field(default_factory=lambda: frozenset({"POST"}))
    # The routing identifiers teams may claim from this source's events (docs/teams.md).
    claims: tuple[Claim, ...] = ()
    # Other names an object goes by, carried in `identifiers`: identifier → (system, type). Links
    # and echo detection match on any of them (`events.refs`).
    aliases: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # Event kind → the change in shared words (created, annotated, resolved…), so that a change
    # alertbridge made is recognised when the system reports it back (echo suppression).
    changes: Mapping[str, str] = field(default_factory=dict)
    # Event kind → whether it opens or closes an episode of the alert it is about (its `dedup_key`,
    # else its subject): an alert that resolves and fires again is a new episode, and `key:` values
    # are per episode, so it pages again. An endpoint's `episodes:` replaces this (the generic source).
    episodes: Mapping[str, EpisodeEffect] = field(default_factory=dict)
    # identifier → value (case-folded) meaning the change came through an API (ours among them), so
    # the actor name the event gives may not be the one we sent and proves nothing against an echo.
    through_api: Mapping[str, str] = field(default_factory=dict)
    # A Typer app `alertbridge NAME …` runs, as "module:attribute", imported only by the CLI.
    command: str | None = None
    # Seed 001's console integration (`integrations_api.py`), if this source has one.
    integration: Integration | None = None
    # The endpoint also serves every path under its own (an API with resources, as Opsgenie's
    # `…/v2/alerts/{id}/close`); `Incoming.path` is the whole path.
    subpaths: bool = False
    # The answer once the events are stored, in the shape the sender's API promises (PagerDuty's 202
    # with a dedup_key); None gives alertbridge's own. An endpoint's `response:` template wins over both.
    answer: Callable[[Incoming, Endpoint, Accepted], Reply] | None = None
    # The body of a refusal (status, message) in the sender's API's shape; None gives alertbridge's own.
    refusal: Callable[[int, str], Any] | None = None


@dataclass(frozen=True)
class Claim:
    """A routing identifier teams claim (seed 004): `key` as a team writes it in `routing:`
    (plural), the `identifier` an event carries, and its `rank` in the default lookup order (lower
    is more specific and wins when an event carries identifiers of several teams)."""

    key: str
    identifier: str
    rank: int


@dataclass(frozen=True)
class Integration:
    """Settings an operator saves through the console for one endpoint of this source, by `kind`:
    the endpoint at `path` takes them through `apply(extra, saved, secret)` → its new settings keys;
    its API key is tested as the target key test `key_test` (`targets.KEY_TESTS`)."""

    kind: str
    path: str
    apply: Callable[[Mapping[str, Any], Mapping[str, Any], str | None], dict[str, Any]]
    key_test: str


# How deep a sender's JSON may nest. Webhooks nest a few levels; thousands of levels is no webhook and
# would exhaust the stack wherever the document is walked (decoding, storing, templates).
MAX_DEPTH = 100
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string, its escapes included
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPEN_CLOSE = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")  # each bracket's step in depth, plus one


def decode_json(data: bytes | str, what: str = "the body") -> Any:
    """`data` as JSON, or BadPayload saying why not: every source reads its body through this, so that
    no body a sender can send gets out of a parser as anything but a 400 with a reason."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        value = msgspec.json.decode(raw)
        deep = raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _deeper_than(raw, MAX_DEPTH)
    except msgspec.DecodeError as exc:
        raise BadPayload(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        deep = True
    if deep:
        raise BadPayload(f"{what} is JSON nested more than {MAX_DEPTH} levels deep, which alertbridge does not take")
    return value


def _deeper_than(document: bytes, limit: int) -> bool:
    """Whether valid JSON nests deeper than `limit`: the running depth over its brackets outside strings,
    in one pass (only bodies with more brackets than the limit come here)."""
    steps = _STRING.sub(b"", document).translate(None, _NOT_BRACKETS).translate(_OPEN_CLOSE)
    return max(map(operator.sub, accumulate(steps), count(1)), default=0) > limit  # all C iterators


def body_digest(body: bytes) -> str:
    """A delivery key for senders that give none: the same bytes are the same delivery."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


# Small readers for untyped JSON, so parsers never raise on a missing or odd field.


def text(value: Any) -> str | None:
    if value.__class__ is str:  # the common case, first: parsers call this for every field
        return value.strip() or None
    if value is None or isinstance(value, dict | list):
        return None
    return str(value).strip() or None


def obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def dig(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data
