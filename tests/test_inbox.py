"""Seed 001: PagerDuty alerts as notifications for every user, and incidents from the prefilled form."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .conftest import EXAMPLES, Server, wait_until
from .signing import pagerduty_signature

SEED_WEBHOOK = {
    "messages": [
        {
            "id": "test-123",
            "type": "incident.triggered",
            "created_on": "2025-01-15T12:00:00Z",
            "data": {
                "incident": {
                    "id": "test-incident-456",
                    "title": "Test Database Alert",
                    "description": "This is a test alert",
                    "status": "triggered",
                    "urgency": "high",
                    "created_at": "2025-01-15T12:00:00Z",
                    "html_url": "https://test.pagerduty.com/incidents/test-incident-456",
                    "service": {"id": "test-service-789", "name": "Test Database Service"},
                }
            },
        }
    ]
}


def later(event_id: str, kind: str, status: str, urgency: str = "high") -> dict[str, Any]:
    message = json.loads(json.dumps(SEED_WEBHOOK["messages"][0]))
    message.update(id=event_id, type=kind)
    message["data"]["incident"].update(status=status, urgency=urgency)
    return {"messages": [message]}


def people(server: Server) -> dict[str, dict[str, str]]:
    tokens = {}
    for email, role in (("alice@example.com", "member"), ("bob@example.com", "viewer")):
        server.cli("users", "create", "--email", email, "--role", role, "--password", "correct horse battery")
        made = server.cli("tokens", "create", "--user", email, "--role", role, "--name", email).stdout.strip()
        tokens[email] = {"Authorization": f"Bearer {made}"}
    return tokens


def test_the_seeds_webhook_becomes_a_notification_then_an_incident(server_factory: Callable[..., Server]) -> None:
    server = server_factory(EXAMPLES / "pagerduty-inbox.yaml")
    tokens = people(server)
    alice, bob = tokens["alice@example.com"], tokens["bob@example.com"]
    client = server.client
    assert client.get("/api/webhooks/pagerduty").status_code == 200  # the seed's verification GET
    assert server.post("/api/webhooks/pagerduty", SEED_WEBHOOK).status_code == 200

    wait_until(lambda: client.get("/api/v1/notifications/unread", headers=alice).json()["unread"] == 1, 10, "bell")
    assert client.get("/api/v1/notifications/unread", headers=bob).json() == {"unread": 1}
    (note,) = client.get("/api/v1/notifications", headers=alice).json()
    assert note["title"] == "[PagerDuty] Test Database Alert"
    assert note["link"] == "https://test.pagerduty.com/incidents/test-incident-456"
    form = note["data"]["prefill"]
    assert form == {
        "title": "[PagerDuty] Test Database Alert",
        "description": "This is a test alert\n\nPagerDuty incident: https://test.pagerduty.com/incidents/"
        "test-incident-456\n\nService: Test Database Service\n\nPagerDuty status: triggered",
        "urgency": "high",
        "criticality": "high",
        "status": "open",
        "customer": "Test Database Service",
        "tags": [
            "source:pagerduty",
            "service:Test Database Service",
            "urgency:high",
            "pagerduty-id:test-incident-456",
        ],
    }
    assert client.post(f"/api/v1/notifications/{note['id']}/read", headers=alice).json() == {"unread": 0}

    # Acknowledged (and now low urgency): the same notification, updated and unread again.
    assert (
        server.post(
            "/api/webhooks/pagerduty", later("test-124", "incident.acknowledged", "acknowledged", "low")
        ).status_code
        == 200
    )
    wait_until(lambda: client.get("/api/v1/notifications/unread", headers=alice).json()["unread"] == 1, 10, "again")
    (note,) = client.get("/api/v1/notifications", headers=alice).json()
    assert (note["data"]["prefill"]["status"], note["data"]["prefill"]["urgency"]) == ("investigating", "medium")

    # The click: the prefilled form, created by a member; a viewer cannot.
    assert client.post("/api/v1/incidents", json={"from_notification": note["id"]}, headers=bob).status_code == 403
    made = client.post("/api/v1/incidents", json={"from_notification": note["id"]}, headers=alice)
    assert made.status_code == 201, made.text
    incident = made.json()
    assert (incident["title"], incident["status"], incident["customer"]) == (
        "[PagerDuty] Test Database Alert",
        "investigating",
        "Test Database Service",
    )
    assert client.post("/api/v1/incidents", json={"from_notification": note["id"]}, headers=alice).status_code == 409

    # Resolved in PagerDuty: the incident follows.
    assert server.post("/api/webhooks/pagerduty", later("test-125", "incident.resolved", "resolved")).status_code == 200
    wait_until(
        lambda: client.get(f"/api/v1/incidents/{incident['id']}", headers=alice).json()["status"] == "resolved",
        10,
        "the incident resolved",
    )
    assert [i["id"] for i in client.get("/api/v1/incidents", headers=bob).json()] == [incident["id"]]


def test_once_a_secret_is_set_the_webhook_must_be_signed(server_factory: Callable[..., Server]) -> None:
    server = server_factory(EXAMPLES / "pagerduty-inbox.yaml", {"PAGERDUTY_WEBHOOK_SECRET": "s3cret"})
    assert server.post("/api/webhooks/pagerduty", SEED_WEBHOOK).status_code == 401
    body = json.dumps(SEED_WEBHOOK).encode()
    signed = {"x-pagerduty-signature": pagerduty_signature(body, "s3cret")}
    assert server.post("/api/webhooks/pagerduty", content=body, headers=signed).status_code == 200
    assert server.client.get("/api/webhooks/pagerduty").json()["signed"] is True


ALARM_CONFIG = """
endpoints:
  - { name: thena, source: thena, path: /thena, token: t }
targets:
  - { name: pd, type: pagerduty_events, url: "${PD_URL}", routing_key: "${PD_KEY}", retry: { max_attempts: 1 } }
  - { name: slack, type: slack, token: xoxb-test, url: "${SLACK_URL}" }
delivery:
  failure_alert:
    actions:
      - { target: slack, action: post, channel: C0A4967KRBM, text: "alertbridge: {target} is failing ({reason})" }
routes:
  - name: page
    match: { kind: ticket.created }
    actions: [{ target: pd, action: trigger }]
"""


def test_a_failing_target_is_reported_once_and_its_recovery_too(server_factory: Callable[..., Server]) -> None:
    from .fakes.pagerduty import FakePagerDutyEvents
    from .fakes.slack import FakeSlack

    with FakePagerDutyEvents() as pagerduty, FakeSlack() as slack:
        env = {"PD_URL": f"{pagerduty.url}/v2/enqueue", "PD_KEY": "R" * 32, "SLACK_URL": f"{slack.url}/api"}
        server = server_factory(ALARM_CONFIG, env)
        alice = people(server)["alice@example.com"]
        pagerduty.behave(400, body={"status": "invalid event", "message": "Event object is invalid"}, times=3)
        for n in range(3):
            ticket = {"eventId": f"e{n}", "eventType": "ticket:created", "payload": {"ticket": {"id": f"T{n}"}}}
            assert server.post("/thena?token=t", ticket).status_code == 200
        wait_until(lambda: len(server.deliveries("dead")) == 3, 15, "three dead letters")
        wait_until(lambda: slack.messages, 10, "the Slack alarm")
        notes = server.client.get("/api/v1/notifications", headers=alice).json()
        assert [n["title"] for n in notes] == ["pd is failing"]  # once, not three times
        assert len(slack.messages) == 1 and slack.messages[0]["text"].startswith("alertbridge: pd is failing (")

        ok = {"eventId": "e9", "eventType": "ticket:created", "payload": {"ticket": {"id": "T9"}}}
        assert server.post("/thena?token=t", ok).status_code == 200
        wait_until(lambda: pagerduty.incidents, 10, "a success")
        wait_until(
            lambda: (
                [n["title"] for n in server.client.get("/api/v1/notifications", headers=alice).json()]
                == ["pd has recovered"]
            ),
            10,
            "the recovery",
        )
        assert len(slack.messages) == 1


def from_integration(event_id: str, integration: str | None) -> dict[str, Any]:
    """Seed 001's webhook as PagerDuty sends it for an incident an integration raised: the trigger's log
    entry names the integration's key (`channel.service_key`), as V2 webhooks carry it."""
    message = json.loads(json.dumps(SEED_WEBHOOK["messages"][0]))
    message["id"] = event_id
    message["data"]["incident"]["id"] = f"incident-{event_id}"
    if integration is not None:
        channel = {"type": "api", "service_key": integration}
        message["log_entries"] = [{"type": "trigger_log_entry", "channel": channel}]
    return {"messages": [message]}


def test_the_saved_integration_key_filters_which_webhooks_notify(server_factory: Callable[..., Server]) -> None:
    """Seed 001's "integration key for filtering": a webhook from another integration is stored, and its
    trace says why nobody was notified."""
    server = server_factory(EXAMPLES / "pagerduty-inbox.yaml")
    alice = people(server)["alice@example.com"]
    admin = {"Authorization": "Bearer " + server.cli("tokens", "create", "--role", "admin").stdout.strip()}
    saved = server.client.post("/api/integrations/pagerduty", json={"integrationKey": "R0UTING"}, headers=admin)
    assert saved.status_code == 200 and saved.json()["integrationKey"] == "R0UTING"

    for event_id, integration in (("ours", "R0UTING"), ("theirs", "OTHERKEY"), ("unknown", None)):
        assert server.post("/api/webhooks/pagerduty", from_integration(event_id, integration)).status_code == 200
    wait_until(lambda: all(e["routed_at"] for e in server.events()) and len(server.events()) == 3, 10, "routed")
    notes = server.client.get("/api/v1/notifications", headers=alice).json()
    # Ours, and the one that names no integration (the filter cannot place it, so it is not dropped).
    assert sorted(n["data"]["prefill"]["tags"][-1] for n in notes) == [
        "pagerduty-id:incident-ours",
        "pagerduty-id:incident-unknown",
    ]

    by_id = {e["event"]["delivery_key"]: e for e in server.events()}
    assert by_id["ours"]["status"] == "routed" and by_id["unknown"]["status"] == "routed"
    assert by_id["theirs"]["status"] == "suppressed"
    (step,) = by_id["theirs"]["trace"]
    assert step["result"] == "not routed", step
    assert "from integration 'OTHERKEY'; this endpoint takes only 'R0UTING'" in step["why"]
    assert len(server.deliveries()) == 2

    # Cleared: every webhook notifies again.
    cleared = server.client.post("/api/integrations/pagerduty", json={"integrationKey": ""}, headers=admin)
    assert cleared.json()["integrationKey"] is None
    assert server.post("/api/webhooks/pagerduty", from_integration("later", "OTHERKEY")).status_code == 200
    wait_until(lambda: len(server.client.get("/api/v1/notifications", headers=alice).json()) == 3, 10, "notified")
    # Not a string: refused, and nothing changes.
    refused = server.client.post("/api/integrations/pagerduty", json={"integrationKey": ["R0UTING"]}, headers=admin)
    assert refused.status_code == 400 and "integrationKey" in refused.json()["error"]
    assert server.client.get("/api/integrations/pagerduty", headers=admin).json()["integrationKey"] is None
