"""Signed HTTP forwards to an agent service (or any webhook receiver), the Standard Webhooks way.

Settings: `url` (e.g. `${AGENT_URL}`), `secret` (signs every request: `whsec_<base64>` as
Standard Webhooks serialises it, or any other string used as raw bytes), `headers` (sent with
every request, e.g. a team token; kept secret), `body` (`event`, the canonical event, or `raw`,
the payload as the sender posted it), `notes_to` (a `pagerduty_rest` target that receives the
agent's answers as incident notes), `callback_url` (where the agent may POST an answer later:
the public URL of an `agent` endpoint).

Each request carries `webhook-id` (the delivery id: the same on every retry, so the receiver
can dedupe), `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">`. The `event` body is `{type, timestamp, data: <event>, context,
callback}`; `callback` is `{url, event_id, token}` when a callback URL is set.

| action  | fields                                                                            |
| ------- | --------------------------------------------------------------------------------- |
| forward | context (any object, rendered: parameters for the agent, e.g. which agent to run), team (whose token to send) |

The agent answers 2xx. When the answer's JSON holds a `note` string and `notes_to` is set, the
note becomes a delivery of its own: a note on the PagerDuty incident the event is about.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, SecretStr

from alertbridge.events import Event, to_dict
from alertbridge.security import callback_token, standard_webhooks_signature
from alertbridge.targets.base import (
    FollowUp,
    Outcome,
    OutgoingRequest,
    Response,
    Sending,
    Target,
    classify_http,
    error_text,
)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    secret: SecretStr | None = None
    headers: dict[str, SecretStr] = {}
    body: Literal["event", "raw"] = "event"
    notes_to: str | None = None
    callback_url: str | None = None
    # Send the team's token (a delivery with a `team` field) in this header, e.g. `X-Team-Token`,
    # or `Authorization` with `team_token_prefix: "Bearer "`.
    team_token_header: str | None = None
    team_token_prefix: str = ""


ACTIONS: dict[str, dict[str, Any]] = {"forward": {}}


def incident_of(event: Event | None) -> str | None:
    """The PagerDuty incident an event is about, if any."""
    if event is None:
        return None
    found = event.identifiers.get("pagerduty_incident_id")
    if found:
        return found
    if event.subject and event.subject.system == "pagerduty" and event.subject.type == "incident":
        return event.subject.id
    return None


def request(settings: Settings, action: str, fields: Mapping[str, Any], sending: Sending) -> OutgoingRequest:
    event = sending.event
    if settings.body == "raw":
        body = msgspec.json.encode(event.raw if event else None)
    else:
        data = {k: v for k, v in to_dict(event).items() if k != "raw"} if event else None
        document: dict[str, Any] = {
            "type": event.kind if event else "unknown",
            "timestamp": dt.datetime.fromtimestamp(sending.now, dt.UTC).isoformat(),
            "data": data,
        }
        if fields.get("context") is not None:
            document["context"] = fields["context"]
        if settings.callback_url and settings.secret and event:
            document["callback"] = {
                "url": settings.callback_url,
                "event_id": event.id,
                "token": callback_token(settings.secret.get_secret_value(), event.id),
            }
        body = msgspec.json.encode(document)
    timestamp = int(sending.now)
    headers = {name: value.get_secret_value() for name, value in settings.headers.items()}
    headers.update(
        {"content-type": "application/json", "webhook-id": sending.delivery_id, "webhook-timestamp": str(timestamp)}
    )
    if settings.team_token_header and sending.team_token:
        headers[settings.team_token_header] = settings.team_token_prefix + sending.team_token
    if settings.secret:
        headers["webhook-signature"] = standard_webhooks_signature(
            settings.secret.get_secret_value(), sending.delivery_id, timestamp, body
        )
    return OutgoingRequest("POST", settings.url, headers=headers, content=body)


def classify(response: Response, settings: Settings, fields: Mapping[str, Any], sending: Sending) -> Outcome:
    if not response.is_success:
        return classify_http(response, error_text(response))
    try:
        answer = response.json()
    except ValueError:
        answer = None
    note = answer.get("note") if isinstance(answer, dict) else None
    incident = incident_of(sending.event)
    if isinstance(note, str) and note.strip() and settings.notes_to and incident:
        follow = FollowUp(settings.notes_to, "note", {"incident_id": incident, "content": note})
        return Outcome("success", f"HTTP {response.status_code}; the answer becomes a note", follow_ups=(follow,))
    return Outcome("success", f"HTTP {response.status_code}")


TARGET = Target(
    name="forward", settings=Settings, actions=ACTIONS, request=request, classify=classify, refers_to=("notes_to",)
)
