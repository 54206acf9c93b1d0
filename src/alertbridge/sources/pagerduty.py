"""PagerDuty webhooks: Generic Webhooks V3 (`{"event": {...}}`) and legacy V2 (`{"messages": [...]}`).

Authentication: `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>…]`, the HMAC-SHA256 of the raw body
with the subscription's secret. Several signatures arrive during a secret rotation and several
secrets may be configured; any match passes. Missing → 401, no match → 403. V2 deliveries are
unsigned: an endpoint that takes them must say `allow_unsigned: true` (and should sit behind a
token in the URL or a private network).

PagerDuty wants a 2xx within 5 s and drops an event on any other 4xx (three drops disable the
subscription), so a genuine payload is always stored and answered 2xx, whether or not a route
takes it. `pagey.ping` is answered and not stored.

| event field  | V3 (`event.…`)                                             | V2 (`messages[].…`)                     |
| ------------ | ---------------------------------------------------------- | --------------------------------------- |
| delivery_key | `id` (the same on every retry; `X-Webhook-Id` if absent)   | `id`                                    |
| kind         | `event_type` (`incident.triggered`, any future type as is) | `event` (or `type`) mapped: `incident.trigger` → `incident.triggered` … |
| occurred_at  | `occurred_at`                                              | `created_on`                            |
| subject      | `{pagerduty, incident, data.id or data.incident.id}`       | `{pagerduty, incident, incident.id}` (`incident` or `data.incident`) |
| title        | `data.title` (else `data.incident.summary`)                | `incident.title`                        |
| priority     | `data.priority.summary` when P1…P5                         | `incident.priority.summary` / `.name`   |
| urgency      | `data.urgency`                                             | `incident.urgency`                      |
| severity     | from priority (P1 critical, P2 error, P3 warning, P4/P5 info), else urgency (high error, low warning) | same |
| status       | `data.status`                                              | `incident.status`                       |
| service      | `{id: data.service.id, name: data.service.summary}`        | `incident.service.{id, name or summary}` |
| teams        | `data.teams[].id`                                          | `incident.teams[].id`                   |
| assignees    | `data.assignees[].id`                                      | `incident.assignments[].assignee.id`    |
| actor        | `agent.id` (null when PagerDuty itself acted)              | `log_entries[0].agent.id`               |
| actor_name   | `agent.summary` (the user's name)                          | `log_entries[0].agent.summary`          |
| note         | `data.content` (annotated; `event.note.content` as seed 002 sends it), `data.message` (status update, responder) | `log_entries[0].channel.content` |
| url          | `data.html_url` (else `data.incident.html_url`)            | `incident.html_url`                     |
| dedup_key    | `data.incident_key`                                        | `incident.alerts[0].alert_key`, else `incident_key` |
| identifiers  | `pagerduty_incident_id`, `pagerduty_incident_number`, `pagerduty_incident_key`, `pagerduty_service_id`, `pagerduty_team_id`, `pagerduty_escalation_policy_id`, `pagerduty_subscription_id`, `pagerduty_integration` (`data.integration.id`, else an alert's `integration.id`) | same (no subscription); `pagerduty_integration` from `webhook.id`, a log entry's `channel.service_key`, an alert's `integration.id` |
| filtered     | with `integration_key` set: why a webhook none of whose integrations (those above, and V3's `X-Webhook-Subscription`) is one of the keys is not routed (one that names no integration is routed) | same |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict, SecretStr

from alertbridge.events import PRIORITIES, Service, Subject
from alertbridge.security import hmac_sha256_hex, same_secret, secret_values
from alertbridge.sources.base import (
    BadPayload,
    Claim,
    Endpoint,
    Event,
    Incoming,
    Integration,
    Reply,
    Source,
    Unauthorized,
    body_digest,
    decode_json,
    dig,
    obj,
    text,
)

V2_KINDS = {
    "incident.trigger": "incident.triggered",
    "incident.acknowledge": "incident.acknowledged",
    "incident.unacknowledge": "incident.unacknowledged",
    "incident.resolve": "incident.resolved",
    "incident.assign": "incident.reassigned",
    "incident.escalate": "incident.escalated",
    "incident.delegate": "incident.delegated",
    "incident.annotate": "incident.annotated",
}
SEVERITY_OF_PRIORITY = {"P1": "critical", "P2": "error", "P3": "warning", "P4": "info", "P5": "info"}
SEVERITY_OF_URGENCY = {"high": "error", "low": "warning"}


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The subscription's signing secret; a list while rotating or when several subscriptions share a URL.
    secret: SecretStr | list[SecretStr] | None = None
    allow_unsigned: bool = False  # legacy V2 webhooks carry no signature
    # Only webhooks from these integrations are routed (seed 001's "integration key for filtering");
    # others are stored, and their trace says why they were not routed.
    integration_key: str | list[str] | None = None

    def secrets(self) -> list[bytes]:
        # An empty secret (an unset `${VAR:-}`) is no secret.
        return [value.encode() for value in secret_values(self.secret, skip_empty=True)]

    def integration_keys(self) -> list[str]:
        keys = self.integration_key if isinstance(self.integration_key, list) else [self.integration_key or ""]
        return [key.strip() for key in keys if key.strip()]


def signatures(header: str) -> list[str]:
    """The `v1=` signatures in a header; other versions and malformed entries are ignored."""
    found = []
    for part in header.split(","):
        part = part.strip()
        if part.startswith("v1="):
            value = part[3:].strip().lower()
            if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
                found.append(value)
    return found


def verify(request: Incoming, endpoint: Endpoint) -> None:
    settings: Settings = endpoint.settings
    header = request.headers.get("x-pagerduty-signature")
    if header is None:
        if settings.allow_unsigned and not settings.secrets():
            return  # no secret set (yet): seed 001 took unsigned webhooks until one is
        raise Unauthorized(401, "missing_signature", "X-PagerDuty-Signature is required")
    given = signatures(header)
    if not given or not settings.secrets():
        raise Unauthorized(403, "bad_signature", "no valid v1 signature")
    matched = False
    for secret in settings.secrets():
        expected = hmac_sha256_hex(secret, request.body)
        for candidate in given:
            matched |= same_secret(candidate, expected)
    if not matched:
        raise Unauthorized(403, "bad_signature", "the signature does not match the body")


def parse(request: Incoming, endpoint: Endpoint) -> list[Event]:
    body = decode_json(request.body)
    if isinstance(body, dict) and isinstance(body.get("event"), dict):
        event = _v3(body["event"], body, request, endpoint)
        return [] if event is None else [event]
    if isinstance(body, dict) and isinstance(body.get("messages"), list):
        return [_v2(message, body, endpoint) for message in body["messages"] if isinstance(message, dict)]
    raise BadPayload("not a PagerDuty webhook: expected {'event': {...}} (V3) or {'messages': [...]} (V2)")


def _v3(event: dict[str, Any], body: Any, request: Incoming, endpoint: Endpoint) -> Event | None:
    kind = text(event.get("event_type"))
    if kind is None:
        raise BadPayload("event.event_type is missing")
    if kind == "pagey.ping":
        return None
    data = obj(event.get("data"))
    incident = data if data.get("type") == "incident" else obj(data.get("incident"))
    subject_type = "service" if kind.startswith("service.") else "incident"
    subject_id = text(data.get("id")) if subject_type == "service" else text(incident.get("id"))
    priority = _priority(incident.get("priority"))
    urgency = text(incident.get("urgency"))
    subscription = request.headers.get("x-webhook-subscription")
    integrations = [i for i in (subscription, text(dig(data, "integration", "id"))) if i] + _alert_integrations(
        incident
    )
    return endpoint.event(
        kind=kind,
        delivery_key=text(event.get("id")) or request.headers.get("x-webhook-id") or body_digest(request.body),
        occurred_at=text(event.get("occurred_at")),
        subject=Subject("pagerduty", subject_type, subject_id) if subject_id else None,
        title=text(incident.get("title")) or text(incident.get("summary")),
        description=text(incident.get("description")),
        priority=priority,
        urgency=urgency,
        severity=_severity(priority, urgency),
        status=text(incident.get("status")),
        service=_service(incident.get("service") or (data if subject_type == "service" else None)),
        teams=_ids(incident.get("teams")),
        assignees=_ids(incident.get("assignees")),
        actor=text(dig(event, "agent", "id")),
        actor_name=text(dig(event, "agent", "summary")),
        # PagerDuty puts an annotation in `data.content`; seed 002's example has it in `event.note`.
        note=text(data.get("content")) or text(dig(event, "note", "content")) or text(data.get("message")),
        url=text(incident.get("html_url")),
        dedup_key=text(incident.get("incident_key")),
        identifiers=_identifiers(incident, subscription, integrations),
        filtered=_filtered(integrations, endpoint.settings),
        raw=body,
    )


def _v2(message: dict[str, Any], body: Any, endpoint: Endpoint) -> Event:
    # PagerDuty's V2 puts `event` and `incident` on the message; seed 001's example `type` and
    # `data.incident`. Both are read.
    name = text(message.get("event")) or text(message.get("type")) or "incident.unknown"
    incident = obj(message.get("incident")) or obj(dig(message, "data", "incident"))
    entries = _list(message.get("log_entries"))
    entry = obj(entries[0]) if entries else {}
    priority = _priority(incident.get("priority"))
    urgency = text(incident.get("urgency"))
    alerts = _list(incident.get("alerts"))
    alert_key = text(obj(alerts[0]).get("alert_key")) if alerts else None
    assignments = _list(incident.get("assignments"))
    incident_id = text(incident.get("id"))
    channels = [obj(e).get("channel") for e in entries] + [dig(incident, "first_trigger_log_entry", "channel")]
    integrations = [
        *(i for i in (text(dig(message, "webhook", "id")),) if i),
        *(k for c in channels for k in (text(dig(c, "service_key")), text(dig(c, "integration_key"))) if k),
        *_alert_integrations(incident),
    ]
    return endpoint.event(
        kind=V2_KINDS.get(name, name),
        delivery_key=text(message.get("id")) or body_digest(msgspec.json.encode(message)),
        occurred_at=text(message.get("created_on")),
        subject=Subject("pagerduty", "incident", incident_id) if incident_id else None,
        title=text(incident.get("title")) or text(incident.get("summary")),
        description=text(incident.get("description")),
        priority=priority,
        urgency=urgency,
        severity=_severity(priority, urgency),
        status=text(incident.get("status")),
        service=_service(incident.get("service")),
        teams=_ids(incident.get("teams")),
        assignees=tuple(a for a in (text(dig(x, "assignee", "id")) for x in assignments) if a),
        actor=text(dig(entry, "agent", "id")),
        actor_name=text(dig(entry, "agent", "summary")) or text(dig(entry, "agent", "name")),
        note=text(dig(entry, "channel", "content")) or text(dig(entry, "note", "content")),
        url=text(incident.get("html_url")),
        dedup_key=alert_key or text(incident.get("incident_key")),
        identifiers=_identifiers({**incident, "number": incident.get("incident_number")}, None, integrations),
        filtered=_filtered(integrations, endpoint.settings),
        raw=body,
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _priority(value: Any) -> str | None:
    name = text(dig(value, "summary")) or text(dig(value, "name")) if isinstance(value, dict) else text(value)
    name = name.upper() if name else None
    return name if name in PRIORITIES else None


def _severity(priority: str | None, urgency: str | None) -> str | None:
    if priority:
        return SEVERITY_OF_PRIORITY[priority]
    return SEVERITY_OF_URGENCY.get((urgency or "").lower())


def _service(value: Any) -> Service | None:
    if not isinstance(value, dict):
        return None
    service_id, name = text(value.get("id")), text(value.get("summary")) or text(value.get("name"))
    return Service(id=service_id, name=name) if service_id or name else None


def _ids(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(i for i in (text(obj(item).get("id")) for item in value) if i)


def _alert_integrations(incident: dict[str, Any]) -> list[str]:
    """The ids of the integrations that raised the incident's alerts, where the payload lists them."""
    return [i for i in (text(dig(a, "integration", "id")) for a in _list(incident.get("alerts"))) if i]


def _filtered(integrations: list[str], settings: Settings) -> str | None:
    """Why the endpoint's integration filter keeps this webhook from routing, or None when it passes."""
    keys = settings.integration_keys()
    # A webhook that names no integration (V3 acknowledgements and resolves often do not) is routed:
    # the filter cannot tell where it came from, and what cannot be attributed is not dropped.
    if not keys or not integrations or any(found in keys for found in integrations):
        return None
    only = " or ".join(repr(key) for key in keys)
    named = ", ".join(repr(found) for found in dict.fromkeys(integrations))
    return f"from integration {named}; this endpoint takes only {only} (integration key filter)"


def _identifiers(incident: dict[str, Any], subscription: str | None, integrations: list[str]) -> dict[str, str]:
    pairs = {
        "pagerduty_incident_id": text(incident.get("id")),
        "pagerduty_incident_number": text(incident.get("number")),
        "pagerduty_incident_key": text(incident.get("incident_key")),
        "pagerduty_service_id": text(dig(incident, "service", "id")),
        "pagerduty_team_id": (_ids(incident.get("teams")) or (None,))[0],
        "pagerduty_escalation_policy_id": text(dig(incident, "escalation_policy", "id")),
        "pagerduty_subscription_id": subscription,
        "pagerduty_integration": next((i for i in integrations if i != subscription), None),
    }
    return {key: value for key, value in pairs.items() if value}


def handshake(request: Incoming, endpoint: Endpoint) -> Reply | None:
    """GET and HEAD say the endpoint is there (seed 001's "webhook verification endpoint")."""
    if request.method in ("GET", "HEAD"):
        return Reply(200, {"ok": True, "source": "pagerduty", "signed": bool(endpoint.settings.secrets())})
    return None


def _integration(extra: Mapping[str, Any], saved: Mapping[str, Any], secret: str | None) -> dict[str, Any]:
    """Seed 001's saved settings over the endpoint's own: a saved webhook secret makes every webhook
    need its signature, an integration key routes only that integration's webhooks."""
    updated = {**extra}
    if secret:
        updated.update(secret=secret, allow_unsigned=False)
    if saved.get("integrationKey"):
        updated["integration_key"] = saved["integrationKey"]
    return updated


SOURCE = Source(
    name="pagerduty",
    settings=Settings,
    parse=parse,
    verify=verify,
    handshake=handshake,
    methods=frozenset({"GET", "HEAD", "POST"}),
    claims=(Claim("pagerduty_service_ids", "pagerduty_service_id", 20),),
    aliases={"pagerduty_incident_key": ("pagerduty", "incident_key")},
    changes={
        "incident.triggered": "created",
        "incident.acknowledged": "acknowledged",
        "incident.unacknowledged": "unacknowledged",
        "incident.annotated": "annotated",
        "incident.resolved": "resolved",
        "incident.reassigned": "reassigned",
    },
    integration=Integration(kind="pagerduty", path="/api/webhooks/pagerduty", apply=_integration, key_test="pagerduty"),
)
