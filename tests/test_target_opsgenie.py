"""Opsgenie Alert API target, unit: the requests it builds and how it reads Opsgenie's answers.

Bodies are checked against Opsgenie's Swagger description (shared/specs/opsgenie); answers are the
documented ones (wire-formats.md §4.2: the 202 `{result, took, requestId}`, the request status,
the error body `{message, code, took, requestId}`).
"""

from __future__ import annotations

from typing import Any

import pytest

from alertbridge.targets.opsgenie import TARGET, MissingField, Settings

from .answers import answer, sending
from .fakes.opsgenie import _validator

SETTINGS = Settings.model_validate({"api_key": "eb243592-faa2-4ba2-a551q-1afdf565c889"})
AUTH = {"Authorization": "GenieKey eb243592-faa2-4ba2-a551q-1afdf565c889"}
BASE = "https://api.opsgenie.com"
ACCEPTED = {"result": "Request will be processed", "took": 0.302, "requestId": "43a29c5c-3dbf-4fa4-9c26-f4f71023e120"}
PAYLOADS = {
    "acknowledge": "AcknowledgeAlertPayload",
    "unacknowledge": "UnAcknowledgeAlertPayload",
    "close": "CloseAlertPayload",
    "note": "AddNoteToAlertPayload",
}


def valid(definition: str, body: Any) -> None:
    errors = [e.message for e in _validator(definition).iter_errors(body)]
    assert not errors, errors


def test_create() -> None:
    fields = {
        "message": "An example alert message",
        "alias": "Life is too short for no alias",
        "description": "Every alert needs a description",
        "priority": "p1",
        "tags": ["OverwriteQuietHours", "Critical"],
        "details": {"key1": "value1", "key2": 2},
        "entity": "An example entity",
        "note": "Alert created",
    }
    sent = TARGET.request(SETTINGS, "create", fields, sending("create"))
    assert (sent.method, sent.url, dict(sent.headers)) == ("POST", f"{BASE}/v2/alerts", AUTH)
    valid("CreateAlertPayload", sent.json)
    assert sent.json == {
        **fields,
        "priority": "P1",
        "details": {"key1": "value1", "key2": "2"},  # Opsgenie's details are strings
        "user": "alertbridge",
        "source": "alertbridge",
    }


def test_create_is_held_to_the_documented_limits() -> None:
    fields = {"message": "m" * 200, "alias": "a" * 600, "description": "d" * 16000, "priority": "urgent"}
    fields |= {"tags": [f"t{n}" + "x" * 60 for n in range(25)]}
    body = TARGET.request(SETTINGS, "create", fields, sending("create")).json
    valid("CreateAlertPayload", body)
    assert (len(body["message"]), len(body["alias"]), len(body["description"])) == (130, 512, 15000)
    assert "priority" not in body  # not P1 to P5: Opsgenie's default P3
    assert len(body["tags"]) == 20 and all(len(t) == 50 for t in body["tags"])
    with pytest.raises(MissingField, match="message"):
        TARGET.request(SETTINGS, "create", {"message": "  "}, sending("create"))


@pytest.mark.parametrize("action", ["acknowledge", "unacknowledge", "close"])
def test_changes_name_the_alert_by_id_or_alias(action: str) -> None:
    by_id = TARGET.request(SETTINGS, action, {"alert_id": "ec03dad6-62c8-4c94", "note": "n"}, sending(action))
    assert (by_id.method, by_id.url, dict(by_id.headers)) == (
        "POST",
        f"{BASE}/v2/alerts/ec03dad6-62c8-4c94/{action}?identifierType=id",
        AUTH,
    )
    valid(PAYLOADS[action], by_id.json)
    assert by_id.json == {"user": "alertbridge", "source": "alertbridge", "note": "n"}
    by_alias = TARGET.request(SETTINGS, action, {"alias": "disk/full ?"}, sending(action))
    assert by_alias.url == f"{BASE}/v2/alerts/disk%2Ffull%20%3F/{action}?identifierType=alias"
    assert by_alias.json == {"user": "alertbridge", "source": "alertbridge"}


def test_note() -> None:
    own = Settings.model_validate({"api_key": "k", "url": "https://api.eu.opsgenie.com/", "user": "bridge"})
    sent = TARGET.request(own, "note", {"alert_id": "052652ac", "note": " note to test alert "}, sending("note"))
    assert (sent.method, sent.url) == ("POST", "https://api.eu.opsgenie.com/v2/alerts/052652ac/notes?identifierType=id")
    valid("AddNoteToAlertPayload", sent.json)
    assert sent.json == {"note": "note to test alert", "user": "bridge", "source": "alertbridge"}
    with pytest.raises(MissingField, match="note"):
        TARGET.request(SETTINGS, "note", {"alert_id": "052652ac", "note": ""}, sending("note"))


def test_confirm_asks_for_the_request_status() -> None:
    sent = TARGET.request(SETTINGS, "confirm", {"request_id": ACCEPTED["requestId"]}, sending("confirm"))
    assert (sent.method, sent.url, dict(sent.headers), sent.json) == (
        "GET",
        f"{BASE}/v2/alerts/requests/43a29c5c-3dbf-4fa4-9c26-f4f71023e120",
        AUTH,
        None,
    )


def test_what_cannot_be_built_raises() -> None:
    with pytest.raises(MissingField, match="alert_id or alias"):
        TARGET.request(SETTINGS, "close", {}, sending("close"))
    with pytest.raises(MissingField, match="request_id"):
        TARGET.request(SETTINGS, "confirm", {}, sending("confirm"))
    with pytest.raises(MissingField, match="unknown action"):
        TARGET.request(SETTINGS, "snooze", {"alert_id": "a"}, sending("snooze"))


def test_202_create_asks_for_a_confirm_and_links_the_alias() -> None:
    fields = {"message": "m", "alias": "alert-alias"}
    outcome = TARGET.classify(answer(202, ACCEPTED), SETTINGS, fields, sending("create", target="og"))
    assert outcome.kind == "success"
    assert outcome.message == "HTTP 202: Request will be processed"
    assert outcome.result == {"request_id": ACCEPTED["requestId"], "alias": "alert-alias"}
    assert [(f.target, f.action, f.fields) for f in outcome.follow_ups] == [
        ("og", "confirm", {"request_id": ACCEPTED["requestId"], "alias": "alert-alias"})
    ]
    assert outcome.created == (("opsgenie", "alert_alias", "alert-alias"),)


def test_202_create_without_an_alias_links_nothing() -> None:
    outcome = TARGET.classify(answer(202, ACCEPTED), SETTINGS, {"message": "m"}, sending("create"))
    assert (outcome.kind, outcome.follow_ups, outcome.created) == ("success", (), ())
    assert outcome.result == {"request_id": ACCEPTED["requestId"]}


@pytest.mark.parametrize("action", ["acknowledge", "unacknowledge", "note", "close"])
def test_202_other_writes_are_done(action: str) -> None:
    outcome = TARGET.classify(answer(202, ACCEPTED), SETTINGS, {"alias": "a"}, sending(action))
    assert (outcome.kind, outcome.result, outcome.follow_ups) == ("success", {"request_id": ACCEPTED["requestId"]}, ())


def test_confirm_of_a_processed_request_links_the_alert() -> None:
    status = {
        "data": {
            "success": True,
            "action": "Create",
            "processedAt": "2017-05-24T14:24:20.844Z",
            "integrationId": "c9cec2cb-e782-4ebb-bc1d-1b2fa703cf03",
            "isSuccess": True,
            "status": "Created alert",
            "alertId": "8743a1b2-11da-480e-8493-744660987bef",
            "alias": "alert-alias",
        },
        "took": 0.022,
        "requestId": "ec7e1d8e-1c75-442e-a271-731070a7fa4d",
    }
    outcome = TARGET.classify(answer(200, status), SETTINGS, {}, sending("confirm"))
    assert (outcome.kind, outcome.message) == ("success", "Created alert")
    assert outcome.result == {"alert_id": "8743a1b2-11da-480e-8493-744660987bef"}
    assert outcome.created == (("opsgenie", "alert", "8743a1b2-11da-480e-8493-744660987bef"),)


def test_confirm_of_a_refused_request_is_permanent() -> None:
    status = {
        "data": {"success": False, "action": "Acknowledge", "processedAt": "2017-05-24T14:24:20.844Z"}
        | {"isSuccess": False, "status": "Alert does not exist", "alertId": "", "alias": ""},
        "took": 0.022,
        "requestId": "ec7e1d8e-1c75-442e-a271-731070a7fa4d",
    }
    outcome = TARGET.classify(answer(200, status), SETTINGS, {}, sending("confirm"))
    assert (outcome.kind, outcome.message) == ("permanent", "Opsgenie refused the request: Alert does not exist")


def test_confirm_before_opsgenie_processed_the_request_asks_again() -> None:
    not_yet = {"message": "Entity cannot be found for the given identifier", "took": 0.002, "requestId": "r"}
    outcome = TARGET.classify(answer(404, not_yet), SETTINGS, {}, sending("confirm"))
    assert (outcome.kind, outcome.retry_after) == ("retry", 0.5)


# The messages are the Swagger description's words for each answer (`responses` in swagger.json).
@pytest.mark.parametrize(
    ("status", "message"),
    [
        (400, "Invalid JSON body"),
        (401, "apiKey is invalid or integration is disabled"),
        (402, "apiKey is valid but the account cannot do this action because of subscription plan"),
        (403, "apiKey is valid but the apiKey cannot do this operation because of permissions"),
        (404, "Entity cannot be found for the given identifier"),
        (422, "Semantic errors in request body"),
    ],
)
def test_refusals_are_permanent_with_opsgenies_message(status: int, message: str) -> None:
    error = {"message": message, "took": 0.001, "requestId": "ab5a8a40-2b2d-4e8a-a3c8-58fb5ac2a1f5"}
    outcome = TARGET.classify(answer(status, error), SETTINGS, {"alias": "a"}, sending("close"))
    assert (outcome.kind, outcome.message) == ("permanent", f"HTTP {status}: {message}")


@pytest.mark.parametrize(("headers", "wait"), [({}, None), ({"Retry-After": "5"}, 5.0)])
def test_429_is_retried(headers: dict[str, str], wait: float | None) -> None:
    throttled = {"message": "Throttling", "took": 0.0, "requestId": "r"}
    headers |= {"X-RateLimit-State": "THROTTLED", "X-RateLimit-Period-In-Sec": "60"}
    outcome = TARGET.classify(answer(429, throttled, headers), SETTINGS, {"alias": "a"}, sending("create"))
    assert (outcome.kind, outcome.retry_after) == ("retry", wait)


@pytest.mark.parametrize("status", [408, 500, 503])
def test_timeouts_and_server_errors_are_retried(status: int) -> None:
    assert TARGET.classify(answer(status, b""), SETTINGS, {"alias": "a"}, sending("note")).kind == "retry"
