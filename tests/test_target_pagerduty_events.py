"""PagerDuty Events API v2 target, unit: the requests it builds and how it reads PagerDuty's answers.

Requests are checked against the Events API's OpenAPI description (shared/specs) and the documented
example event; answers are the documented ones (wire-formats.md §2.3, the OpenAPI examples).
"""

from __future__ import annotations

from typing import Any

import pytest

from alertbridge.targets.pagerduty_events import TARGET, Settings

from .answers import answer, pagerduty_example, sending
from .fakes.pagerduty import request_validator

SPEC = "events-v2-openapiv3.json"
KEY = "e93facc04764012d7bfb002500d5d1a6"  # the documented example's 32-character integration key
SETTINGS = Settings.model_validate({"routing_key": KEY})
# PagerDuty's documented example trigger, as fields a route would render.
DOC_TRIGGER: dict[str, Any] = {
    "summary": "DISK at 99% on machine prod-datapipe03.example.com",
    "timestamp": "2015-07-17T08:42:58.315+0000",
    "severity": "critical",
    "source": "prod-datapipe03.example.com",
    "component": "mysql",
    "group": "prod-datapipe",
    "class": "disk",
    "custom_details": {"free space": "1%", "ping time": "1500ms", "load avg": 0.75},
    "dedup_key": "srv01/mysql",
    "client": "Sample Monitoring Service",
    "client_url": "https://monitoring.service.com",
    "links": [{"href": "http://pagerduty.example.com", "text": "An example link."}],
    "images": [{"src": "https://chart.googleapis.com/chart", "href": "https://google.com", "alt": "An example link"}],
}


def valid(body: Any) -> None:
    errors = [e.message for e in request_validator(SPEC, "/enqueue", "post").iter_errors(body)]
    assert not errors, errors


def test_trigger_is_the_documented_event() -> None:
    sent = TARGET.request(SETTINGS, "trigger", DOC_TRIGGER, sending("trigger"))
    assert (sent.method, sent.url) == ("POST", "https://events.pagerduty.com/v2/enqueue")
    assert "Authorization" not in sent.headers  # the routing key in the body is the only credential
    valid(sent.json)
    assert sent.json == {
        "payload": {name: DOC_TRIGGER[name] for name in ("summary", "timestamp", "severity", "source", "component")}
        | {name: DOC_TRIGGER[name] for name in ("group", "class", "custom_details")},
        "routing_key": KEY,
        "dedup_key": "srv01/mysql",
        "event_action": "trigger",
        "client": "Sample Monitoring Service",
        "client_url": "https://monitoring.service.com",
        "links": DOC_TRIGGER["links"],
        "images": DOC_TRIGGER["images"],
    }


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_acknowledge_and_resolve_carry_only_the_key(action: str) -> None:
    sent = TARGET.request(SETTINGS, action, {"dedup_key": "srv01/mysql"}, sending(action))
    valid(sent.json)
    assert sent.json == {"routing_key": KEY, "dedup_key": "srv01/mysql", "event_action": action}


def test_eu_accounts_use_their_own_url() -> None:
    eu = Settings.model_validate({"routing_key": KEY, "url": "https://events.eu.pagerduty.com/v2/enqueue"})
    assert TARGET.request(eu, "resolve", {"dedup_key": "k"}, sending("resolve")).url == eu.url


def test_trigger_is_held_to_the_documented_limits() -> None:
    fields = {"summary": "x" * 2000, "severity": "Sev1", "dedup_key": "k" * 300, "source": ""}
    body = TARGET.request(SETTINGS, "trigger", fields, sending("trigger")).json
    valid(body)
    assert len(body["payload"]["summary"]) == 1024
    assert body["payload"]["severity"] == "error"  # not one of the four: PagerDuty would refuse it
    assert body["payload"]["source"] == "alertbridge"  # required by PagerDuty
    assert len(body["dedup_key"]) == 255
    other = TARGET.request(SETTINGS, "trigger", {**fields, "dedup_key": "k" * 299 + "j"}, sending("trigger")).json
    assert other["dedup_key"] != body["dedup_key"]  # two long keys stay two alerts


def test_a_trigger_without_fields_is_still_a_valid_event() -> None:
    body = TARGET.request(SETTINGS, "trigger", {}, sending("trigger")).json
    valid(body)
    assert "dedup_key" not in body  # PagerDuty makes one and answers it


def test_202_is_done_and_the_dedup_key_names_the_incident() -> None:
    documented = pagerduty_example(SPEC, "/enqueue", "post", "202")
    assert documented == {"status": "success", "message": "Event processed", "dedup_key": "srv01/HTTP"}
    outcome = TARGET.classify(answer(202, documented), SETTINGS, {}, sending("trigger"))
    assert outcome.kind == "success"
    assert outcome.result == {"dedup_key": "srv01/HTTP"}
    assert outcome.created == (("pagerduty", "incident_key", "srv01/HTTP"),)


def test_an_acknowledge_creates_nothing() -> None:
    documented = pagerduty_example(SPEC, "/enqueue", "post", "202")
    outcome = TARGET.classify(answer(202, documented), SETTINGS, {}, sending("acknowledge"))
    assert (outcome.kind, outcome.created, outcome.result) == ("success", (), {"dedup_key": "srv01/HTTP"})


def test_400_invalid_event_is_permanent_with_pagerdutys_words() -> None:
    refused = {
        "status": "invalid event",
        "message": "Event object is invalid",
        "errors": ["Service key is the wrong length (should be 32 characters)"],
    }
    outcome = TARGET.classify(answer(400, refused), SETTINGS, {}, sending("trigger"))
    assert outcome.kind == "permanent"
    assert outcome.message == (
        "invalid event: Event object is invalid: Service key is the wrong length (should be 32 characters)"
    )


def test_429_without_retry_after_waits_as_pagerduty_asks() -> None:
    """PagerDuty sends no Retry-After and asks for a backoff: 30 s, its rate-limit page's spacing."""
    outcome = TARGET.classify(answer(429, b"429 - Request Limit Exceeded"), SETTINGS, {}, sending("trigger"))
    assert (outcome.kind, outcome.retry_after) == ("retry", 30.0)


def test_429_with_retry_after_honours_it() -> None:
    outcome = TARGET.classify(answer(429, b"", {"Retry-After": "7"}), SETTINGS, {}, sending("trigger"))
    assert (outcome.kind, outcome.retry_after) == ("retry", 7.0)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried(status: int) -> None:
    error = {"status": "Unrecognized object", "message": "Event object format is unrecognized", "errors": ["x"]}
    outcome = TARGET.classify(answer(status, error), SETTINGS, {}, sending("trigger"))
    assert (outcome.kind, outcome.retry_after) == ("retry", None)


@pytest.mark.parametrize("status", [401, 403, 404, 409, 413])
def test_other_refusals_are_permanent(status: int) -> None:
    assert TARGET.classify(answer(status, b"refused"), SETTINGS, {}, sending("trigger")).kind == "permanent"
