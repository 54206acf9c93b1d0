"""PagerDuty REST API v2 target, unit: the requests it builds and how it reads PagerDuty's answers.

Requests are checked against the REST API's OpenAPI description (shared/specs); successes are the
description's own example answers, errors the documented `{"error": {message, code, errors}}` bodies
(wire-formats.md §3.6).
"""

from __future__ import annotations

from typing import Any

import pytest

from alertbridge.targets.pagerduty_rest import TARGET, MissingField, Settings

from .answers import answer, pagerduty_example, sending
from .fakes.pagerduty import _spec, request_validator

SPEC = "rest-openapiv3.json"
SETTINGS = Settings.model_validate({"token": "y_NbAkKc66ryYTWUXYEu", "from_email": "alertbridge@example.com"})
HEADERS = {
    "Authorization": "Token token=y_NbAkKc66ryYTWUXYEu",
    "Accept": "application/vnd.pagerduty+json;version=2",
    "Content-Type": "application/json",
    "From": "alertbridge@example.com",
}


def valid(path: str, method: str, body: Any) -> None:
    validator = request_validator(SPEC, path, method)
    if path == "/incidents":
        # The OpenAPI document types `body.details` as an object; its own example and PagerDuty's API
        # reference send a string, which the real API takes (as tests/fakes/pagerduty_rest.py allows).
        incident = validator.schema["properties"]["incident"]["properties"]
        incident["body"]["properties"]["details"] = {"type": ["string", "object"]}
    errors = [e.message for e in validator.iter_errors(body)]
    assert not errors, errors


def test_create_is_the_documented_incident() -> None:
    """The OpenAPI description's own example request, built from fields (all but `incident_type`,
    which the target does not send)."""
    documented = next(
        iter(
            _spec(SPEC)["paths"]["/incidents"]["post"]["requestBody"]["content"]["application/json"][
                "examples"
            ].values()
        )
    )["value"]
    example = documented["incident"]
    fields = {
        "title": example["title"],
        "service_id": example["service"]["id"],
        "priority_id": example["priority"]["id"],
        "urgency": example["urgency"],
        "incident_key": example["incident_key"],
        "details": example["body"]["details"],
        "escalation_policy_id": example["escalation_policy"]["id"],
    }
    sent = TARGET.request(SETTINGS, "create", fields, sending("create"))
    assert (sent.method, sent.url, dict(sent.headers)) == ("POST", "https://api.pagerduty.com/incidents", HEADERS)
    valid("/incidents", "post", sent.json)
    assert sent.json == {"incident": {k: v for k, v in example.items() if k != "incident_type"}}


def test_create_keeps_to_what_pagerduty_takes() -> None:
    sent = TARGET.request(
        SETTINGS, "create", {"title": "t" * 2000, "service_id": "S", "urgency": "medium"}, sending("")
    )
    valid("/incidents", "post", sent.json)
    assert len(sent.json["incident"]["title"]) == 1024
    assert "urgency" not in sent.json["incident"]  # only high or low exist
    with pytest.raises(MissingField, match="service_id"):
        TARGET.request(SETTINGS, "create", {"title": "t"}, sending("create"))


def test_without_from_email_no_from_header_is_sent() -> None:
    bare = Settings.model_validate({"token": "t", "url": "https://api.eu.pagerduty.com/"})
    sent = TARGET.request(bare, "acknowledge", {"incident_id": "PT4KHLK"}, sending("acknowledge"))
    assert "From" not in sent.headers
    assert sent.url == "https://api.eu.pagerduty.com/incidents/PT4KHLK"


def test_note() -> None:
    fields = {"incident_id": "PT4KHLK", "content": "Firefighters are on the scene."}
    sent = TARGET.request(SETTINGS, "note", fields, sending("note"))
    assert (sent.method, sent.url, dict(sent.headers)) == (
        "POST",
        "https://api.pagerduty.com/incidents/PT4KHLK/notes",
        HEADERS,
    )
    valid("/incidents/{id}/notes", "post", sent.json)
    assert sent.json == {"note": {"content": "Firefighters are on the scene."}}
    with pytest.raises(MissingField, match="content"):
        TARGET.request(SETTINGS, "note", {"incident_id": "PT4KHLK"}, sending("note"))


@pytest.mark.parametrize(
    ("action", "fields", "update"),
    [
        ("acknowledge", {}, {"status": "acknowledged"}),
        ("resolve", {"resolution": "Disk cleaned up."}, {"status": "resolved", "resolution": "Disk cleaned up."}),
        (
            "reassign",
            {"assignee_ids": "PXPGF42, PAM4FGS"},
            {
                "assignments": [
                    {"assignee": {"id": "PXPGF42", "type": "user_reference"}},
                    {"assignee": {"id": "PAM4FGS", "type": "user_reference"}},
                ]
            },
        ),
        (
            "reassign",
            {"escalation_policy_id": "PT20YPA"},
            {"escalation_policy": {"id": "PT20YPA", "type": "escalation_policy_reference"}},
        ),
    ],
)
def test_updates(action: str, fields: dict[str, Any], update: dict[str, Any]) -> None:
    sent = TARGET.request(SETTINGS, action, {"incident_id": "PT4KHLK", **fields}, sending(action))
    assert (sent.method, sent.url, dict(sent.headers)) == (
        "PUT",
        "https://api.pagerduty.com/incidents/PT4KHLK",
        HEADERS,
    )
    valid("/incidents/{id}", "put", sent.json)
    assert sent.json == {"incident": {"type": "incident_reference", **update}}


def test_an_incident_id_cannot_leave_its_path() -> None:
    sent = TARGET.request(SETTINGS, "acknowledge", {"incident_id": "../users/P1?x"}, sending("acknowledge"))
    assert sent.url == "https://api.pagerduty.com/incidents/..%2Fusers%2FP1%3Fx"


def test_what_cannot_be_built_raises() -> None:
    with pytest.raises(MissingField, match="incident_id"):
        TARGET.request(SETTINGS, "resolve", {"incident_id": ""}, sending("resolve"))
    with pytest.raises(MissingField, match="assignee_ids or escalation_policy_id"):
        TARGET.request(SETTINGS, "reassign", {"incident_id": "PT4KHLK"}, sending("reassign"))
    with pytest.raises(MissingField, match="unknown action"):
        TARGET.request(SETTINGS, "snooze", {"incident_id": "PT4KHLK"}, sending("snooze"))


def test_201_create_keeps_and_links_the_new_incident() -> None:
    created = pagerduty_example(SPEC, "/incidents", "post", "201")
    outcome = TARGET.classify(answer(201, created), SETTINGS, {}, sending("create"))
    assert outcome.kind == "success"
    assert outcome.result == {"incident_id": "PT4KHLK"}
    assert outcome.created == (("pagerduty", "incident", "PT4KHLK"),)
    assert outcome.actor is None  # a create is not echoed by its actor


def test_200_status_change_learns_who_pagerduty_says_acted() -> None:
    updated = pagerduty_example(SPEC, "/incidents/{id}", "put", "200")
    for action in ("acknowledge", "resolve"):
        outcome = TARGET.classify(answer(200, updated), SETTINGS, {}, sending(action))
        assert (outcome.kind, outcome.result, outcome.created) == ("success", {"incident_id": "PT4KHLK"}, ())
        assert outcome.actor == updated["incident"]["last_status_change_by"]["id"] == "PXPGF42"
    assert TARGET.classify(answer(200, updated), SETTINGS, {}, sending("reassign")).actor is None


def test_200_note_keeps_the_note_and_its_author() -> None:
    note = pagerduty_example(SPEC, "/incidents/{id}/notes", "post", "200")
    outcome = TARGET.classify(answer(200, note), SETTINGS, {}, sending("note"))
    assert (outcome.kind, outcome.result, outcome.actor) == ("success", {"note_id": "PWL7QXS"}, "PXPGF42")


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (
            400,
            {"message": "Invalid Input Provided", "code": 2001, "errors": ["Incident key has already been used"]},
            "HTTP 400: Invalid Input Provided (code 2001) Incident key has already been used",
        ),
        (401, {"message": "Authentication failed", "code": 2006}, "HTTP 401: Authentication failed (code 2006)"),
        (403, {"message": "Access Denied", "code": 2010}, "HTTP 403: Access Denied (code 2010)"),
        (404, {"message": "Not Found", "code": 2100}, "HTTP 404: Not Found (code 2100)"),  # the OpenAPI example
    ],
)
def test_refusals_are_permanent_with_pagerdutys_error(status: int, error: dict[str, Any], words: str) -> None:
    outcome = TARGET.classify(answer(status, {"error": error}), SETTINGS, {}, sending("create"))
    assert outcome.kind == "permanent"
    assert words in outcome.message


RATE_LIMITED = {"error": {"message": "Rate Limit Exceeded", "code": 2020}}


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"ratelimit-limit": "960", "ratelimit-remaining": "0", "ratelimit-reset": "12"}, 12.0),
        ({"Retry-After": "3", "ratelimit-reset": "12"}, 3.0),
        ({}, 60.0),  # "exceptional scenarios … a 429 without the rate limit headers"
        ({"ratelimit-reset": "soon"}, 60.0),
    ],
)
def test_429_waits_for_the_rate_limit_to_reset(headers: dict[str, str], wait: float) -> None:
    outcome = TARGET.classify(answer(429, RATE_LIMITED, headers), SETTINGS, {}, sending("note"))
    assert (outcome.kind, outcome.retry_after) == ("retry", wait)
    assert "Rate Limit Exceeded (code 2020)" in outcome.message


@pytest.mark.parametrize("status", [408, 500, 502, 503])
def test_timeouts_and_server_errors_are_retried(status: int) -> None:
    outcome = TARGET.classify(answer(status, b"<html>Bad Gateway</html>"), SETTINGS, {}, sending("note"))
    assert outcome.kind == "retry"
    assert outcome.message == f"HTTP {status}: <html>Bad Gateway</html>"
