"""Opsgenie Alert API v2: create, acknowledge, unacknowledge, note and close alerts.

Settings: `api_key` (an API integration's key, sent as `Authorization: GenieKey …`), `url`
(`https://api.opsgenie.com`; `https://api.eu.opsgenie.com` for EU accounts; any other base
URL with the same API, such as Opsgenie's successor after April 2027), `user` and `source`
(how alertbridge's own changes appear in Opsgenie, default `alertbridge`).

An alert is named by `alert_id`, or by `alias` (the alias alertbridge gave it when it created
it). Every write is asynchronous in Opsgenie: it answers 202 with a `requestId` and applies
the change a moment later. A create is followed by a `confirm` delivery that asks Opsgenie
(`GET /v2/alerts/requests/{id}`) until the request is processed, and links the new alert's id
to what the event was about; other writes are done at the 202.

| action        | request                                      | fields (defaults in brackets)                  |
| ------------- | -------------------------------------------- | ---------------------------------------------- |
| create        | `POST /v2/alerts`                            | message [event.title], alias [event.dedup_key, else system-id of the subject], description [event.description], priority [event.priority], tags [event.tags], details, entity, note |
| acknowledge   | `POST /v2/alerts/{alert}/acknowledge`        | alert_id or alias [the linked Opsgenie alert], note |
| unacknowledge | `POST /v2/alerts/{alert}/unacknowledge`      | as acknowledge                                 |
| note          | `POST /v2/alerts/{alert}/notes`              | alert_id or alias, note [event.note] (required) |
| close         | `POST /v2/alerts/{alert}/close`              | alert_id or alias, note                        |
| confirm       | `GET /v2/alerts/requests/{request_id}`       | request_id (made by create)                    |

Answers: 2xx done; 429, 408, 5xx retried; other 4xx permanent with Opsgenie's message kept.
Limits applied: message 130 characters, alias 512, description 15,000, note 25,000.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, SecretStr

from alertbridge.events import Expected, fingerprint
from alertbridge.targets.base import (
    FollowUp,
    KeyTest,
    Outcome,
    OutgoingRequest,
    Response,
    Sending,
    Target,
    classify_http,
    error_text,
)

DEFAULT_URL = "https://api.opsgenie.com"
LINKED_ALERT = "{{ event.identifiers.opsgenie_alert_id or links.opsgenie.alert }}"
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
CHANGES = {
    "create": "created",
    "acknowledge": "acknowledged",
    "unacknowledge": "unacknowledged",
    "note": "annotated",
    "close": "resolved",
}


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr
    url: str = DEFAULT_URL
    user: str = "alertbridge"
    source: str = "alertbridge"


ACTIONS: dict[str, dict[str, Any]] = {
    "create": {
        "message": "{{ event.title or event.kind }}",
        "alias": "{{ event.dedup_key or (event.subject.system ~ '-' ~ event.subject.id if event.subject else event.id) }}",
        "description": "{{ event.description }}",
        "priority": "{{ event.priority }}",
        "tags": "{{ event.tags }}",
    },
    "acknowledge": {"alert_id": LINKED_ALERT},
    "unacknowledge": {"alert_id": LINKED_ALERT},
    "note": {"alert_id": LINKED_ALERT, "note": "{{ event.note }}"},
    "close": {"alert_id": LINKED_ALERT},
    "confirm": {},
}


class MissingField(ValueError):
    pass


def _alert(fields: Mapping[str, Any]) -> tuple[str, str]:
    """(identifier, identifierType) of the alert an action is about."""
    if fields.get("alert_id"):
        return str(fields["alert_id"]), "id"
    if fields.get("alias"):
        return str(fields["alias"]), "alias"
    raise MissingField("no alert_id or alias: which Opsgenie alert is this about?")


def request(settings: Settings, action: str, fields: Mapping[str, Any], sending: Sending) -> OutgoingRequest:
    base = settings.url.rstrip("/")
    headers = {"Authorization": f"GenieKey {settings.api_key.get_secret_value()}"}
    who = {"user": str(fields.get("user") or settings.user), "source": str(fields.get("source") or settings.source)}
    if action == "create":
        message = str(fields.get("message") or "").strip()
        if not message:
            raise MissingField("the message field is empty")
        body: dict[str, Any] = {"message": message[:130], **who}
        if fields.get("alias"):
            body["alias"] = str(fields["alias"])[:512]
        if fields.get("description"):
            body["description"] = str(fields["description"])[:15000]
        priority = str(fields.get("priority") or "").upper()
        if priority in PRIORITIES:
            body["priority"] = priority
        tags = fields.get("tags")
        if isinstance(tags, list | tuple) and tags:
            body["tags"] = [str(t)[:50] for t in tags][:20]
        if isinstance(fields.get("details"), dict):
            body["details"] = {str(k): str(v) for k, v in fields["details"].items()}
        for name in ("entity", "note"):
            if fields.get(name):
                body[name] = str(fields[name])
        return OutgoingRequest("POST", f"{base}/v2/alerts", json=body, headers=headers)
    if action == "confirm":
        request_id = fields.get("request_id")
        if not request_id:
            raise MissingField("the request_id field is empty")
        return OutgoingRequest("GET", f"{base}/v2/alerts/requests/{quote(str(request_id), safe='')}", headers=headers)
    identifier, kind = _alert(fields)
    path = f"{base}/v2/alerts/{quote(identifier, safe='')}"
    query = f"?identifierType={kind}"
    if action == "note":
        note = str(fields.get("note") or "").strip()
        if not note:
            raise MissingField("the note field is empty")
        return OutgoingRequest("POST", f"{path}/notes{query}", json={"note": note[:25000], **who}, headers=headers)
    if action in ("acknowledge", "unacknowledge", "close"):
        body = {**who}
        if fields.get("note"):
            body["note"] = str(fields["note"])[:25000]
        return OutgoingRequest("POST", f"{path}/{action}{query}", json=body, headers=headers)
    raise MissingField(f"unknown action {action!r}")


def classify(response: Response, settings: Settings, fields: Mapping[str, Any], sending: Sending) -> Outcome:
    if not response.is_success:
        if response.status_code == 404 and sending.action == "confirm":
            # Opsgenie has not processed the request yet: ask again.
            return Outcome("retry", "Opsgenie is still processing the request", retry_after=0.5)
        return classify_http(response, f"HTTP {response.status_code}: {error_text(response)}")
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    if sending.action == "confirm":  # is the request done, and how did it end?
        data: dict[str, Any] = body["data"] if isinstance(body.get("data"), dict) else {}
        if not data.get("isSuccess", data.get("success")):
            if data.get("status") and "processedAt" in data:
                return Outcome("permanent", f"Opsgenie refused the request: {data['status']}")
            return Outcome("retry", "Opsgenie is still processing the request", retry_after=0.5)
        alert_id = data.get("alertId")
        return Outcome(
            "success",
            str(data.get("status") or "processed"),
            result={"alert_id": alert_id} if alert_id else None,
            created=(("opsgenie", "alert", str(alert_id)),) if alert_id else (),
        )
    request_id = body.get("requestId")
    result = {"request_id": request_id} if request_id else None
    if sending.action == "create" and fields.get("alias"):
        alias = str(fields["alias"])[:512]
        follow = (
            (FollowUp(sending.target, "confirm", {"request_id": request_id, "alias": alias}),) if request_id else ()
        )
        return Outcome(
            "success",
            f"HTTP {response.status_code}: {body.get('result') or 'accepted'}",
            result={**(result or {}), "alias": alias},
            follow_ups=follow,
            created=(("opsgenie", "alert_alias", alias),),
        )
    return Outcome("success", f"HTTP {response.status_code}: {body.get('result') or 'accepted'}", result=result)


def echo(settings: Settings, action: str, fields: Mapping[str, Any]) -> list[Expected]:
    """Opsgenie's webhook names the `user` we sent as `alert.username`, and carries a note's text as
    `alert.note`: a change by another user, or another note, is not ours."""
    change = CHANGES.get(action)
    if change is None:
        return []
    if action == "create":
        return [Expected("opsgenie", "alert_alias", str(fields["alias"])[:512], change)] if fields.get("alias") else []
    user = str(fields.get("user") or settings.user)
    try:
        identifier, kind = _alert(fields)
    except MissingField:
        return []
    content = fingerprint(str(fields.get("note") or "").strip()[:25000]) if action == "note" else None
    return [Expected("opsgenie", "alert" if kind == "id" else "alert_alias", identifier, change, content, user)]


def order_key(settings: Settings, action: str, fields: Mapping[str, Any]) -> str | None:
    if action == "confirm":
        return None
    alert = fields.get("alert_id") or fields.get("alias")
    return f"alert:{alert}" if alert else None


TARGET = Target(
    name="opsgenie",
    settings=Settings,
    actions=ACTIONS,
    request=request,
    classify=classify,
    order_key=order_key,
    echo=echo,
    key_test=KeyTest(
        kind="opsgenie",
        label="Opsgenie",
        url_env="OPSGENIE_API_URL",
        default_url=DEFAULT_URL,
        path="/v2/alerts?limit=1",
        headers=lambda key: {"Authorization": f"GenieKey {key}"},
    ),
    needs={
        "create": (("message",),),
        "confirm": (("request_id",),),
        "acknowledge": (("alert_id", "alias"),),
        "unacknowledge": (("alert_id", "alias"),),
        "note": (("alert_id", "alias"), ("note",)),
        "close": (("alert_id", "alias"),),
    },
)
