"""Slack Web API: post a message (`chat.postMessage`), in a channel or as a thread reply.

Settings: `token` (a bot token, `xoxb-…`, sent as `Authorization: Bearer …`; the app needs the
`chat:write` scope and to be in the channel), `url` (default `https://slack.com/api`).

| action | fields (defaults in brackets)                                                                 |
| ------ | --------------------------------------------------------------------------------------------- |
| post   | channel (required: an id such as `C0A4967KRBM`), text [event.title], thread_ts (reply in a thread), blocks, unfurl_links |

Slack answers HTTP 200 even when it refuses: `{"ok": false, "error": "channel_not_found"}` is
permanent, with Slack's error kept on the attempt; `ratelimited` (or HTTP 429 with
`Retry-After`) and 5xx are retried. A posted message's `ts` is kept on the delivery, so a later
action can reply in its thread. Text is cut to Slack's 40,000 characters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr

from alertbridge.targets.base import Outcome, OutgoingRequest, Response, Sending, Target, classify_http, retry_after

DEFAULT_URL = "https://slack.com/api"
TEXT_LIMIT = 40000
RETRYABLE = {"ratelimited", "rate_limited", "service_unavailable", "internal_error", "fatal_error", "request_timeout"}


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr
    url: str = DEFAULT_URL


ACTIONS: dict[str, dict[str, Any]] = {"post": {"text": "{{ event.title or event.kind }}"}}


class MissingField(ValueError):
    pass


def request(settings: Settings, action: str, fields: Mapping[str, Any], sending: Sending) -> OutgoingRequest:
    if action != "post":
        raise MissingField(f"unknown action {action!r}")
    channel = fields.get("channel")
    if not channel:
        raise MissingField("the channel field is empty: which Slack channel?")
    body: dict[str, Any] = {"channel": str(channel), "text": str(fields.get("text") or "")[:TEXT_LIMIT]}
    if fields.get("thread_ts"):
        body["thread_ts"] = str(fields["thread_ts"])
    if isinstance(fields.get("blocks"), list):
        body["blocks"] = fields["blocks"]
    if "unfurl_links" in fields:
        body["unfurl_links"] = bool(fields["unfurl_links"])
    headers = {
        "Authorization": f"Bearer {settings.token.get_secret_value()}",
        "Content-Type": "application/json; charset=utf-8",
    }
    return OutgoingRequest("POST", f"{settings.url.rstrip('/')}/chat.postMessage", json=body, headers=headers)


def classify(response: Response, settings: Settings, fields: Mapping[str, Any], sending: Sending) -> Outcome:
    if not response.is_success:
        return classify_http(response, f"HTTP {response.status_code}")
    try:
        answer = response.json()
    except ValueError:
        return Outcome("retry", "Slack answered something that is not JSON")
    if not isinstance(answer, dict):
        return Outcome("retry", "Slack answered something that is not an object")
    if answer.get("ok"):
        result = {key: answer[key] for key in ("ts", "channel") if answer.get(key)}
        return Outcome("success", f"posted {result.get('ts', '')}".strip(), result=result or None)
    error = str(answer.get("error") or "unknown_error")
    if error in RETRYABLE:
        return Outcome("retry", f"Slack: {error}", retry_after=retry_after(response))
    return Outcome("permanent", f"Slack: {error}")


def order_key(settings: Settings, action: str, fields: Mapping[str, Any]) -> str | None:
    channel = fields.get("channel")
    return f"channel:{channel}" if channel else None  # messages to a channel keep their order


TARGET = Target(
    name="slack",
    settings=Settings,
    actions=ACTIONS,
    request=request,
    classify=classify,
    order_key=order_key,
    required={"post": (("channel",),)},
    needs={"post": (("channel",),)},
    default_rate_limit=(50, 60.0),  # chat.postMessage: about one a second per channel, bursts allowed
)
