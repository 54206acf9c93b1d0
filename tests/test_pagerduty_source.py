"""PagerDuty V3 and V2 webhooks over real HTTP: signatures, rotation, every event type, pings, idempotency."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import Server, wait_until
from .signing import pagerduty_signature

SECRET = "pd-secret-current"
OLD_SECRET = "pd-secret-previous"

CONFIG = """
endpoints:
  - name: pagerduty
    source: pagerduty
    path: /webhooks/pagerduty
    secret: ["${PD_SECRET}", "${PD_OLD_SECRET}"]
  - name: pagerduty-v2
    source: pagerduty
    path: /api/webhooks/pagerduty
    allow_unsigned: true
"""

EVENT_TYPES = [
    "incident.triggered",
    "incident.acknowledged",
    "incident.unacknowledged",
    "incident.resolved",
    "incident.reassigned",
    "incident.escalated",
    "incident.delegated",
    "incident.annotated",
    "incident.priority_updated",
    "incident.reopened",
    "incident.responder.added",
    "incident.responder.replied",
    "incident.status_update_published",
    "incident.conference_bridge.updated",
    "incident.brand_new_type",
]


def incident_data() -> dict[str, Any]:
    return {
        "id": "PGR0VU2",
        "type": "incident",
        "self": "https://api.pagerduty.com/incidents/PGR0VU2",
        "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2",
        "number": 2,
        "status": "triggered",
        "incident_key": "d3640fbd41094207a1c11e58e46b1662",
        "created_at": "2020-04-09T15:16:27Z",
        "title": "A little bump in the road",
        "service": {"id": "PF9KMXH", "type": "service_reference", "summary": "API Service"},
        "assignees": [{"id": "PTUXL6G", "type": "user_reference", "summary": "User 123"}],
        "escalation_policy": {"id": "PUS0KTE", "type": "escalation_policy_reference", "summary": "Default"},
        "teams": [{"id": "PFCVPS0", "type": "team_reference", "summary": "Engineering"}],
        "priority": {"id": "PSO75BM", "type": "priority_reference", "summary": "P1"},
        "urgency": "high",
        "conference_bridge": None,
        "resolve_reason": None,
    }


def v3(event_type: str, event_id: str = "01DVUHO6P4XQDFJ9AHOADT3UQ4", data: dict[str, Any] | None = None) -> bytes:
    if data is None:
        if event_type == "incident.annotated":
            data = {
                "incident": {
                    "id": "PGR0VU2",
                    "type": "incident_reference",
                    "summary": "A little bump",
                    "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2",
                },
                "id": "P2LA89X",
                "content": "I sure am glad we are using PagerDuty!",
                "type": "incident_note",
            }
        elif event_type.startswith("incident.responder") or event_type == "incident.status_update_published":
            data = {
                "incident": {"id": "PGR0VU2", "type": "incident_reference", "summary": "A little bump"},
                "message": "Please help",
                "type": "incident_responder",
            }
        else:
            data = incident_data()
    body = {
        "event": {
            "id": event_id,
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": "2020-10-02T18:45:22.169Z",
            "agent": {"id": "PLH1HKV", "type": "user_reference", "summary": "Tenex Engineer"},
            "client": None,
            "data": data,
        }
    }
    return json.dumps(body).encode()


@pytest.fixture
def server(server_factory: Callable[..., Server]) -> Server:
    return server_factory(CONFIG, {"PD_SECRET": SECRET, "PD_OLD_SECRET": OLD_SECRET})


def post(
    server: Server, body: bytes, signature: str | None, path: str = "/webhooks/pagerduty", webhook_id: str = "a3d6149f"
) -> Any:
    headers = {"user-agent": "PagerDuty-Webhook/V3.0", "x-webhook-id": webhook_id, "x-webhook-subscription": "PXSUIZH"}
    if signature is not None:
        headers["x-pagerduty-signature"] = signature
    return server.post(path, content=body, headers=headers)


def test_signature_of_the_documented_vector() -> None:
    body = b'{"event":{"id":"01D8FYLHB5WAOASD","event_type":"pagey.ping"}}'
    assert pagerduty_signature(body, "pd-test-secret") == (
        "v1=d323cf62a530b5e1da28656a77a981d50e43294908a9dd91518f46d9c4cd1857"
    )


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_incident_event_type_is_stored_as_its_own_kind(server: Server, event_type: str) -> None:
    body = v3(event_type, event_id=f"id-{event_type}")
    answer = post(server, body, pagerduty_signature(body, SECRET))
    assert answer.status_code == 200, answer.text
    (row,) = wait_until(lambda: server.events("unmatched"), what="the event")  # no routes: stored, not routed
    event = row["event"]
    assert event["kind"] == event_type
    assert event["subject"] == {"system": "pagerduty", "type": "incident", "id": "PGR0VU2"}
    assert (event["actor"], event["actor_name"]) == ("PLH1HKV", "Tenex Engineer")
    assert "no route matched" in row["trace"][-1]["result"]
    if event_type == "incident.annotated":
        assert event["note"] == "I sure am glad we are using PagerDuty!"
    if data_is_incident := event_type not in (
        "incident.annotated",
        "incident.responder.added",
        "incident.responder.replied",
        "incident.status_update_published",
    ):
        assert event["title"] == "A little bump in the road"
    if data_is_incident:
        assert (event["priority"], event["urgency"], event["severity"], event["status"]) == (
            "P1",
            "high",
            "critical",
            "triggered",
        )
        assert event["service"] == {"id": "PF9KMXH", "name": "API Service"}
        assert event["teams"] == ["PFCVPS0"] and event["assignees"] == ["PTUXL6G"]
        assert event["url"] == "https://acme.pagerduty.com/incidents/PGR0VU2"
        assert event["dedup_key"] == "d3640fbd41094207a1c11e58e46b1662"
        assert event["identifiers"] == {
            "pagerduty_incident_id": "PGR0VU2",
            "pagerduty_incident_number": "2",
            "pagerduty_incident_key": "d3640fbd41094207a1c11e58e46b1662",
            "pagerduty_service_id": "PF9KMXH",
            "pagerduty_team_id": "PFCVPS0",
            "pagerduty_escalation_policy_id": "PUS0KTE",
            "pagerduty_subscription_id": "PXSUIZH",
        }


def test_rotation_two_signatures_and_two_secrets(server: Server) -> None:
    body = v3("incident.triggered", "rot-1")
    # During a rotation PagerDuty signs with the new and the old secret; either configured secret passes.
    assert post(server, body, pagerduty_signature(body, "unknown-new", OLD_SECRET)).status_code == 200
    body2 = v3("incident.triggered", "rot-2")
    assert post(server, body2, pagerduty_signature(body2, SECRET, "unknown-old")).status_code == 200
    body3 = v3("incident.triggered", "rot-3")
    assert (
        post(
            server, body3, pagerduty_signature(body3, "v0=x") + ",v0=abc," + pagerduty_signature(body3, SECRET)
        ).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("signature", "tamper", "status", "reason"),
    [
        (None, False, 401, "missing_signature"),
        ("v1=" + "0" * 64, False, 403, "bad_signature"),
        ("v1=not-hex", False, 403, "bad_signature"),
        ("sig", True, 403, "bad_signature"),
        ("other-secret", False, 403, "bad_signature"),
    ],
)
def test_bad_signatures_are_refused_and_counted(
    server: Server, signature: str | None, tamper: bool, status: int, reason: str
) -> None:
    body = v3("incident.triggered", "bad-1")
    if signature == "sig":
        signature = pagerduty_signature(body, SECRET)
    elif signature == "other-secret":
        signature = pagerduty_signature(body, "not-the-secret")
    if tamper:
        body = body.replace(b"A little bump", b"A large bump")
    answer = post(server, body, signature)
    assert answer.status_code == status
    assert server.metric("alertbridge_requests_refused_total", endpoint="pagerduty", reason=reason) == 1
    assert server.events() == []
    assert SECRET not in server.logs()


def test_ping_is_answered_and_not_stored(server: Server) -> None:
    body = json.dumps(
        {
            "event": {
                "id": "01D8FYLHB5WAOASD!BWY4P3M",
                "event_type": "pagey.ping",
                "resource_type": "pagey",
                "occurred_at": "2022-10-01T02:30:53.852Z",
                "agent": None,
                "client": None,
                "data": {"message": "Hello from your friend Pagey!", "type": "ping"},
            }
        }
    ).encode()
    answer = post(server, body, pagerduty_signature(body, SECRET))
    assert answer.status_code == 200 and answer.json()["events"] == []
    assert server.events() == []


def test_retries_of_the_same_webhook_are_stored_once(server: Server) -> None:
    body = v3("incident.acknowledged", "same-event")
    for _ in range(3):
        assert post(server, body, pagerduty_signature(body, SECRET), webhook_id="same-webhook").status_code == 200
    assert len(wait_until(lambda: server.events())) == 1
    assert server.metric("alertbridge_events_stored_total", endpoint="pagerduty", outcome="duplicate") == 2


def test_a_genuine_payload_no_route_takes_is_still_2xx(server: Server) -> None:
    body = v3("service.updated", "svc-1", data={"id": "PSVC1", "type": "service", "summary": "Checkout"})
    assert post(server, body, pagerduty_signature(body, SECRET)).status_code == 200
    (row,) = wait_until(lambda: server.events("unmatched"))
    assert row["event"]["subject"] == {"system": "pagerduty", "type": "service", "id": "PSVC1"}


def test_legacy_v2_messages_become_the_same_events(server: Server) -> None:
    body = {
        "messages": [
            {
                "event": "incident.trigger",
                "id": "69a7ced0-a2cd-11e7-a799-22000a15839c",
                "created_on": "2017-09-26T15:14:36Z",
                "log_entries": [
                    {
                        "type": "trigger_log_entry",
                        "agent": {"id": "P553OPV", "type": "user_reference"},
                        "channel": {"type": "web_trigger", "summary": "My new incident"},
                    }
                ],
                "incident": {
                    "incident_number": 33,
                    "title": "My new incident",
                    "status": "triggered",
                    "incident_key": None,
                    "urgency": "high",
                    "id": "PRORDTY",
                    "html_url": "https://webdemo.pagerduty.com/incidents/PRORDTY",
                    "service": {"id": "PN49J75", "name": "Production XDB Cluster"},
                    "assignments": [{"at": "2017-09-26T15:14:36Z", "assignee": {"id": "P553OPV"}}],
                    "teams": [{"id": "PT1"}],
                    "priority": {"summary": "P2"},
                    "alerts": [{"alert_key": "c24117fc42e44b44b4d6876190583378"}],
                },
            },
            {"event": "incident.resolve", "id": "second-message", "incident": {"id": "PRORDTY", "status": "resolved"}},
        ]
    }
    answer = server.post("/api/webhooks/pagerduty", body)
    assert answer.status_code == 200 and len(answer.json()["events"]) == 2
    rows = wait_until(lambda: len(server.events("unmatched")) == 2 and server.events("unmatched"))
    by_kind = {row["event"]["kind"]: row["event"] for row in rows}
    trigger = by_kind["incident.triggered"]
    assert trigger["subject"]["id"] == "PRORDTY"
    assert trigger["title"] == "My new incident" and trigger["priority"] == "P2" and trigger["severity"] == "error"
    assert trigger["service"] == {"id": "PN49J75", "name": "Production XDB Cluster"}
    assert trigger["assignees"] == ["P553OPV"] and trigger["teams"] == ["PT1"] and trigger["actor"] == "P553OPV"
    assert trigger["dedup_key"] == "c24117fc42e44b44b4d6876190583378"
    assert trigger["identifiers"]["pagerduty_incident_number"] == "33"
    assert by_kind["incident.resolved"]["status"] == "resolved"


def test_unsigned_is_refused_unless_the_endpoint_allows_it(server: Server) -> None:
    body = json.dumps({"messages": [{"event": "incident.trigger", "id": "m1", "incident": {"id": "P1"}}]}).encode()
    assert post(server, body, None).status_code == 401
    assert post(server, body, None, path="/api/webhooks/pagerduty").status_code == 200


def test_not_a_pagerduty_payload_is_a_400(server: Server) -> None:
    body = b'{"hello": "world"}'
    answer = post(server, body, pagerduty_signature(body, SECRET))
    assert answer.status_code == 400 and "not a PagerDuty webhook" in answer.json()["error"]
