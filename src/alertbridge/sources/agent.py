"""Answers that agents send later, about an event alertbridge forwarded to them.

A forward with a `callback_url` tells the agent `{url, event_id, token}`. The agent POSTs
`{"event_id": "...", "note": "..."}` to that URL with `Authorization: Bearer <token>`; the token
is an HMAC of the event id with the forward's secret, so an answer is both authenticated and
tied to the event it answers. The answer becomes an event of kind `agent.note`, and routes
reach the original event as `original` in templates (e.g. to note its PagerDuty incident).

Settings: `secret` (the same secret as the forward target's).

| event field  | from the payload                                           |
| ------------ | ---------------------------------------------------------- |
| delivery_key | `Idempotency-Key` or `webhook-id` header, else a digest of the body |
| kind         | `agent.note`                                               |
| note         | `note`                                                     |
| title        | `title`                                                    |
| actor        | `agent`                                                    |
| identifiers  | `in_reply_to`: `event_id`                                  |
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, SecretStr

from alertbridge.security import callback_token, same_secret
from alertbridge.sources.base import (
    BadPayload,
    Endpoint,
    Event,
    Incoming,
    Source,
    Unauthorized,
    body_digest,
    decode_json,
    text,
)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: SecretStr


def _body(request: Incoming) -> dict:
    body = decode_json(request.body)
    if not isinstance(body, dict):
        raise BadPayload("the body must be a JSON object")
    return body


def verify(request: Incoming, endpoint: Endpoint) -> None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() != "bearer ":
        raise Unauthorized(
            401, "missing_token", "Authorization: Bearer <token from the forward's callback> is required"
        )
    try:
        event_id = text(_body(request).get("event_id"))
    except BadPayload:
        event_id = None
    settings: Settings = endpoint.settings
    expected = callback_token(settings.secret.get_secret_value(), event_id or "")
    if not event_id or not same_secret(auth[7:].strip(), expected):
        raise Unauthorized(403, "bad_token", "the token does not match this event_id")


def parse(request: Incoming, endpoint: Endpoint) -> list[Event]:
    body = _body(request)
    note = text(body.get("note"))
    if note is None:
        raise BadPayload("'note' (a non-empty string) is required")
    answered = text(body.get("event_id"))
    if answered is None:
        raise BadPayload("'event_id' (the id of the event this answers, from the callback) is required")
    return [
        endpoint.event(
            kind="agent.note",
            delivery_key=request.headers.get("idempotency-key")
            or request.headers.get("webhook-id")
            or body_digest(request.body),
            note=note,
            title=text(body.get("title")),
            actor=text(body.get("agent")),
            identifiers={"in_reply_to": answered},
            raw=body,
        )
    ]


SOURCE = Source(name="agent", settings=Settings, parse=parse, verify=verify)
