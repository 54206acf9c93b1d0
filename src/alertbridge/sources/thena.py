"""Thena platform webhooks: ticket events and app installation events.

Authentication is a shared token, as `?token=` on the URL (what Thena's webhook app is
given) or in the `X-Webhook-Token` header or `Authorization: Bearer`. Thena documents no
signature. GET and HEAD are answered 200 without a token: Thena probes both URLs.

The body is either wrapped, `{"message": {...}}` (the seed's examples; the message may be a
JSON string, as SNS sends it), or flat (`{eventId, eventType, payload, ...}`, Thena's docs).
Installation webhooks use `event_type` and carry a bot token, which is removed before
the payload is stored.

| event field   | from the payload                                                          |
| ------------- | ------------------------------------------------------------------------- |
| delivery_key  | `eventId` (else `event_id`, else a digest of the body)                    |
| kind          | `eventType` with `:` → `.` (`ticket:created` → `ticket.created`)          |
| occurred_at   | `timestamp`, else the ticket's `updatedAt` / `createdAt`                  |
| subject       | `{system: thena, type: ticket, id: ticket.id}`                            |
| title         | `ticket.title` (else `aiGeneratedTitle`)                                  |
| description   | `ticket.description` (else `aiGeneratedSummary`)                          |
| priority      | `priorityName`: urgent/critical → P1, high → P2, medium/normal → P3, low → P4 |
| severity      | from the same: P1 critical, P2 error, P3 warning, P4 info; unknown → warning |
| status        | `ticket.statusName`                                                       |
| assignees     | `assignedAgent.email`, then `assignedTo`: a string, `{email, id, name}` or a list; emails lower-case |
| teams         | `ticket.teamName` (else `teamId`), `subTeamName`                          |
| actor         | `actor.email` (else `actor.id`)                                           |
| tags          | `ticket.tags`                                                             |
| identifiers   | `thena_team_id`, `thena_ticket_id`, `thena_org_id`                        |
| dedup_key     | `thena-ticket-<ticket.id>`                                                |
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr

from alertbridge.events import Service, Subject
from alertbridge.security import any_secret, secret_values
from alertbridge.sources.base import (
    BadPayload,
    Endpoint,
    Event,
    Incoming,
    Reply,
    Source,
    Unauthorized,
    body_digest,
    decode_json,
    dig,
    obj,
    text,
)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # One token, or several while rotating: any of them is accepted.
    token: SecretStr | list[SecretStr]
    token_header: str = "x-webhook-token"

    def tokens(self) -> list[str]:
        return secret_values(self.token)


PRIORITY = {"urgent": "P1", "critical": "P1", "high": "P2", "medium": "P3", "normal": "P3", "low": "P4"}
SEVERITY = {"P1": "critical", "P2": "error", "P3": "warning", "P4": "info", "P5": "info"}
SECRET_KEYS = frozenset({"bot_token", "botToken", "botTokenKey", "bot_token_key"})


def verify(request: Incoming, endpoint: Endpoint) -> None:
    settings: Settings = endpoint.settings
    given = request.query.get("token")
    if given is None:
        given = request.headers.get(settings.token_header.lower())
    if given is None:
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
    if given is None:
        raise Unauthorized(401, "missing_token", "a token is required: add ?token=… to the webhook URL")
    if not any_secret(given, settings.tokens()):
        raise Unauthorized(403, "bad_token", "invalid token")


def handshake(request: Incoming, endpoint: Endpoint) -> Reply | None:
    if request.method in ("GET", "HEAD"):
        return Reply(200, {"ok": True})
    return None


def parse(request: Incoming, endpoint: Endpoint) -> list[Event]:
    body = decode_json(request.body)
    if not isinstance(body, dict):
        raise BadPayload("the body must be a JSON object")
    message = body.get("message", body)
    if isinstance(message, str | bytes):
        message = decode_json(message, "'message', a string,")
    if not isinstance(message, dict):
        raise BadPayload("'message' must be a JSON object")

    event_type = text(message.get("eventType")) or text(message.get("event_type"))
    if event_type is None:
        raise BadPayload("no eventType in the payload (expected message.eventType or eventType)")
    # Installation webhooks carry no event id; the same body twice is the same delivery.
    delivery_key = text(message.get("eventId")) or text(message.get("event_id")) or body_digest(request.body)
    kind = event_type.replace(":", ".")
    payload = obj(message.get("payload"))
    ticket = obj(payload.get("ticket")) or obj(payload.get("previousTicket"))
    if kind.startswith("app."):
        return [endpoint.event(kind=kind, delivery_key=delivery_key, raw=_redact(body))]

    priority = PRIORITY.get((text(ticket.get("priorityName")) or "").lower())
    ticket_id = text(ticket.get("id")) or text(ticket.get("ticketId"))
    actor = obj(message.get("actor"))
    identifiers = {
        key: value
        for key, value in (
            ("thena_ticket_id", ticket_id),
            ("thena_team_id", text(ticket.get("teamId"))),
            ("thena_org_id", text(message.get("orgId"))),
        )
        if value
    }
    teams = tuple(
        t for t in (text(ticket.get("teamName")) or text(ticket.get("teamId")), text(ticket.get("subTeamName"))) if t
    )
    return [
        endpoint.event(
            kind=kind,
            delivery_key=delivery_key,
            occurred_at=text(message.get("timestamp"))
            or text(ticket.get("updatedAt"))
            or text(ticket.get("createdAt")),
            subject=Subject("thena", "ticket", ticket_id) if ticket_id else None,
            title=text(ticket.get("title")) or text(ticket.get("aiGeneratedTitle")),
            description=text(ticket.get("description")) or text(ticket.get("aiGeneratedSummary")),
            priority=priority,
            severity=SEVERITY.get(priority or "", "warning"),
            status=text(ticket.get("statusName")),
            service=Service(id=text(ticket.get("teamId")), name=text(ticket.get("teamName")))
            if ticket.get("teamId") or ticket.get("teamName")
            else None,
            teams=teams,
            assignees=assignees(ticket),
            actor=text(actor.get("email")) or text(actor.get("id")),
            tags=tuple(t for t in (text(tag) for tag in ticket.get("tags") or [] if tag) if t)
            if isinstance(ticket.get("tags"), list)
            else (),
            identifiers=identifiers,
            dedup_key=f"thena-ticket-{ticket_id}" if ticket_id else None,
            raw=body,
        )
    ]


def assignees(ticket: dict[str, Any]) -> tuple[str, ...]:
    """Every assignee named in the ticket, emails lower-cased, first seen first.

    The seed sends `assignedTo` as a string, an object or a list; Thena's docs type it as an
    id string with the email in `assignedAgent.email`. All of these are read.
    """
    found: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                add(item)
        elif isinstance(value, dict):
            add(value.get("email") or value.get("id") or value.get("name"))
        else:
            item = text(value)
            if item:
                item = item.lower() if "@" in item else item
                if item not in found:
                    found.append(item)

    add(dig(ticket, "assignedAgent", "email"))
    add(ticket.get("assignedTo"))
    return tuple(found)


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("[redacted]" if k in SECRET_KEYS else _redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


SOURCE = Source(
    name="thena",
    settings=Settings,
    parse=parse,
    verify=verify,
    handshake=handshake,
    methods=frozenset({"GET", "HEAD", "POST"}),
    command="alertbridge.sources.thena_setup:app",  # `alertbridge thena setup`
)
