"""The incident inbox: notifications for every user of the org, and incidents made from them.

Seed 001's flow: a PagerDuty alert becomes a notification in every user's bell; a click opens
the new-incident form prefilled; the user creates the incident. Later events about the same
PagerDuty incident update the notification (unread again) and, once it exists, the incident.
This target writes to alertbridge's own store; nothing leaves the process.

| action | fields (defaults in brackets)                                                                |
| ------ | -------------------------------------------------------------------------------------------- |
| notify | key [the PagerDuty incident id, else the event's subject], title [`[PagerDuty] ` + event.title], body [event.description], link [event.url] |

The prefill, from the event as seed 001 maps it:

| incident field | from the event                                                               |
| -------------- | ---------------------------------------------------------------------------- |
| title          | `[PagerDuty] ` + title                                                       |
| description    | description, then the incident's link, service and status                   |
| urgency, criticality | urgency: high → high, low → medium                                     |
| status         | status: triggered → open, acknowledged → investigating, resolved → resolved   |
| customer       | the service's name                                                           |
| tags           | `source:pagerduty`, `service:<name>`, `urgency:<level>`, `pagerduty-id:<id>`  |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from alertbridge.events import Event
from alertbridge.targets.base import Outcome, OutgoingRequest, Sending, Target

URGENCY = {"high": "high", "low": "medium"}
STATUS = {"triggered": "open", "acknowledged": "investigating", "resolved": "resolved"}


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = "[PagerDuty]"


ACTIONS: dict[str, dict[str, Any]] = {
    "notify": {
        "key": "{{ event.identifiers.pagerduty_incident_id or (event.subject.id if event.subject else event.id) }}",
        "body": "{{ event.description or '' }}",
        "link": "{{ event.url or '' }}",
    }
}


def prefill(event: Event | None, prefix: str) -> dict[str, Any]:
    """The new-incident form's values, as seed 001 maps a PagerDuty incident."""
    if event is None:
        return {}
    service = event.service.name if event.service and event.service.name else None
    urgency = URGENCY.get((event.urgency or "").lower(), "medium")
    incident_id = event.identifiers.get("pagerduty_incident_id") or (event.subject.id if event.subject else None)
    details = [event.description or ""]
    if event.url:
        details.append(f"PagerDuty incident: {event.url}")
    if service:
        details.append(f"Service: {service}")
    if event.status:
        details.append(f"PagerDuty status: {event.status}")
    tags = ["source:pagerduty"]
    if service:
        tags.append(f"service:{service}")
    tags.append(f"urgency:{event.urgency or 'unknown'}")
    if incident_id:
        tags.append(f"pagerduty-id:{incident_id}")
    return {
        "title": f"{prefix} {event.title or event.kind}".strip(),
        "description": "\n\n".join(d for d in details if d),
        "urgency": urgency,
        "criticality": urgency,
        "status": STATUS.get((event.status or "").lower(), "open"),
        "customer": service,
        "tags": tags,
    }


async def apply(store: Any, settings: Settings, action: str, fields: Mapping[str, Any], sending: Sending) -> Outcome:
    if action != "notify":
        return Outcome("permanent", f"unknown action {action!r}")
    event = sending.event
    org = event.org if event else "default"
    form = prefill(event, settings.prefix)
    key = str(fields.get("key") or (event.id if event else sending.delivery_id))
    note = {
        "title": str(fields.get("title") or form.get("title") or "Notification"),
        "body": fields.get("body") or None,
        "link": fields.get("link") or None,
        "data": {"prefill": form, "source": event.source if event else None, "kind": event.kind if event else None},
    }
    users = await store.notify_all(org, key, note, event.id if event else None, sending.now)
    updated = await store.update_incident(org, key, {"status": form["status"]}, sending.now) if form else False
    message = f"notified {users} user(s)" + ("; the incident was updated" if updated else "")
    return Outcome("success", message, result={"key": key, "users": users})


def _no_http(settings: Any, action: str, fields: Mapping[str, Any], sending: Sending) -> OutgoingRequest:
    raise RuntimeError("the inbox is local: it has no HTTP request")


def _classify(response: Any, settings: Any, fields: Mapping[str, Any], sending: Sending) -> Outcome:
    raise RuntimeError("the inbox is local: it has no HTTP answer")


def _order_key(settings: Settings, action: str, fields: Mapping[str, Any]) -> str | None:
    return f"inbox:{fields['key']}" if fields.get("key") else None


TARGET = Target(
    name="inbox",
    settings=Settings,
    actions=ACTIONS,
    request=_no_http,
    classify=_classify,
    order_key=_order_key,
    local=apply,
    waits_for_links=True,
)
