"""Opsgenie outgoing webhooks (a "Webhook" integration): one alert action per request.

Opsgenie signs nothing, so the endpoint must be given a credential, and the webhook
integration is set up to send it: a token as `?token=` on the URL, in a custom header
(`X-Webhook-Token` by default, or `Authorization: Bearer …`), the Opsgenie API key alertbridge
already holds as a custom header `Authorization: GenieKey <key>` (`api_key`), or HTTP basic auth
(`username`/`password`, as `https://user:pass@host/…`). Missing → 401, wrong → 403.

Opsgenie sends no delivery id. The key is the request id Opsgenie gives the change
(`alertFlowContext.requestId`) when present, else the action with the alert id and its
`updatedAt`, else a digest of the body: a resent webhook is stored once.

| event field  | from the payload                                                             |
| ------------ | ---------------------------------------------------------------------------- |
| kind         | `action`: Create → `alert.created`, Acknowledge → `alert.acknowledged`, UnAcknowledge → `alert.unacknowledged`, AddNote → `alert.note_added`, Close → `alert.closed`, Delete → `alert.deleted`, Escalate → `alert.escalated`, AssignOwnership → `alert.ownership_assigned`, TakeOwnership → `alert.ownership_taken`, AddTags → `alert.tags_added`, RemoveTags → `alert.tags_removed`, AddResponder → `alert.responder_added`, AddRecipient → `alert.recipient_added`, AddTeam → `alert.team_added`, Snooze → `alert.snoozed`; any other `X` → `alert.` + X in snake case |
| subject      | `{opsgenie, alert, alert.alertId}`                                           |
| title        | `alert.message`                                                              |
| description  | `alert.description` (sent only when the integration is set to add it)        |
| priority     | `alert.priority` (`P1`…`P5`, or the number 1…5)                              |
| severity     | from priority: P1 critical, P2 error, P3 warning, P4/P5 info                 |
| tags         | `alert.tags`                                                                 |
| actor        | `alert.userId` (else `alert.username`)                                       |
| actor_name   | `alert.username`                                                             |
| note         | `alert.note` (AddNote; the top-level `note` as seed 002's example sends it)  |
| dedup_key    | `alert.alias`                                                                |
| identifiers  | `opsgenie_alert_id`, `opsgenie_alert_alias`, `opsgenie_tiny_id`, `opsgenie_integration_id`, `opsgenie_source_type` (`API`, `web`, …) |
"""

from __future__ import annotations

import base64
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from alertbridge.events import Subject
from alertbridge.security import any_secret, same_secret, secret_values
from alertbridge.sources.base import (
    BadPayload,
    Endpoint,
    Event,
    Incoming,
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

    token: SecretStr | list[SecretStr] | None = None
    token_header: str = "x-webhook-token"
    username: str | None = None
    password: SecretStr | None = None
    # The Opsgenie API key alertbridge already holds, accepted as `Authorization: GenieKey <key>`
    # (a custom header of the webhook integration), so a setup needs no secret of its own.
    api_key: SecretStr | None = None

    @model_validator(mode="after")
    def _some_credential(self) -> Settings:
        if not self.tokens() and self.password is None and not self.genie_key():
            raise ValueError(
                "an Opsgenie endpoint needs a credential: `token`, `api_key`, or `username` and `password`"
            )
        if (self.username is None) != (self.password is None):
            raise ValueError("basic auth needs both `username` and `password`")
        return self

    def tokens(self) -> list[str]:
        """The configured tokens; an empty one (an unset `${VAR:-}`) is no token at all."""
        return secret_values(self.token, skip_empty=True)

    def genie_key(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key and self.api_key.get_secret_value() else None


KINDS = {
    "Create": "created",
    "Acknowledge": "acknowledged",
    "UnAcknowledge": "unacknowledged",
    "AddNote": "note_added",
    "Close": "closed",
    "Delete": "deleted",
    "Escalate": "escalated",
    "AssignOwnership": "ownership_assigned",
    "TakeOwnership": "ownership_taken",
    "AddTags": "tags_added",
    "RemoveTags": "tags_removed",
    "AddResponder": "responder_added",
    "AddRecipient": "recipient_added",
    "AddTeam": "team_added",
    "Snooze": "snoozed",
}
SEVERITY = {"P1": "critical", "P2": "error", "P3": "warning", "P4": "info", "P5": "info"}


def kind_of(action: str) -> str:
    known = KINDS.get(action)
    if known:
        return f"alert.{known}"
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", action).replace(" ", "_").lower()
    return f"alert.{snake}"


def _what_to_send(settings: Settings) -> str:
    """The 401's message: the credentials this endpoint takes, as the Opsgenie integration is set to send
    them (read by whoever sets it up, so it names headers, never a secret)."""
    ways = []
    if settings.genie_key():
        ways.append(
            "the custom header `Authorization: GenieKey <API key>` in the Opsgenie webhook integration,"
            " with the Opsgenie API key alertbridge is configured with"
        )
    if settings.tokens():
        header = "-".join(part.capitalize() for part in settings.token_header.split("-"))
        ways.append(
            f"this endpoint's token as ?token=… on the URL, or in a `{header}` header (or `Authorization: Bearer …`)"
        )
    if settings.password is not None:
        ways.append("basic auth with this endpoint's user name and password (https://user:password@host/… as the URL)")
    return "no credential: send " + "; or ".join(ways)


def verify(request: Incoming, endpoint: Endpoint) -> None:
    settings: Settings = endpoint.settings
    auth = request.headers.get("authorization", "")
    key = settings.genie_key()
    if key and auth[:9].lower() == "geniekey ":
        if not same_secret(auth[9:].strip(), key):
            raise Unauthorized(403, "bad_token", "the GenieKey is not this integration's API key")
        return
    if settings.password is not None and auth[:6].lower() == "basic ":
        try:
            user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise Unauthorized(403, "bad_credentials", "unreadable basic auth") from None
        ok_user = same_secret(user, settings.username or "")
        ok_password = same_secret(password, settings.password.get_secret_value())
        if not (ok_user and ok_password):
            raise Unauthorized(403, "bad_credentials", "wrong user name or password")
        return
    given = request.query.get("token") or request.headers.get(settings.token_header.lower())
    if given is None and auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    if given is None:
        raise Unauthorized(401, "missing_token", _what_to_send(settings))
    if not settings.tokens() or not any_secret(given, settings.tokens()):
        raise Unauthorized(403, "bad_token", "invalid token")


def parse(request: Incoming, endpoint: Endpoint) -> list[Event]:
    body = decode_json(request.body)
    if not isinstance(body, dict):
        raise BadPayload("the body must be a JSON object")
    action = text(body.get("action"))
    alert = obj(body.get("alert"))
    if action is None or not alert:
        raise BadPayload("not an Opsgenie webhook: expected {'action': ..., 'alert': {...}}")
    alert_id = text(alert.get("alertId"))
    request_id = text(dig(body, "alertFlowContext", "requestId"))
    updated = text(alert.get("updatedAt"))
    if request_id:
        delivery_key = f"{action}:{request_id}"
    elif alert_id and updated:
        delivery_key = f"{action}:{alert_id}:{updated}"
    else:
        delivery_key = body_digest(request.body)
    priority = _priority(alert.get("priority"))
    identifiers = {
        key: value
        for key, value in (
            ("opsgenie_alert_id", alert_id),
            ("opsgenie_alert_alias", text(alert.get("alias"))),
            ("opsgenie_tiny_id", text(alert.get("tinyId"))),
            ("opsgenie_integration_id", text(body.get("integrationId"))),
            ("opsgenie_source_type", text(dig(body, "source", "type"))),
        )
        if value
    }
    tags = alert.get("tags")
    return [
        endpoint.event(
            kind=kind_of(action),
            delivery_key=delivery_key,
            subject=Subject("opsgenie", "alert", alert_id) if alert_id else None,
            title=text(alert.get("message")),
            description=text(alert.get("description")),
            priority=priority,
            severity=SEVERITY.get(priority or ""),
            tags=tuple(t for t in (text(tag) for tag in tags) if t) if isinstance(tags, list) else (),
            actor=text(alert.get("userId")) or text(alert.get("username")),
            actor_name=text(alert.get("username")),
            note=text(alert.get("note")) or text(body.get("note")),
            dedup_key=text(alert.get("alias")),
            identifiers=identifiers,
            raw=body,
        )
    ]


def _priority(value: Any) -> str | None:
    if isinstance(value, int) and 1 <= value <= 5:
        return f"P{value}"
    found = text(value)
    if found and found.upper() in SEVERITY:
        return found.upper()
    return None


SOURCE = Source(
    name="opsgenie",
    settings=Settings,
    parse=parse,
    verify=verify,
    aliases={"opsgenie_alert_alias": ("opsgenie", "alert_alias")},
    changes={
        "alert.created": "created",
        "alert.acknowledged": "acknowledged",
        "alert.unacknowledged": "unacknowledged",
        "alert.note_added": "annotated",
        "alert.closed": "resolved",
    },
    # A closed (or deleted) alert whose alias fires again is a new alert: a new episode.
    episodes={"alert.created": "open", "alert.closed": "close", "alert.deleted": "close"},
    # Opsgenie's `source.type` is `API` for changes made through its API, ours among them: there the
    # name it gives may not be the `user` we sent, so a different name proves nothing.
    through_api={"opsgenie_source_type": "api"},
)
