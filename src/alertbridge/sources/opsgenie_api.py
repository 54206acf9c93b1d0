"""A door that speaks Opsgenie's Alert API (v2), so a tool set up for Opsgenie lands here instead.

Opsgenie ends support on 2027-04-05. Point a tool's Opsgenie API URL at the endpoint's path (an
endpoint at `/opsgenie` serves `/opsgenie/v2/alerts`, `/opsgenie/v2/alerts/{identifier}/close` …):
its requests become events and it gets the answers Opsgenie gives.

Requests (`?identifierType=id|alias|tiny` on an alert's path, default `id`):
- `POST …/v2/alerts` creates: `message` (required, at most 130 characters), `alias`, `description`,
  `responders`, `visibleTo`, `actions`, `tags`, `details`, `entity`, `source`, `priority` (P1 to P5,
  default P3), `user`, `note`;
- `POST …/v2/alerts/{identifier}/close`, `/acknowledge` (optional `user`, `source`, `note`) and
  `/notes` (`note` required);
- `GET …/v2/alerts/requests/{requestId}` says what became of a request (nothing is stored).

Credential: `Authorization: GenieKey <key>`, one of the endpoint's `api_keys`; missing → 401, wrong →
403. Answers as Opsgenie's: 202 `{"result": "Request will be processed", "took", "requestId"}`; a
refusal `{"message", "took", "requestId"}`, and a body that is not processable 422 with the
fields at fault in `errors`, as Opsgenie words it.

Identity, without state: an alert is its alias (Opsgenie's dedup key); a create without one gets a
fresh alias, as Opsgenie assigns one. The alert's `id` is a digest of the org and the alias, so a
close by id and a close by alias reach the same subject. The `requestId` carries that id, the action
and a check (see `request_id`), so the request status can name the alert a create made, which is how
an API client learns its id. Tiny ids are never handed out: `identifierType=tiny` is refused (422).

| event field  | from the request                                                                   |
| ------------ | ---------------------------------------------------------------------------------- |
| kind         | the path: `…/v2/alerts` → `opsgenie_api.create`, `…/close` → `opsgenie_api.close`, `…/acknowledge` → `opsgenie_api.acknowledge`, `…/notes` → `opsgenie_api.note` |
| delivery_key | a new one per request (Opsgenie's API has no idempotency key; a resent create is a new request, as at Opsgenie) |
| subject      | `{opsgenie_api, alert, <alert id>}`: the digest of the alias, or the `id` in the path |
| title        | `message` (create)                                                                 |
| description  | `description` (create)                                                             |
| priority     | `priority` (create; P3 when absent, Opsgenie's default)                            |
| severity     | from priority: P1 critical, P2 error, P3 warning, P4/P5 info                       |
| tags         | `tags` (create)                                                                    |
| teams        | `responders[]` of type `team`: `id`, else `name` (create)                          |
| assignees    | `responders[]` of type `user`: `id`, else `username`, else `name` (create)         |
| actor        | `user`                                                                             |
| actor_name   | `user`                                                                             |
| note         | `note`                                                                             |
| dedup_key    | the alert's id (one per alias: a request by alias and one by id carry the same)     |
| labels       | `details` (create): each key with its text                                         |
| identifiers  | `opsgenie_api_alert_id`, `opsgenie_api_alias`, `opsgenie_api_request_id`, `opsgenie_api_entity` (`entity`), `opsgenie_api_source` (`source`) |
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from alertbridge.events import Subject
from alertbridge.security import any_secret, secret_values
from alertbridge.sources.base import (
    Accepted,
    BadPayload,
    Endpoint,
    Event,
    Incoming,
    Refused,
    Reply,
    Source,
    Unauthorized,
    decode_json,
    obj,
    text,
)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The keys the tools send as `Authorization: GenieKey <key>`; several while rotating or for
    # several tools.
    api_keys: SecretStr | list[SecretStr]

    @model_validator(mode="after")
    def _some_key(self) -> Settings:
        if not self.keys():
            raise ValueError("an Opsgenie API door needs `api_keys`: at least one non-empty key")
        return self

    def keys(self) -> list[str]:
        """The configured keys; an empty one (an unset `${VAR:-}`) is no key."""
        return secret_values(self.api_keys, skip_empty=True)


ACTIONS = {"create": "Create", "close": "Close", "acknowledge": "Acknowledge", "notes": "AddNote"}
KINDS = {"create": "create", "close": "close", "acknowledge": "acknowledge", "notes": "note"}
_CODES = {name: code for code, name in enumerate(ACTIONS)}  # two bits of a request id
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
SEVERITY = {"P1": "critical", "P2": "error", "P3": "warning", "P4": "info", "P5": "info"}
RESPONDER_TYPES = ("team", "user", "escalation", "schedule")
# Opsgenie's documented limits (characters); the values are checked, never cut.
LIMITS = {"message": 130, "alias": 512, "description": 15000, "entity": 512, "source": 100, "user": 100}
NOTE_LIMIT = 25000
MAX_TAGS, TAG_LIMIT, DETAILS_LIMIT = 20, 50, 8000
NOT_PROCESSABLE = "Request body is not processable. Please check the errors."
NOT_FOUND = "Resource or handler not found"


def alert_id(org: str, alias: str) -> str:
    """The id alertbridge gives the alert with this alias: the same for every request and replica."""
    return hashlib.sha256(f"opsgenie_api alert\0{org}\0{alias}".encode()).hexdigest()[:16]


def _check(org: str, head: bytes) -> bytes:
    return hashlib.sha256(b"opsgenie_api request\0" + org.encode() + b"\0" + head).digest()[:4]


def request_id(org: str, alert: str, action: str) -> str:
    """A version 8 UUID that carries the alert's id (8 bytes), the action (2 bits), 22 random bits and
    a check of the rest (4 bytes): the request status reads it back without anything stored, and a
    request id alertbridge did not make fails the check."""
    a = bytes.fromhex(alert)
    r = secrets.token_bytes(3)
    head = bytearray(12)
    head[0:6] = a[0:6]
    head[6] = 0x80 | (_CODES[action] << 2) | (r[0] & 0x03)
    head[7] = a[6]
    head[8] = 0x80 | (r[1] & 0x3F)
    head[9] = a[7]
    head[10] = r[2]
    head[11] = r[0] >> 2
    return str(uuid.UUID(bytes=bytes(head) + _check(org, bytes(head))))


def read_request_id(org: str, value: str) -> tuple[str, str] | None:
    """(alert id, action) from a request id alertbridge made, else None."""
    try:
        raw = uuid.UUID(value).bytes
    except ValueError:
        return None
    head = raw[:12]
    if raw[6] >> 4 != 8 or raw[8] >> 6 != 2 or raw[12:] != _check(org, head):
        return None
    alert = (head[0:6] + head[7:8] + head[9:10]).hex()
    return alert, list(ACTIONS)[(head[6] >> 2) & 0x03]


def verify(request: Incoming, endpoint: Endpoint) -> None:
    settings: Settings = endpoint.settings
    auth = request.headers.get("authorization", "").strip()
    scheme, _, key = auth.partition(" ")
    if scheme.lower() != "geniekey" or not key.strip():
        raise Unauthorized(
            401, "missing_token", "Could not authenticate: send the header Authorization: GenieKey <key>"
        )
    if not any_secret(key.strip(), settings.keys()):
        raise Unauthorized(403, "bad_token", "Could not authenticate: the GenieKey is not one of this endpoint's keys")


def _route(request: Incoming, endpoint: Endpoint) -> tuple[str, str | None]:
    """(what, identifier) the path asks for: `create`, an action with the alert's identifier, or
    `status` with a request id. Anything else is not Opsgenie's Alert API: 404."""
    rest = request.path[len(endpoint.config.path.rstrip("/")) :].rstrip("/")
    if rest == "/v2/alerts":
        return "create", None
    head, _, action = rest.rpartition("/")
    if request.method == "GET" and head == "/v2/alerts/requests" and action:
        return "status", action
    identifier = head.removeprefix("/v2/alerts/")
    if action in ACTIONS and action != "create" and head.startswith("/v2/alerts/") and identifier:
        return action, identifier
    raise Refused(404, "not_found", NOT_FOUND)


def _methods_match(request: Incoming, what: str) -> None:
    wanted = "GET" if what == "status" else "POST"
    if request.method != wanted:
        raise Refused(405, "method_not_allowed", f"URL is valid but HTTP method not supported; use {wanted}")


def handshake(request: Incoming, endpoint: Endpoint) -> Reply | None:
    """Unknown paths are refused here, before the body is read as an alert; the request status is
    answered from the request id alone."""
    what, identifier = _route(request, endpoint)
    _methods_match(request, what)
    if what != "status":
        return None
    verify(request, endpoint)
    found = read_request_id(endpoint.org, identifier or "")
    if found is None:
        raise Refused(404, "unknown_request", "Request not found. It might not be processed, yet.")
    alert, action = found
    data = {
        "success": True,
        "action": ACTIONS[action],
        "isSuccess": True,
        "status": "Stored by alertbridge",
        "alertId": alert,
    }
    return Reply(200, {"data": data, "took": 0.0, "requestId": str(uuid.uuid4())})


def _invalid(errors: dict[str, str]) -> Refused:
    """A 422 whose message carries the fields at fault, for the log and for `refusal` to lay out."""
    return Refused(422, "invalid", f"{NOT_PROCESSABLE} {msgspec.json.encode(errors).decode()}")


def _string(body: dict[str, Any], name: str, limit: int, errors: dict[str, str]) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        errors[name] = "should be a string"
        return None
    if len(value) > limit:
        errors[name] = f"should be at most {limit} characters (it has {len(value)})"
    return text(value)


def _recipients(body: dict[str, Any], name: str, errors: dict[str, str]) -> list[dict[str, Any]]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        errors[name] = "should be a list of responders ({type, id or name})"
        return []
    for i, item in enumerate(value):
        item = obj(item)
        if item.get("type") not in RESPONDER_TYPES:
            errors[f"{name}[{i}]"] = f"type should be one of [ {', '.join(RESPONDER_TYPES)} ]"
        elif not any(text(item.get(k)) for k in ("id", "name", "username")):
            errors[f"{name}[{i}]"] = "id or name should be provided"
    return [obj(item) for item in value]


def _strings(body: dict[str, Any], name: str, errors: dict[str, str]) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors[name] = "should be a list of strings"
        return []
    return [t for t in (text(v) for v in value) if t]


def _details(body: dict[str, Any], errors: dict[str, str]) -> dict[str, str]:
    value = body.get("details")
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        errors["details"] = "should be a map of strings to strings"
        return {}
    if sum(len(k) + len(v) for k, v in value.items()) > DETAILS_LIMIT:
        errors["details"] = f"should be at most {DETAILS_LIMIT} characters in all"
    return value


def _common(body: dict[str, Any], errors: dict[str, str]) -> tuple[str | None, str | None, str | None]:
    """`user`, `source` and `note`, which every request may carry."""
    user = _string(body, "user", LIMITS["user"], errors)
    source = _string(body, "source", LIMITS["source"], errors)
    note = _string(body, "note", NOTE_LIMIT, errors)
    return user, source, note


def parse(request: Incoming, endpoint: Endpoint) -> list[Event]:
    what, identifier = _route(request, endpoint)
    body = decode_json(request.body) if request.body.strip() else {}
    if not isinstance(body, dict):
        raise BadPayload("the body must be a JSON object")
    if what == "create":
        return [_create(body, endpoint)]
    return [_act(what, identifier or "", request, body, endpoint)]


def _create(body: dict[str, Any], endpoint: Endpoint) -> Event:
    errors: dict[str, str] = {}
    message = _string(body, "message", LIMITS["message"], errors)
    if message is None and "message" not in errors:
        errors["message"] = "Message can not be empty."
    alias = _string(body, "alias", LIMITS["alias"], errors)
    description = _string(body, "description", LIMITS["description"], errors)
    entity = _string(body, "entity", LIMITS["entity"], errors)
    user, source, note = _common(body, errors)
    priority = "P3" if body.get("priority") is None else body["priority"]
    if priority not in PRIORITIES:
        errors["priority"] = f"should be one of [ {', '.join(PRIORITIES)} ]"
    responders = _recipients(body, "responders", errors)
    _recipients(body, "visibleTo", errors)
    _strings(body, "actions", errors)
    tags = _strings(body, "tags", errors)
    if len(tags) > MAX_TAGS or any(len(t) > TAG_LIMIT for t in tags):
        errors["tags"] = f"should be at most {MAX_TAGS} tags of at most {TAG_LIMIT} characters each"
    details = _details(body, errors)
    if errors:
        raise _invalid(errors)
    alias = alias or str(uuid.uuid4())  # Opsgenie assigns a unique alias to an alert created without one
    alert = alert_id(endpoint.org, alias)
    requested = request_id(endpoint.org, alert, "create")
    return endpoint.event(
        kind="opsgenie_api.create",
        delivery_key=f"opsgenie_api:{uuid.uuid4()}",
        subject=Subject("opsgenie_api", "alert", alert),
        title=message,
        description=description,
        priority=priority,
        severity=SEVERITY[priority],
        tags=tuple(tags),
        teams=_responders(responders, "team", ("id", "name")),
        assignees=_responders(responders, "user", ("id", "username", "name")),
        actor=user,
        actor_name=user,
        note=note,
        dedup_key=alert,  # one per alias, and known to a request by id too (episodes, targets' dedup)
        labels={k: v for k, v in details.items() if k},
        identifiers=_identifiers(alert, alias, requested, entity, source),
        raw=body,
    )


def _responders(responders: list[dict[str, Any]], kind: str, keys: tuple[str, ...]) -> tuple[str, ...]:
    named = (next((text(r.get(k)) for k in keys if text(r.get(k))), None) for r in responders if r["type"] == kind)
    return tuple(name for name in named if name)


def _act(what: str, identifier: str, request: Incoming, body: dict[str, Any], endpoint: Endpoint) -> Event:
    errors: dict[str, str] = {}
    user, source, note = _common(body, errors)
    if what == "notes" and note is None and "note" not in errors:
        errors["note"] = "Note can not be empty."
    kind_of_identifier = request.query.get("identifierType", "id")
    if kind_of_identifier == "tiny":
        errors["identifierType"] = "alertbridge hands out no tiny ids: use the id or the alias"
    elif kind_of_identifier not in ("id", "alias"):
        errors["identifierType"] = "should be one of [ id, alias, tiny ]"
    if errors:
        raise _invalid(errors)
    alias = identifier if kind_of_identifier == "alias" else None
    if alias is not None:
        alert = alert_id(endpoint.org, alias)
    elif len(identifier) == 16 and all(c in "0123456789abcdef" for c in identifier):
        alert = identifier
    else:
        raise Refused(404, "unknown_alert", f"Alert with id [{identifier[:100]}] is not one alertbridge gave out")
    return endpoint.event(
        kind=f"opsgenie_api.{KINDS[what]}",
        delivery_key=f"opsgenie_api:{uuid.uuid4()}",
        subject=Subject("opsgenie_api", "alert", alert),
        actor=user,
        actor_name=user,
        note=note,
        dedup_key=alert,
        identifiers=_identifiers(alert, alias, request_id(endpoint.org, alert, what), None, source),
        raw=body,
    )


def _identifiers(
    alert: str, alias: str | None, requested: str, entity: str | None, source: str | None
) -> dict[str, str]:
    pairs = {
        "opsgenie_api_alert_id": alert,
        "opsgenie_api_alias": alias,
        "opsgenie_api_request_id": requested,
        "opsgenie_api_entity": entity,
        "opsgenie_api_source": source,
    }
    return {key: value for key, value in pairs.items() if value}


def answer(request: Incoming, endpoint: Endpoint, accepted: Accepted) -> Reply:
    """Opsgenie's 202: the request will be processed (it is stored), with the id its status goes by."""
    requested = accepted.events[0].identifiers["opsgenie_api_request_id"] if accepted.events else str(uuid.uuid4())
    return Reply(202, {"result": "Request will be processed", "took": 0.0, "requestId": requested})


def refusal(status: int, message: str) -> dict[str, Any]:
    """Opsgenie's error body; a 422 lists the fields at fault under `errors`, as Opsgenie does."""
    body: dict[str, Any] = {"message": message, "took": 0.0, "requestId": str(uuid.uuid4())}
    if status == 422 and message.startswith(NOT_PROCESSABLE + " "):
        try:
            body["errors"] = msgspec.json.decode(message[len(NOT_PROCESSABLE) + 1 :])
            body["message"] = NOT_PROCESSABLE
        except msgspec.DecodeError:
            pass
    return body


SOURCE = Source(
    name="opsgenie_api",
    settings=Settings,
    parse=parse,
    verify=verify,
    handshake=handshake,
    methods=frozenset({"GET", "POST"}),
    aliases={"opsgenie_api_alias": ("opsgenie_api", "alert_alias")},
    episodes={"opsgenie_api.create": "open", "opsgenie_api.close": "close"},
    subpaths=True,
    answer=answer,
    refusal=refusal,
)
