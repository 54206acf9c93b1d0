"""What every source provides, and the runtime endpoint that sources build events for."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from alertbridge.config import EndpointConfig
from alertbridge.events import Event
from alertbridge.ids import new_id


class Unauthorized(Exception):
    """The request is not from who it claims to be. 401 when credentials are missing, 403 when wrong."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason  # a short metric label: missing_token, bad_token, bad_signature …
        self.message = message


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
