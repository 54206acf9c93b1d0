"""PagerDuty REST API v2: create incidents, add notes, acknowledge, resolve, reassign.

Settings: `token` (an API key, sent as `Authorization: Token token=…`), `from_email` (the `From`
header: a user on the account, required by PagerDuty for every write), `url` (default
`https://api.pagerduty.com`; `https://api.eu.pagerduty.com` for EU accounts). Requests carry
`Accept: application/vnd.pagerduty+json;version=2`.

| action      | request                         | fields (defaults in brackets)                                        |
| ----------- | ------------------------------- | -------------------------------------------------------------------- |
| create      | `POST /incidents`               | service_id (required), title [event.title], urgency [event.urgency], incident_key [event.dedup_key], details [event.description], priority_id, escalation_policy_id |
| note        | `POST /incidents/{id}/notes`    | incident_id [the PagerDuty incident the event is about], content [event.note] |
| acknowledge | `PUT /incidents/{id}`           | incident_id [as above]                                               |
| resolve     | `PUT /incidents/{id}`           | incident_id [as above], resolution                                   |
| reassign    | `PUT /incidents/{id}`           | incident_id [as above], assignee_ids (user ids) or escalation_policy_id |

Answers: 2xx done (a created incident's id is kept on the delivery); 429 retried after
`ratelimit-reset` seconds (or Retry-After); 408 and 5xx retried; other 4xx permanent with
PagerDuty's own error message kept on the attempt. A create whose `incident_key` matches an
open incident is refused by PagerDuty with 400, which makes creates idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, SecretStr

from alertbridge.events import Expected, fingerprint
from alertbridge.targets.base import KeyTest, Outcome, OutgoingRequest, Response, Sending, Target, classify_http

DEFAULT_URL = "https://api.pagerduty.com"
ACCEPT = "application/vnd.pagerduty+json;version=2"
INCIDENT = "{{ event.identifiers.pagerduty_incident_id or (event.subject.id if event.subject else none) }}"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr
    from_email: str | None = None  # required by PagerDuty for account-level API keys
    url: str = DEFAULT_URL


ACTIONS: dict[str, dict[str, Any]] = {
    "create": {
        "title": "{{ event.title or event.kind }}",
        "urgency": "{{ event.urgency }}",
        "incident_key": "{{ event.dedup_key }}",
        "details": "{{ event.description }}",
    },
    "note": {"incident_id": INCIDENT, "content": "{{ event.note }}"},
    "acknowledge": {"incident_id": INCIDENT},
    "resolve": {"incident_id": INCIDENT},
    "reassign": {"incident_id": INCIDENT},
}


class MissingField(ValueError):
    pass


def _need(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    if value in (None, ""):
        raise MissingField(f"the {name} field is empty")
    return str(value)


def request(settings: Settings, action: str, fields: Mapping[str, Any], sending: Sending) -> OutgoingRequest:
    base = settings.url.rstrip("/")
    headers = {
        "Authorization": f"Token token={settings.token.get_secret_value()}",
        "Accept": ACCEPT,
        "Content-Type": "application/json",
    }
    if settings.from_email:
        headers["From"] = settings.from_email
    if action == "create":
        incident: dict[str, Any] = {
            "type": "incident",
            "title": _need(fields, "title")[:1024],
            "service": {"id": _need(fields, "service_id"), "type": "service_reference"},
        }
        if fields.get("urgency") in ("high", "low"):
            incident["urgency"] = fields["urgency"]
        if fields.get("incident_key"):
            incident["incident_key"] = str(fields["incident_key"])
        if fields.get("details"):
            incident["body"] = {"type": "incident_body", "details": str(fields["details"])}
        if fields.get("priority_id"):
            incident["priority"] = {"id": str(fields["priority_id"]), "type": "priority_reference"}
        if fields.get("escalation_policy_id"):
            incident["escalation_policy"] = {
                "id": str(fields["escalation_policy_id"]),
                "type": "escalation_policy_reference",
            }
        return OutgoingRequest("POST", f"{base}/incidents", json={"incident": incident}, headers=headers)

    path = f"{base}/incidents/{quote(_need(fields, 'incident_id'), safe='')}"
    if action == "note":
        return OutgoingRequest(
            "POST", f"{path}/notes", json={"note": {"content": _need(fields, "content")}}, headers=headers
        )
    update: dict[str, Any] = {"type": "incident_reference"}
    if action == "acknowledge":
        update["status"] = "acknowledged"
    elif action == "resolve":
        update["status"] = "resolved"
        if fields.get("resolution"):
            update["resolution"] = str(fields["resolution"])
    elif action == "reassign":
        assignees = fields.get("assignee_ids") or []
        if isinstance(assignees, str):
            assignees = [a.strip() for a in assignees.split(",") if a.strip()]
        if assignees:
            update["assignments"] = [{"assignee": {"id": str(a), "type": "user_reference"}} for a in assignees]
        elif fields.get("escalation_policy_id"):
            update["escalation_policy"] = {
                "id": str(fields["escalation_policy_id"]),
                "type": "escalation_policy_reference",
            }
        else:
            raise MissingField("reassign needs assignee_ids or escalation_policy_id")
    else:
        raise MissingField(f"unknown action {action!r}")
    return OutgoingRequest("PUT", path, json={"incident": update}, headers=headers)


def _error(response: Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        parts = [str(error.get("message") or "")]
        if error.get("code"):
            parts.append(f"(code {error['code']})")
        if isinstance(error.get("errors"), list) and error["errors"]:
            parts.append("; ".join(str(e) for e in error["errors"]))
        return f"HTTP {response.status_code}: " + " ".join(p for p in parts if p)
    return f"HTTP {response.status_code}: {str(body)[:300]}"


def classify(response: Response, settings: Settings, fields: Mapping[str, Any], sending: Sending) -> Outcome:
    if response.is_success:
        try:
            body = response.json()
        except ValueError:
            body = {}
        incident = body.get("incident") if isinstance(body, dict) else None
        note = body.get("note") if isinstance(body, dict) else None
        result = {}
        if isinstance(incident, dict) and incident.get("id"):
            result["incident_id"] = incident["id"]
        if isinstance(note, dict) and note.get("id"):
            result["note_id"] = note["id"]
        made = result.get("incident_id") if sending.action == "create" else None
        created = (("pagerduty", "incident", str(made)),) if made else ()
        return Outcome(
            "success",
            f"HTTP {response.status_code}",
            result=result or None,
            created=created,
            actor=_acted_as(sending.action, incident, note),
        )
    outcome = classify_http(response, _error(response))
    if response.status_code == 429 and outcome.retry_after is None:
        reset = response.headers.get("ratelimit-reset")
        try:
            wait = float(reset) if reset else 60.0
        except ValueError:
            wait = 60.0
        return Outcome("retry", outcome.message, retry_after=wait)
    return outcome


def _acted_as(action: str, incident: Any, note: Any) -> str | None:
    """The id of the user PagerDuty says made our change: the note's `user`, or the incident's
    `last_status_change_by` after a status change. Webhooks name their agent by that id; the `From`
    email we send appears in neither."""
    if action == "note" and isinstance(note, dict):
        who = note.get("user")
    elif action in ("acknowledge", "resolve") and isinstance(incident, dict):
        who = incident.get("last_status_change_by")
    else:
        return None
    return str(who["id"]) if isinstance(who, dict) and who.get("id") else None


CHANGES = {"note": "annotated", "acknowledge": "acknowledged", "resolve": "resolved", "reassign": "reassigned"}


def echo(settings: Settings, action: str, fields: Mapping[str, Any]) -> list[Expected]:
    """A note is known by its text (PagerDuty's `incident.annotated` carries it as `data.content`).
    PagerDuty names the From user as the agent by id and name, never by email, so the actor is not
    known before the send: it is learnt from PagerDuty's answer (`_acted_as`)."""
    if action == "create":
        key = fields.get("incident_key")
        return [Expected("pagerduty", "incident_key", str(key), "created")] if key else []
    change = CHANGES.get(action)
    incident = fields.get("incident_id")
    if not (change and incident):
        return []
    content = fingerprint(str(fields.get("content") or "")) if action == "note" else None
    return [Expected("pagerduty", "incident", str(incident), change, content)]


def order_key(settings: Settings, action: str, fields: Mapping[str, Any]) -> str | None:
    incident = fields.get("incident_id") or fields.get("incident_key")
    return f"incident:{incident}" if incident else None


TARGET = Target(
    name="pagerduty_rest",
    settings=Settings,
    actions=ACTIONS,
    request=request,
    classify=classify,
    order_key=order_key,
    echo=echo,
    required={"create": (("service_id",),), "reassign": (("assignee_ids", "escalation_policy_id"),)},
    needs={
        "create": (("title",), ("service_id",)),
        "note": (("incident_id",), ("content",)),
        "acknowledge": (("incident_id",),),
        "resolve": (("incident_id",),),
        "reassign": (("incident_id",), ("assignee_ids", "escalation_policy_id")),
    },
    default_rate_limit=(900, 60.0),  # PagerDuty allows 960 a minute per API key
    key_test=KeyTest(
        kind="pagerduty",
        label="PagerDuty",
        url_env="PAGERDUTY_API_URL",
        default_url=DEFAULT_URL,
        path="/abilities",
        headers=lambda key: {"Authorization": f"Token token={key}", "Accept": ACCEPT},
    ),
)
