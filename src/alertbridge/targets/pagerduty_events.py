"""PagerDuty Events API v2: trigger, acknowledge and resolve alerts on a service.

Settings: `routing_key` (the service's Events API v2 integration key), `url` (the enqueue
URL; `https://events.eu.pagerduty.com/v2/enqueue` for EU accounts). PagerDuty accepts about
120 events a minute per routing key, so a target gets `rate_limit: {limit: 120, per: 60}`
unless it sets its own, and a storm is paced in the outbox instead of refused.

| action      | fields (defaults in brackets)                                                  |
| ----------- | ------------------------------------------------------------------------------ |
| trigger     | summary [event.title], severity [event.severity], source [event.source],        |
|             | dedup_key [event.dedup_key], timestamp [event.occurred_at], component, group,   |
|             | class, custom_details [the event's fields], links [event.url], images, client,  |
|             | client_url                                                                     |
| acknowledge | dedup_key [event.dedup_key]                                                    |
| resolve     | dedup_key [event.dedup_key]                                                    |

The summary is cut to PagerDuty's 1,024 characters; a dedup key longer than 255 is
shortened with a digest so two long keys stay distinct. An unknown severity becomes
`error`. PagerDuty dedupes on (routing key, dedup key), so sending a delivery again is safe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr

from alertbridge.events import Expected
from alertbridge.targets.base import Outcome, OutgoingRequest, Response, Sending, Target, classify_http, error_text

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_LIMIT = 1024
DEDUP_LIMIT = 255
SEVERITIES = ("critical", "error", "warning", "info")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    routing_key: SecretStr
    url: str = DEFAULT_URL


ACTIONS: dict[str, dict[str, Any]] = {
    "trigger": {
        "summary": "{{ event.title or event.kind }}",
        "severity": "{{ event.severity or 'error' }}",
        "source": "{{ event.source }}",
        "dedup_key": "{{ event.dedup_key or event.id }}",
        "timestamp": "{{ event.occurred_at }}",
        "custom_details": "{{ event | details }}",
        "links": "{{ [{'href': event.url, 'text': 'Open in ' ~ event.source}] if event.url else none }}",
        "client": "alertbridge",
    },
    "acknowledge": {"dedup_key": "{{ event.dedup_key or event.id }}"},
    "resolve": {"dedup_key": "{{ event.dedup_key or event.id }}"},
}

_PAYLOAD_FIELDS = ("summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details")


def dedup_key(value: Any) -> str:
    key = str(value)
    if len(key) <= DEDUP_LIMIT:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{key[: DEDUP_LIMIT - 17]}~{digest}"


def request(settings: Settings, action: str, fields: Mapping[str, Any], sending: Sending) -> OutgoingRequest:
    body: dict[str, Any] = {
        "routing_key": settings.routing_key.get_secret_value(),
        "event_action": action,
    }
    if fields.get("dedup_key"):
        body["dedup_key"] = dedup_key(fields["dedup_key"])
    if action == "trigger":
        payload = {name: fields[name] for name in _PAYLOAD_FIELDS if fields.get(name) not in (None, "", {}, [])}
        payload["summary"] = str(payload.get("summary") or "alertbridge event")[:SUMMARY_LIMIT]
        payload["source"] = str(payload.get("source") or "alertbridge")
        severity = str(payload.get("severity") or "").lower()
        payload["severity"] = severity if severity in SEVERITIES else "error"
        body["payload"] = payload
        for name in ("links", "images", "client", "client_url"):
            if fields.get(name):
                body[name] = fields[name]
    return OutgoingRequest("POST", settings.url, json=body)


def classify(response: Response, settings: Settings, fields: Mapping[str, Any], sending: Sending) -> Outcome:
    outcome = classify_http(response, "" if response.is_success else error_text(response))
    if outcome.kind == "success":
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        key = answer.get("dedup_key") if isinstance(answer, dict) else None
        # The incident PagerDuty opens carries the dedup key as its incident_key.
        created = (("pagerduty", "incident_key", str(key)),) if key and sending.action == "trigger" else ()
        return Outcome(
            "success", f"HTTP {response.status_code}", result={"dedup_key": key} if key else None, created=created
        )
    if response.status_code == 429 and outcome.retry_after is None:
        # PagerDuty asks for "a backoff of a few minutes" and sends no Retry-After.
        return Outcome("retry", outcome.message, retry_after=30.0)
    return outcome


CHANGES = {"trigger": "created", "acknowledge": "acknowledged", "resolve": "resolved"}


def echo(settings: Settings, action: str, fields: Mapping[str, Any]) -> list[Expected]:
    key = fields.get("dedup_key")
    return [Expected("pagerduty", "incident_key", dedup_key(key), CHANGES[action])] if key and action in CHANGES else []


def order_key(settings: Settings, action: str, fields: Mapping[str, Any]) -> str | None:
    key = fields.get("dedup_key")
    return f"dedup:{dedup_key(key)}" if key else None


TARGET = Target(
    name="pagerduty_events",
    settings=Settings,
    actions=ACTIONS,
    request=request,
    classify=classify,
    order_key=order_key,
    echo=echo,
    default_rate_limit=(120, 60.0),
)
