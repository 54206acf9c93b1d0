"""Slack: the Events API and interactivity (buttons, modals, shortcuts).

Authentication is Slack's request signature: `X-Slack-Signature: v0=<hex HMAC-SHA256 of
"v0:{X-Slack-Request-Timestamp}:{raw body}">` with the app's signing secret. Missing → 401;
wrong → 403; a timestamp more than five minutes from now → 403 (`stale_timestamp`: a replay).
The `url_verification` challenge is answered (once its signature checks) and not stored.

Slack wants a 200 within 3 s and retries otherwise, even when the first answer was merely
late, marking retries with `X-Slack-Retry-Num`. The delivery key is the `event_id`, the same on
every retry, so a retry is answered 200 and stored once.

Interactions arrive form-encoded: `payload=<JSON>`.

| event field  | Events API (`event_callback`)                              | interactions (`payload=`)                    |
| ------------ | ---------------------------------------------------------- | -------------------------------------------- |
| delivery_key | `event_id` (else a digest of the body)                     | `trigger_id` (else `action_ts`, else a digest) |
| kind         | `slack.` + `event.type` (`slack.app_mention`, `slack.message`) | `slack.interaction.` + `type` (`block_actions`, `view_submission`, …) |
| subject      | `{slack, message, <channel>:<ts>}`                         | `{slack, message, <channel>:<message.ts>}` when there is a message |
| title        | `event.text` (first 200 characters)                        | the first action's `value` or `text`, else the view's title |
| actor        | `event.user`                                               | `user.id`                                    |
| actor_name   | none                                                        | `user.username` (else `user.name`)           |
| occurred_at  | `event_time` (Unix seconds)                                | none                                          |
| identifiers  | `slack_channel_id` (`event.channel`, or `event.item.channel`), `slack_team_id`, `slack_user_id`, `slack_event_id` | `slack_channel_id` (`channel.id`), `slack_team_id` (`team.id`), `slack_user_id` |
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, SecretStr

from alertbridge.events import Subject
from alertbridge.security import hmac_sha256_hex, same_secret, secret_values
from alertbridge.sources.base import (
    BadPayload,
    Claim,
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

MAX_AGE = 300.0  # Slack's advice: refuse requests more than five minutes old


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The app's signing secret; a list while rotating.
    signing_secret: SecretStr | list[SecretStr]
    max_age: float = MAX_AGE

    def secrets(self) -> list[str]:
        return secret_values(self.signing_secret)


def verify(request: Incoming, endpoint: Endpoint) -> None:
    settings: Settings = endpoint.settings
    signature = request.headers.get("x-slack-signature")
    timestamp = request.headers.get("x-slack-request-timestamp")
    if not signature or not timestamp:
        raise Unauthorized(401, "missing_signature", "X-Slack-Signature and X-Slack-Request-Timestamp are required")
    try:
        sent = float(timestamp)
    except ValueError:
        raise Unauthorized(403, "bad_signature", "X-Slack-Request-Timestamp is not a Unix time") from None
    if abs(endpoint.clock() - sent) > settings.max_age:
        raise Unauthorized(403, "stale_timestamp", "the request is more than five minutes old: refused as a replay")
    base = f"v0:{timestamp}:".encode() + request.body
    matched = False
    for secret in settings.secrets():
        matched |= same_secret(signature, "v0=" + hmac_sha256_hex(secret, base))
    if not matched:
        raise Unauthorized(403, "bad_signature", "the signature does not match the body")


def _document(request: Incoming) -> dict[str, Any]:
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = parse_qs(request.body.decode("utf-8", errors="replace"))
        if "payload" not in form:
            raise BadPayload("a form-encoded Slack request carries payload=<JSON>")
        payload = decode_json(form["payload"][0], "payload=")
        if not isinstance(payload, dict):
            raise BadPayload("payload= must be a JSON object")
        return {"_interaction": True, **payload}
    body = decode_json(request.body)
    if not isinstance(body, dict):
        raise BadPayload("the body must be a JSON object")
    return body


def handshake(request: Incoming, endpoint: Endpoint) -> Reply | None:
    if b"url_verification" not in request.body:
        return None
    body = _document(request)
    if body.get("type") != "url_verification":
        return None
    verify(request, endpoint)
    return Reply(200, {"challenge": body.get("challenge")})


def parse(request: Incoming, endpoint: Endpoint) -> list[Event]:
    body = _document(request)
    if body.pop("_interaction", False):
        return [_interaction(body, request, endpoint)]
    event = obj(body.get("event"))
    if not event:
        raise BadPayload("not a Slack Events API payload: expected {'event': {...}}")
    channel = text(event.get("channel")) or text(dig(event, "item", "channel"))
    ts = text(event.get("ts")) or text(event.get("event_ts"))
    when = body.get("event_time")
    identifiers = _identifiers(
        channel, text(body.get("team_id")) or text(event.get("team")), text(event.get("user")), body.get("event_id")
    )
    return [
        endpoint.event(
            kind=f"slack.{text(event.get('type')) or 'event'}",
            delivery_key=text(body.get("event_id")) or body_digest(request.body),
            occurred_at=_unix_time(when),
            subject=Subject("slack", "message", f"{channel}:{ts}") if channel and ts else None,
            title=(text(event.get("text")) or "")[:200] or None,
            actor=text(event.get("user")),
            identifiers=identifiers,
            raw=body,
        )
    ]


def _unix_time(value: Any) -> str | None:
    """Unix seconds as ISO 8601; none for what is not a time (a string, a year past 9999)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        return dt.datetime.fromtimestamp(value, dt.UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def _interaction(payload: dict[str, Any], request: Incoming, endpoint: Endpoint) -> Event:
    channel = text(dig(payload, "channel", "id")) or text(dig(payload, "container", "channel_id"))
    message_ts = text(dig(payload, "message", "ts")) or text(dig(payload, "container", "message_ts"))
    actions = payload.get("actions") if isinstance(payload.get("actions"), list) else []
    first = obj(actions[0]) if actions else {}
    title = (
        text(first.get("value"))
        or text(dig(first, "text", "text"))
        or text(dig(payload, "view", "title", "text"))
        or text(payload.get("callback_id"))
    )
    return endpoint.event(
        kind=f"slack.interaction.{text(payload.get('type')) or 'unknown'}",
        delivery_key=text(payload.get("trigger_id")) or text(first.get("action_ts")) or body_digest(request.body),
        subject=Subject("slack", "message", f"{channel}:{message_ts}") if channel and message_ts else None,
        title=title,
        actor=text(dig(payload, "user", "id")),
        actor_name=text(dig(payload, "user", "username")) or text(dig(payload, "user", "name")),
        identifiers=_identifiers(channel, text(dig(payload, "team", "id")), text(dig(payload, "user", "id")), None),
        raw=payload,
    )


def _identifiers(channel: str | None, team: str | None, user: str | None, event_id: Any) -> dict[str, str]:
    pairs = {
        "slack_channel_id": channel,
        "slack_team_id": team,
        "slack_user_id": user,
        "slack_event_id": text(event_id),
    }
    return {key: value for key, value in pairs.items() if value}


SOURCE = Source(
    name="slack",
    settings=Settings,
    parse=parse,
    verify=verify,
    handshake=handshake,
    claims=(Claim("slack_channel_ids", "slack_channel_id", 30),),
)
