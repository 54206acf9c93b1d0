"""A door that speaks PagerDuty's Events API v2, so that any tool that can page PagerDuty pages
alertbridge by changing one URL (issue 16).

The endpoint at path P serves what `https://events.pagerduty.com` serves: alert events at
`P/v2/enqueue` (and `P/enqueue`), change events at `P/v2/change/enqueue` (and `P/change/enqueue`),
and Events API v1, which older integrations still send, at `P/generic/2010-04-15/create_event.json`
(`service_key`, `event_type`, `incident_key`, `description`; answered 200 with the `incident_key`,
403 over the rate, as v1 answers).
The credential is the body's `routing_key`, one of the endpoint's `routing_keys`; each may carry a
`name` (else `key-` and a short digest of it) and a `service`, which the events carry in its place:
the key itself is never stored, logged or answered. Each key may send `rate_limit` events per
`rate_window` seconds (PagerDuty's documented default, about 120 a minute per integration key);
over it the answer is PagerDuty's 429.

Answers are PagerDuty's: 202 `{"status": "success", "message": "Event processed", "dedup_key": …}`
400 `{"status": "invalid event", "message": "Event object is invalid", "errors": […]}` naming every
mistake, an unknown routing key 400 with `Invalid routing key`. As at PagerDuty, every request is an
event (its API has no idempotency key); a trigger without a `dedup_key` gets a new one, a UUID made
from the stored event's id. Whether a trigger sent again pages again is the routes' (per-episode keys).

| event field  | from the payload                                                                  |
| ------------ | --------------------------------------------------------------------------------- |
| kind         | `event_action` (v1: `event_type`): `pagerduty_events.trigger`, `.acknowledge`, `.resolve`; a change event `pagerduty_events.change` |
| subject      | `{pagerduty_events, alert, dedup_key}` (alert events, v1's too)                    |
| dedup_key    | `dedup_key` (v1: `incident_key`), else (a trigger) a new UUID, returned in the answer |
| title        | `payload.summary` (v1: `description`)                                             |
| severity     | `payload.severity` (critical, error, warning, info)                               |
| occurred_at  | `payload.timestamp`                                                               |
| service      | the routing key's `service` (`{name}`), if configured                              |
| actor        | `client`                                                                          |
| url          | `client_url`, else the first of `links[].href` (v1: of `contexts[]` of type link) |
| identifiers  | `routing_key_name` (the key's name, never the key), `service` (the key's service), `source`, `component`, `group`, `class` (from `payload`) |
| raw          | the body without `routing_key` (v1: `service_key`): `payload.custom_details`, `links`, `images`, `client` (v1: `details`, `contexts`) … for templates |
"""

from __future__ import annotations

import math
import threading
import uuid
from collections import deque
from functools import cached_property
from http import HTTPStatus
from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from alertbridge.events import Service, Subject
from alertbridge.security import fingerprint, same_secret
from alertbridge.sources.base import (
    Accepted,
    BadPayload,
    Endpoint,
    Event,
    Incoming,
    Refused,
    Reply,
    Source,
    decode_json,
    obj,
    text,
)

NAME = "pagerduty_events"
ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
ALERTS = ("/v2/enqueue", "/enqueue")
CHANGES = ("/v2/change/enqueue", "/change/enqueue")
V1 = ("/generic/2010-04-15/create_event.json",)  # Events API v1, which older integrations still send
KEY_LENGTH = 32  # PagerDuty's integration keys: 32 characters, letters and digits

# PagerDuty's words, as its Events API answers (its docs' and client libraries' examples).
INVALID = "Event object is invalid"
UNKNOWN_KEY = "Invalid routing key"
UNKNOWN_V1_KEY = "Invalid service key"
JSON_ERROR = "JSON parse error"
THROTTLED = "Requests for this service are arriving too quickly.  Please retry later."


class RoutingKey(BaseModel):
    """One accepted integration key and what events sent with it carry instead of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: SecretStr
    name: str | None = None  # what events carry as `identifiers.routing_key_name`
    service: str | None = None  # the service events sent with this key are about


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Each a key (`${VAR}`) or {key, name, service}.
    routing_keys: list[RoutingKey | SecretStr] = Field(min_length=1)
    rate_limit: int = Field(120, ge=0)  # events per key per window; 0: no limit
    rate_window: float = Field(60.0, gt=0)  # seconds, looking back from now, as PagerDuty counts

    @field_validator("routing_keys")
    @classmethod
    def _well_formed(cls, keys: list[RoutingKey | SecretStr]) -> list[RoutingKey | SecretStr]:
        for i, item in enumerate(keys):
            key = (item.key if isinstance(item, RoutingKey) else item).get_secret_value()
            if len(key) != KEY_LENGTH or not key.isalnum():
                raise ValueError(
                    f"routing_keys[{i}] is not a PagerDuty integration key ({KEY_LENGTH} letters and digits), "
                    "which senders' tools would refuse to send"
                )
        return keys

    @model_validator(mode="after")
    def _distinct(self) -> Settings:
        entries = self.entries()
        if len({k for k, _ in entries}) != len(entries):
            raise ValueError("a routing key is listed twice")
        if len({e.name for _, e in entries}) != len(entries):
            raise ValueError("two routing keys have the same name")
        return self

    @cached_property
    def _entries(self) -> list[tuple[str, RoutingKey]]:
        found = []
        for item in self.routing_keys:
            entry = item if isinstance(item, RoutingKey) else RoutingKey(key=item)
            key = entry.key.get_secret_value()
            found.append((key, entry if entry.name else entry.model_copy(update={"name": f"key-{fingerprint(key)}"})))
        return found

    def entries(self) -> list[tuple[str, RoutingKey]]:
        """(the key, its entry with a name): a bare key is named by a short digest of it."""
        return self._entries

    def find(self, given: str) -> RoutingKey | None:
        """The entry of the key given, compared in constant time with every configured one."""
        match = None
        for key, entry in self.entries():
            if same_secret(given, key):
                match = entry
        return match


class _Windows:
    """Calls per (endpoint, key name) in a sliding window, as PagerDuty counts a key's calls: a key
    over its rate is refused until its oldest call in the window ages out. A refused call takes no
    place, so a sender that retries gets through as soon as there is room. One process's count (each
    replica its own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], deque[float]] = {}

    def take(self, where: tuple[str, str], now: float, limit: int, window: float) -> float | None:
        """None when there is room (the event is counted), else seconds until there is."""
        with self._lock:
            seen = self._seen.setdefault(where, deque())
            while seen and seen[0] <= now - window:
                seen.popleft()
            if len(seen) >= limit:
                return seen[0] + window - now
            seen.append(now)
            return None


_WINDOWS = _Windows()


class _Key(msgspec.Struct):
    routing_key: Any = None
    service_key: Any = None  # Events API v1's name for it


_key_of = msgspec.json.Decoder(_Key)


def _under(request: Incoming, endpoint: Endpoint) -> str:
    return request.path[len(endpoint.config.path.rstrip("/")) :].rstrip("/")


def _route(request: Incoming, endpoint: Endpoint) -> str:
    """ "alert", "change" or "v1", from the path under the endpoint's; any other path is not served."""
    rest = _under(request, endpoint)
    if rest in ALERTS:
        return "alert"
    if rest in CHANGES:
        return "change"
    if rest in V1:
        return "v1"
    served = ", ".join(endpoint.config.path.rstrip("/") + p for p in (*ALERTS, *CHANGES, *V1))
    raise Refused(404, "not_found", f"nothing is served at {request.path}; the Events API is at {served}")


def verify(request: Incoming, endpoint: Endpoint) -> None:
    """The path, then the routing key (the credential) and its rate. A body that is not JSON or has
    no well-formed key passes on to `parse`, which names every mistake as PagerDuty does."""
    v1 = _route(request, endpoint) == "v1"
    try:
        keys = _key_of.decode(request.body)
    except (msgspec.DecodeError, RecursionError):
        return
    given = keys.service_key if v1 else keys.routing_key
    if not _well_formed(given):
        return
    settings: Settings = endpoint.settings
    entry = settings.find(given)
    if entry is None:
        raise Refused(400, "bad_token", UNKNOWN_V1_KEY if v1 else UNKNOWN_KEY)
    if settings.rate_limit:
        wait = _WINDOWS.take(
            (endpoint.name, entry.name or ""), endpoint.clock(), settings.rate_limit, settings.rate_window
        )
        if wait is not None:
            seconds = str(max(1, math.ceil(wait)))
            # Events API v1 answers a throttled service 403, v2 429.
            raise Refused(403 if v1 else 429, "rate_limited", THROTTLED, [("retry-after", seconds)])


def _well_formed(key: Any) -> bool:
    return isinstance(key, str) and len(key) == KEY_LENGTH and key.isalnum()


def _key_errors(key: Any) -> list[str]:
    if not isinstance(key, str) or not key.strip():
        return ["'routing_key' cannot be blank"]
    errors = []
    if len(key) != KEY_LENGTH:
        errors.append(f"Length of 'routing_key' is incorrect (should be {KEY_LENGTH} characters)")
    if not key.isalnum():
        errors.append("'routing_key' cannot contain non-alphanumeric characters.")
    return errors


def _blank(value: Any) -> bool:
    return not isinstance(value, str) or not value.strip()


def _context_errors(body: dict[str, Any]) -> list[str]:
    """`links` and `images`: lists of objects, each link with an `href`, each image with a `src`."""
    errors = []
    for field, required in (("links", "href"), ("images", "src")):
        items = body.get(field)
        if items is None:
            continue
        if not isinstance(items, list):
            errors.append(f"'{field}' must be an array")
            continue
        for i, item in enumerate(items):
            if not isinstance(item, dict) or _blank(item.get(required)):
                errors.append(f"'{field}[{i}].{required}' is missing or blank")
    return errors


def _alert_errors(body: dict[str, Any]) -> list[str]:
    errors = _key_errors(body.get("routing_key"))
    action = body.get("event_action")
    dedup_key = body.get("dedup_key")
    if _blank(action):
        errors.append("'event_action' is missing or blank")
    elif action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of the following: 'trigger', 'acknowledge' or 'resolve')")
    if dedup_key is not None and not isinstance(dedup_key, str):
        errors.append("'dedup_key' must be a string")
    elif isinstance(dedup_key, str) and len(dedup_key) > 255:
        errors.append("'dedup_key' is too long (maximum is 255 characters)")
    elif action in ("acknowledge", "resolve") and _blank(dedup_key):
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        errors += _payload_errors(body.get("payload"), alert=True)
    errors += _context_errors(body)
    return errors


def _payload_errors(payload: Any, alert: bool) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or blank"]
    errors = []
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        errors.append("'payload.summary' is missing or blank")
    elif len(summary) > 1024:
        errors.append("'payload.summary' is too long (maximum is 1024 characters)")
    if alert:
        if _blank(payload.get("source")):
            errors.append("'payload.source' is missing or blank")
        severity = payload.get("severity")
        if _blank(severity):
            errors.append("'payload.severity' is missing or blank")
        elif severity not in SEVERITIES:
            errors.append(
                "'payload.severity' is invalid (must be one of the following: 'critical', 'warning', 'error' or 'info')"
            )
    return errors


def parse(request: Incoming, endpoint: Endpoint) -> list[Event]:
    try:
        body = decode_json(request.body)
    except BadPayload as exc:
        raise BadPayload(JSON_ERROR if "not valid JSON" in str(exc) else str(exc)) from None
    if not isinstance(body, dict):
        raise BadPayload(JSON_ERROR)
    under = _under(request, endpoint)  # verify refused the paths not served
    route = "change" if under in CHANGES else "v1" if under in V1 else "alert"
    if route == "change":
        errors = _key_errors(body.get("routing_key")) + _payload_errors(body.get("payload"), alert=False)
        errors += _context_errors(body)
    elif route == "v1":
        errors = _v1_errors(body)
    else:
        errors = _alert_errors(body)
    if errors:
        raise BadPayload("\n".join(errors))
    raw = {k: v for k, v in body.items() if k not in ("routing_key", "service_key")}
    if route == "v1":
        body = _as_v2(body)
    settings: Settings = endpoint.settings
    entry = settings.find(body["routing_key"])
    if entry is None:  # verify refused it already; a parser called on its own says the same
        raise BadPayload(UNKNOWN_V1_KEY if route == "v1" else UNKNOWN_KEY)
    payload = obj(body.get("payload"))
    identifiers = {
        name: value
        for name, value in (
            ("routing_key_name", entry.name),
            ("service", entry.service),
            ("source", text(payload.get("source"))),
            ("component", text(payload.get("component"))),
            ("group", text(payload.get("group"))),
            ("class", text(payload.get("class"))),
        )
        if value
    }
    links: list[dict[str, Any]] = body.get("links") or []  # checked: a list of objects
    fields: dict[str, Any] = {
        # PagerDuty's API has no idempotency: each request is an event (an identical trigger after a
        # resolve is a new alert). Routes' per-episode keys keep a resend within an episode from paging twice.
        "delivery_key": f"{NAME}:{uuid.uuid4()}",
        "title": text(payload.get("summary")),
        "occurred_at": text(payload.get("timestamp")),
        "service": Service(name=entry.service) if entry.service else None,
        "url": text(body.get("client_url")) or next((text(link.get("href")) for link in links), None),
        "identifiers": identifiers,
        "raw": raw,
    }
    if route == "change":
        return [endpoint.event(kind=f"{NAME}.change", **fields)]
    action = body["event_action"]
    event = endpoint.event(
        kind=f"{NAME}.{action}",
        severity=text(payload.get("severity")) if action == "trigger" else None,
        actor=text(body.get("client")),
        **fields,
    )
    dedup_key = text(body.get("dedup_key")) or _new_dedup_key(event.id)
    return [msgspec.structs.replace(event, dedup_key=dedup_key, subject=Subject(NAME, "alert", dedup_key))]


def _v1_errors(body: dict[str, Any]) -> list[str]:
    """Events API v1's mistakes, in its words where PagerDuty's are known."""
    errors = []
    key: Any = body.get("service_key")
    if _blank(key):
        errors.append("Service key can't be blank")
    elif len(key) != KEY_LENGTH:
        errors.append(f"Service key is the wrong length (should be {KEY_LENGTH} characters)")
    elif not key.isalnum():
        errors.append("Service key cannot contain non-alphanumeric characters")
    kind = body.get("event_type")
    incident_key = body.get("incident_key")
    if _blank(kind):
        errors.append("'event_type' is missing or blank")
    elif kind not in ACTIONS:
        errors.append("event_type is invalid (must be one of: trigger acknowledge resolve)")
    if incident_key is not None and not isinstance(incident_key, str):
        errors.append("'incident_key' must be a string")
    elif isinstance(incident_key, str) and len(incident_key) > 255:
        errors.append("'incident_key' is too long (maximum is 255 characters)")
    elif kind in ("acknowledge", "resolve") and _blank(incident_key):
        errors.append("'incident_key' is missing or blank")
    description = body.get("description")
    if kind == "trigger" and _blank(description):
        errors.append("'description' is missing or blank")
    elif isinstance(description, str) and len(description) > 1024:
        errors.append("'description' is too long (maximum is 1024 characters)")
    contexts = body.get("contexts")
    if contexts is not None and not isinstance(contexts, list):
        errors.append("'contexts' must be an array")
    for i, context in enumerate(contexts if isinstance(contexts, list) else []):
        needs = {"link": "href", "image": "src"}.get(str(obj(context).get("type")))
        if needs is None:
            errors.append(f"'contexts[{i}].type' is invalid (must be one of: link image)")
        elif _blank(context.get(needs)):
            errors.append(f"'contexts[{i}].{needs}' is missing or blank")
    return errors


def _as_v2(body: dict[str, Any]) -> dict[str, Any]:
    """A checked v1 event in v2's words, so that both become events the same way."""
    contexts = body.get("contexts") or []
    return {
        "routing_key": body["service_key"],
        "event_action": body["event_type"],
        "dedup_key": body.get("incident_key"),
        "payload": {"summary": body.get("description"), "custom_details": body.get("details")},
        "client": body.get("client"),
        "client_url": body.get("client_url"),
        "links": [c for c in contexts if c["type"] == "link"],
        "images": [c for c in contexts if c["type"] == "image"],
    }


def _new_dedup_key(event_id: str) -> str:
    """A trigger's new key: the event's id (a ULID, 128 bits) as a version 4 UUID, as PagerDuty makes
    one (74 of the ULID's 80 random bits kept): the key the answer gives is the one the event has."""
    value = 0
    for char in event_id:
        value = value * 32 + "0123456789ABCDEFGHJKMNPQRSTVWXYZ".index(char)
    return str(uuid.UUID(int=value, version=4))


def answer(request: Incoming, endpoint: Endpoint, accepted: Accepted) -> Reply:
    """PagerDuty's 202, with the dedup key given in the body or the one made from the event's id."""
    event = accepted.events[0]
    if event.kind == f"{NAME}.change":
        return Reply(202, {"status": "success", "message": "Change event processed"})
    if _under(request, endpoint) in V1:  # v1: 200 and the key as `incident_key`
        given = text(obj(event.raw).get("incident_key"))
        incident_key = given or _new_dedup_key(accepted.ids[0])
        return Reply(200, {"status": "success", "message": "Event processed", "incident_key": incident_key})
    given = text(obj(event.raw).get("dedup_key"))
    dedup_key = given or _new_dedup_key(accepted.ids[0])
    return Reply(202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key})


def refusal(status: int, message: str) -> dict[str, Any]:
    """A refusal in PagerDuty's shape (`status`, `message`, `errors`)."""
    if status == 400 and message == JSON_ERROR:
        return {"status": "Unrecognized object", "message": "Event object format is unrecognized", "errors": [message]}
    if status == 400:
        return {"status": "invalid event", "message": INVALID, "errors": message.split("\n")}
    if message == THROTTLED:  # v2's 429, v1's 403
        return {"status": "throttle exceeded", "message": message, "errors": ["Enhance Your Calm."]}
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return {"status": phrase, "message": message, "errors": [message]}


SOURCE = Source(
    name=NAME,
    settings=Settings,
    parse=parse,
    verify=verify,
    episodes={f"{NAME}.trigger": "open", f"{NAME}.resolve": "close"},
    subpaths=True,
    answer=answer,
    refusal=refusal,
)
