"""The generic JSON source through the real server: `each` (one event per array element) and
timestamped signatures (Slack-style timestamp header, Stripe-style `t=…,v1=…`).

Signatures are made by Slack's own SDK and by tests/signing.py (written from Stripe's docs), never by
the verifier under test. The server's clock is the real one, so a stale request is one signed with
an old timestamp.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from slack_sdk.signature import SignatureVerifier

from .conftest import Server
from .signing import stripe_signature

SLACK_STYLE = "slack-style-signing-secret"
STRIPE_STYLE = "whsec_stripe_style_secret"
STRIPE_OLD = "whsec_the_secret_being_rolled"

CONFIG = """
endpoints:
  - name: am
    source: generic
    path: /webhooks/am
    token: ${AM_TOKEN}
    each: alerts
    fields:
      kind: "join('.', ['alert', status])"
      delivery_key: "join(':', [fingerprint, status])"
      title: labels.alertname
      description: annotations.summary
      severity: labels.severity
      status: status
      occurred_at: startsAt
      dedup_key: fingerprint
      url: payload().externalURL
      service: labels.service
      identifiers:
        receiver: payload().receiver
  - name: events
    source: generic
    path: /webhooks/events
    token: ${AM_TOKEN}
    each: "data.events[]"
    fields:
      kind: "'datadog.event'"
      title: title
      priority: priority
      tags: tags
      service: payload().data.source
      note: abs(title)                         # a number function given a string: the field stays empty
  - name: slackish
    source: generic
    path: /webhooks/slackish
    hmac:
      secret: ${SLACK_STYLE}
      header: X-Slack-Signature
      prefix: "v0="
      timestamp_header: X-Slack-Request-Timestamp
      signed: "v0:{timestamp}:{body}"
    fields:
      title: text
  - name: stripeish
    source: generic
    path: /webhooks/stripeish
    hmac:
      secret:
        - ${STRIPE_STYLE}
        - ${STRIPE_OLD}
      header: Stripe-Signature
      timestamp_key: t
      signature_key: v1
      tolerance: 1m
    fields:
      kind: type
      delivery_key: id
"""

ENV = {"AM_TOKEN": "am-token", "SLACK_STYLE": SLACK_STYLE, "STRIPE_STYLE": STRIPE_STYLE, "STRIPE_OLD": STRIPE_OLD}
TOKEN = {"x-webhook-token": "am-token"}


def alertmanager(*alerts: dict[str, Any]) -> dict[str, Any]:
    """A webhook as Alertmanager's webhook_config sends it (version 4), with `alerts` as given."""
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HighLatency"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "alertbridge",
        "groupLabels": {"alertname": "HighLatency"},
        "commonLabels": {"alertname": "HighLatency"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": list(alerts),
    }


def alert(fingerprint: str, status: str = "firing", service: str = "checkout") -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "HighLatency", "severity": "critical", "service": service},
        "annotations": {"summary": f"p99 over 2 s on {service}"},
        "startsAt": "2026-12-04T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example:9090/graph",
        "fingerprint": fingerprint,
    }


@pytest.fixture
def server(server_factory: Callable[..., Server]) -> Server:
    return server_factory(CONFIG, ENV)


def stored(server: Server, endpoint: str) -> list[dict[str, Any]]:
    return sorted(
        (e["event"] for e in server.events() if e["event"]["endpoint"] == endpoint), key=lambda e: e["delivery_key"]
    )


def test_each_alertmanager_alert_is_an_event_with_fields_from_the_alert_and_the_payload(server: Server) -> None:
    body = alertmanager(alert("a1"), alert("b2", "resolved", service="payments"))
    answer = server.post("/webhooks/am", body, headers=TOKEN)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["events"]) == 2 and answer.json()["duplicate"] is False
    first, second = stored(server, "am")
    assert (first["kind"], first["title"], first["status"], first["severity"]) == (
        "alert.firing",
        "HighLatency",
        "firing",
        "critical",
    )
    assert (second["kind"], second["status"], second["service"]) == ("alert.resolved", "resolved", {"name": "payments"})
    assert first["description"] == "p99 over 2 s on checkout" and first["occurred_at"] == "2026-12-04T10:00:00Z"
    # payload() reaches the whole body from each element
    assert first["url"] == second["url"] == "http://alertmanager.example:9093"
    assert first["identifiers"] == {"receiver": "alertbridge", "service": "checkout"}
    assert (first["delivery_key"], second["delivery_key"]) == ("a1:firing", "b2:resolved")
    assert first["raw"] == alert("a1"), "an element's event keeps the element, not the whole body"


def test_redelivery_of_the_same_alerts_adds_nothing_and_a_new_state_does(server: Server) -> None:
    body = alertmanager(alert("a1"), alert("b2"))
    first = server.post("/webhooks/am", body, headers=TOKEN).json()
    again = server.post("/webhooks/am", body, headers=TOKEN).json()
    assert again == {"ok": True, "events": first["events"], "duplicate": True}
    assert len(stored(server, "am")) == 2
    # Alertmanager's next notification for the group: a1 resolved (a new state), b2 still firing (the same).
    later = server.post("/webhooks/am", alertmanager(alert("a1", "resolved"), alert("b2")), headers=TOKEN).json()
    assert later["duplicate"] is False and later["events"][1] == first["events"][1]
    assert [e["delivery_key"] for e in stored(server, "am")] == ["a1:firing", "a1:resolved", "b2:firing"]


def test_elements_that_share_a_key_are_told_apart_by_their_index(server: Server) -> None:
    """Two elements whose `delivery_key` finds the same value are still two events, each keyed the
    same way again on a redelivery."""
    body = alertmanager(alert("a1", service="checkout"), alert("a1", service="payments"), alert("c3"))
    first = server.post("/webhooks/am", body, headers=TOKEN).json()
    assert len(first["events"]) == 3
    assert [e["delivery_key"] for e in stored(server, "am")] == ["a1:firing#0", "a1:firing#1", "c3:firing"]
    assert server.post("/webhooks/am", body, headers=TOKEN).json() == {**first, "duplicate": True}


def test_each_over_a_nested_array_keys_elements_by_body_and_index(server: Server) -> None:
    body = {
        "data": {
            "source": "datadog",
            "events": [
                [{"title": "Deploy started", "priority": "normal", "tags": ["env:prod", "service:web"]}],
                [{"title": "Deploy started", "priority": "normal", "tags": ["env:prod", "service:web"]}],
                [{"title": "[Triggered] Memory", "priority": "normal", "tags": "env:prod"}],
            ],
        }
    }
    raw = json.dumps(body).encode()
    answer = server.post("/webhooks/events", content=raw, headers=TOKEN)
    assert answer.status_code == 200 and len(answer.json()["events"]) == 3
    events = stored(server, "events")
    # Two identical elements are still two events: no key of their own, so body digest + index.
    keys = [e["delivery_key"] for e in events]
    assert len(set(keys)) == 3 and all(k.startswith("sha256:") and k[-2:] in ("#0", "#1", "#2") for k in keys)
    by_index = {e["delivery_key"][-1]: e for e in events}
    assert by_index["2"]["title"] == "[Triggered] Memory" and by_index["2"]["tags"] == ["env:prod"]
    assert by_index["0"]["tags"] == ["env:prod", "service:web"] and by_index["0"]["service"] == {"name": "datadog"}
    assert all(e["note"] is None for e in events), "a function that cannot read a value leaves the field empty"
    again = server.post("/webhooks/events", content=raw, headers=TOKEN).json()
    assert again["duplicate"] is True and again["events"] == answer.json()["events"]
    assert len(stored(server, "events")) == 3


def test_each_that_finds_no_array_is_refused_and_an_empty_one_stores_nothing(server: Server) -> None:
    for body, found in (({"alerts": "firing"}, "found a string"), ({"version": "4"}, "found nothing")):
        answer = server.post("/webhooks/am", body, headers=TOKEN)
        assert answer.status_code == 400
        assert answer.json()["error"] == f"`each` (alerts) should find an array in the body, and {found}"
    empty = server.post("/webhooks/am", alertmanager(), headers=TOKEN)
    assert empty.status_code == 200 and empty.json() == {"ok": True, "events": [], "duplicate": False}
    assert server.events() == []
    assert server.metric("alertbridge_requests_refused_total", reason="bad_payload") == 2


def test_check_refuses_an_each_or_a_function_that_cannot_run(server_factory: Callable[..., Server]) -> None:
    config = """
endpoints:
  - name: grafana
    source: generic
    path: /webhooks/grafana
    token: t
    each: "alerts[?status=='firing'"
    fields:
      title: labels.alertname
      url: "rootpayload().externalURL"
"""
    server = server_factory(config, start=False)
    result = server.cli("check", "--config", str(server.config), check=False)
    assert result.returncode == 1
    assert "alertbridge.yaml:7: endpoints[0].each:" in result.stderr
    assert "is not a JMESPath expression" in result.stderr
    assert "alertbridge.yaml:10: endpoints[0].fields.url:" in result.stderr
    assert "calls rootpayload(), which JMESPath does not have" in result.stderr


def slack_style(body: bytes, *, age: float = 0, secret: str = SLACK_STYLE) -> dict[str, str]:
    timestamp = str(int(time.time() - age))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return {"x-slack-request-timestamp": timestamp, "x-slack-signature": signature}


def test_a_slack_style_timestamped_signature(server: Server) -> None:
    body = b'{"text": "disk full on db-1"}'
    assert server.post("/webhooks/slackish", content=body, headers=slack_style(body)).status_code == 200
    assert [e["event"]["title"] for e in server.events()] == ["disk full on db-1"]
    # A sender counting milliseconds is read as such: fresh, not 50,000 years ahead.
    millis = b'{"text": "in milliseconds"}'
    stamp = str(int(time.time() * 1000))
    signature = SignatureVerifier(SLACK_STYLE).generate_signature(timestamp=stamp, body=millis)
    headers = {"x-slack-request-timestamp": stamp, "x-slack-signature": signature}
    assert server.post("/webhooks/slackish", content=millis, headers=headers).status_code == 200

    other = b'{"text": "something else"}'
    refusals = {
        "wrong secret": (slack_style(other, secret="another"), 403, "the signature does not match the body"),
        "stale": (slack_style(other, age=400), 403, "s old, over the 300 s tolerance"),
        "future": (slack_style(other, age=-400), 403, "s in the future, over the 300 s tolerance"),
        "no timestamp": (
            {"x-slack-signature": slack_style(other)["x-slack-signature"]},
            401,
            "X-Slack-Request-Timestamp is required",
        ),
    }
    for name, (headers, status, message) in refusals.items():
        answer = server.post("/webhooks/slackish", content=other, headers=headers)
        assert answer.status_code == status, name
        assert message in answer.json()["error"], (name, answer.text)
        assert SLACK_STYLE not in answer.text
    # A signature made for one timestamp does not pass with another (the timestamp is signed).
    signed = slack_style(body)
    moved = {**signed, "x-slack-request-timestamp": str(int(signed["x-slack-request-timestamp"]) - 1)}
    assert server.post("/webhooks/slackish", content=body, headers=moved).status_code == 403
    assert len(server.events()) == 2
    assert server.metric("alertbridge_requests_refused_total", reason="stale_timestamp") == 1
    assert server.metric("alertbridge_requests_refused_total", reason="future_timestamp") == 1


def test_a_stripe_style_signature_header_with_its_tolerance(server: Server) -> None:
    body = json.dumps({"id": "evt_1", "type": "invoice.paid"}).encode()
    now = int(time.time())
    ok = server.post(
        "/webhooks/stripeish", content=body, headers={"stripe-signature": stripe_signature(STRIPE_STYLE, body, now)}
    )
    assert ok.status_code == 200, ok.text
    # While a secret is rolled the sender signs with both; either one we hold is enough.
    rolled = stripe_signature("whsec_not_ours", body, now, STRIPE_OLD)
    assert server.post("/webhooks/stripeish", content=body, headers={"stripe-signature": rolled}).json()["duplicate"]
    assert [(e["event"]["kind"], e["event"]["delivery_key"]) for e in server.events()] == [("invoice.paid", "evt_1")]

    other = json.dumps({"id": "evt_2", "type": "invoice.paid"}).encode()
    cases = {
        "wrong": (stripe_signature("whsec_not_ours", other, now), 403, "the signature does not match the body"),
        "90 s old, tolerance 1m": (stripe_signature(STRIPE_STYLE, other, now - 90), 403, "over the 60 s tolerance"),
        "no t=": (stripe_signature(STRIPE_STYLE, other, now).split(",", 1)[1], 401, "has no t= timestamp"),
        "no v1=": (f"t={now},v0=abc", 401, "has no v1= signature"),
    }
    for name, (header, status, message) in cases.items():
        answer = server.post("/webhooks/stripeish", content=other, headers={"stripe-signature": header})
        assert (answer.status_code, message in answer.json()["error"]) == (status, True), (name, answer.text)
    assert len(server.events()) == 1


def test_a_signed_string_without_the_timestamp_is_a_check_error(server_factory: Callable[..., Server]) -> None:
    config = """
endpoints:
  - name: hooks
    source: generic
    path: /webhooks/hooks
    hmac:
      secret: s
      timestamp_header: X-Timestamp
      signed: "{body}"
"""
    server = server_factory(config, start=False)
    result = server.cli("check", "--config", str(server.config), check=False)
    assert result.returncode == 1
    assert "endpoints[0].hmac" in result.stderr and "put {timestamp} in `signed`" in result.stderr
