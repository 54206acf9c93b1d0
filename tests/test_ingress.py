"""Ingress over real HTTP: answers, refusals, idempotency, limits, and the store being unavailable."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from .backends import writes_blocked
from .conftest import EXAMPLES, Server, wait_until
from .signing import pagerduty_signature

TOKEN = "tok-8b1f3c"


def seed_env(pd_url: str = "http://127.0.0.1:9/v2/enqueue", **extra: str) -> dict[str, str]:
    return {
        "PD_EVENTS_URL": pd_url,
        "PD_ROUTING_KEY_A": "routing-key-a",
        "PD_ROUTING_KEY_B": "routing-key-b",
        "WEBHOOK_TOKEN": TOKEN,
        **extra,
    }


def ticket_event(
    event_id: str, ticket_id: str, assigned: Any = None, event_type: str = "ticket:created", **ticket: Any
) -> dict[str, Any]:
    return {
        "message": {
            "eventId": event_id,
            "eventType": event_type,
            "payload": {
                "ticket": {
                    "id": ticket_id,
                    "title": f"Ticket {ticket_id}",
                    "priorityName": "High",
                    "assignedTo": assigned,
                    **ticket,
                }
            },
        }
    }


@pytest.fixture
def seed_server(server_factory: Callable[..., Server]) -> Server:
    return server_factory(EXAMPLES / "thena-pagerduty.yaml", seed_env(DEFAULT_SERVICE_GROUP="A"))


def test_health_and_probes(seed_server: Server) -> None:
    assert seed_server.client.get("/health").json() == {"ok": True}
    assert seed_server.client.get("/healthz").status_code == 200
    ready = seed_server.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ok"] is True
    # Thena probes its URLs with GET and HEAD
    assert seed_server.client.head("/thena/installations").status_code == 200
    assert seed_server.client.get("/thena/installations").status_code == 200
    assert seed_server.client.get("/thena/events").status_code == 200
    assert seed_server.client.head("/thena/events").status_code == 200
    assert (
        seed_server.post(
            f"/thena/installations?token={TOKEN}",
            {"installation_id": "I1", "event_type": "app:installation", "bot_token": "pk_live_do_not_log"},
        ).status_code
        == 200
    )


def test_seed_answers(seed_server: Server) -> None:
    a = seed_server.post(
        f"/thena/events?token={TOKEN}",
        ticket_event("prod-test-A-001", "PROD-TICKET-A-001", [{"email": "hossamhafez@luciq.ai"}]),
    )
    assert (a.status_code, a.json()) == (200, {"ok": True, "serviceGroup": "A"})
    b = seed_server.post(
        f"/thena/events?token={TOKEN}",
        ticket_event("prod-test-B-001", "PROD-TICKET-B-001", [{"email": "BedourElborai@luciq.ai"}]),
    )
    assert b.json() == {"ok": True, "serviceGroup": "B"}
    null = seed_server.post(f"/thena/events?token={TOKEN}", ticket_event("prod-test-null-001", "N1", None))
    assert null.json() == {"ok": True, "serviceGroup": "A"}  # DEFAULT_SERVICE_GROUP
    unmapped = seed_server.post(f"/thena/events?token={TOKEN}", ticket_event("x-1", "N2", "stranger@else.where"))
    assert unmapped.json() == {"ok": True, "serviceGroup": "A"}


def test_without_a_default_group_unmapped_tickets_page_nobody(server_factory: Callable[..., Server]) -> None:
    server = server_factory(EXAMPLES / "thena-pagerduty.yaml", seed_env())
    answer = server.post(f"/thena/events?token={TOKEN}", ticket_event("e-1", "T-1", "stranger@else.where"))
    assert answer.json() == {"ok": True, "serviceGroup": None}
    (row,) = wait_until(lambda: server.events("unmatched"), what="the event to be routed")
    assert row["trace"][0]["matched"] is False
    assert "labels.service_group is missing" in row["trace"][0]["reasons"]
    shown = server.cli("events", "show", row["event"]["id"]).stdout
    assert "no route matched" in shown
    assert server.deliveries() == []


def test_redelivery_is_answered_the_same_and_stored_once(seed_server: Server) -> None:
    body = ticket_event("dup-001", "DUP-1", [{"email": "mirettewagdy@luciq.ai"}])
    first = seed_server.post(f"/thena/events?token={TOKEN}", body)
    second = seed_server.post(f"/thena/events?token={TOKEN}", body)
    assert first.json() == second.json() == {"ok": True, "serviceGroup": "B"}
    assert seed_server.metric("alertbridge_events_stored_total", outcome="new") == 1
    assert seed_server.metric("alertbridge_events_stored_total", outcome="duplicate") == 1


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "reason", "message"),
    [
        ("/thena/events", {}, 401, "missing_token", "token is required"),
        ("/thena/events?token=wrong", {}, 403, "bad_token", "invalid token"),
        (f"/thena/events?token={TOKEN}", {"content": b'{"message": {'}, 400, "bad_payload", "not valid JSON"),
        (
            f"/thena/events?token={TOKEN}",
            {"content": b'{"message": {"eventId": "x"}}'},
            400,
            "bad_payload",
            "no eventType",
        ),
        (f"/thena/events?token={TOKEN}", {"content": b"x" * (1024 * 1024 + 1)}, 413, "too_large", "byte limit"),
    ],
)
def test_refusals(
    seed_server: Server, path: str, kwargs: dict[str, Any], status: int, reason: str, message: str
) -> None:
    body = kwargs.pop("content", json.dumps(ticket_event("r-1", "R-1")).encode())
    answer = seed_server.post(path, content=body, headers={"x-forwarded-for": "1"})
    assert answer.status_code == status
    assert message in answer.json()["error"]
    assert seed_server.metric("alertbridge_requests_refused_total", reason=reason) == 1
    assert seed_server.metric("alertbridge_events_stored_total", outcome="new") == 0
    logs = seed_server.logs()
    assert f'"reason": "{reason}"' in logs
    assert TOKEN not in logs and "wrong" not in logs.replace("wrong_", "")


def test_unknown_path_and_wrong_method(seed_server: Server) -> None:
    missing = seed_server.post(f"/thena/nope?token={TOKEN}", {})
    assert missing.status_code == 404 and "no endpoint at /thena/nope" in missing.json()["error"]
    assert seed_server.metric("alertbridge_requests_refused_total", reason="unknown_path") == 1
    put = seed_server.client.put(f"/thena/events?token={TOKEN}", content=b"{}")
    assert put.status_code == 405 and "POST" in put.headers["allow"]


def test_a_streamed_body_over_the_limit_is_refused(seed_server: Server) -> None:
    def chunks() -> Any:
        for _ in range(20):
            yield b"x" * 65536

    answer = seed_server.client.post(f"/thena/events?token={TOKEN}", content=chunks())
    assert answer.status_code == 413


def test_secrets_never_reach_the_logs(seed_server: Server) -> None:
    stored = seed_server.post(
        f"/thena/events?token={TOKEN}", ticket_event("s-1", "S-1", [{"email": "hossamhafez@luciq.ai"}])
    )
    assert stored.status_code == 200, stored.text  # stored: the router and the dispatcher have work to log
    seed_server.post(
        f"/thena/installations?token={TOKEN}",
        {"installation_id": "I9", "event_type": "app:installation", "bot_token": "pk_live_do_not_log"},
    )
    seed_server.post("/thena/events?token=guess-1234", {})
    # The router and the dispatcher have logged their work once the first attempt is logged.
    attempted = ("retry_scheduled", "delivered", "dead_lettered")
    wait_until(lambda: any(word in seed_server.logs() for word in attempted), 30, "the first attempt logged")
    logs = seed_server.logs()
    for secret in (TOKEN, "routing-key-a", "routing-key-b", "pk_live_do_not_log", "guess-1234"):
        assert secret not in logs


def test_503_when_the_store_cannot_commit_then_the_retry_lands(
    server_factory: Callable[..., Server], tmp_path: Any
) -> None:
    config = (EXAMPLES / "thena-pagerduty.yaml").read_text() + "\nserver:\n  ingest_timeout: 1s\n"
    server = server_factory(config, seed_env(DEFAULT_SERVICE_GROUP="A"))
    body = ticket_event("locked-001", "LOCK-1", [{"email": "hossamhafez@luciq.ai"}])

    # Another process holds the lock the write needs: nothing can commit.
    with writes_blocked(server.store):
        refused = server.post(f"/thena/events?token={TOKEN}", body)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert "try again" in refused.json()["error"]
    # The sender retries (as PagerDuty and Thena do): the event is stored exactly once.
    accepted = wait_until(
        lambda: (r := server.post(f"/thena/events?token={TOKEN}", body)).status_code == 200 and r,
        timeout=40,
        what="the store to take writes again",
    )
    assert accepted.json() == {"ok": True, "serviceGroup": "A"}
    assert [row["event"]["delivery_key"] for row in server.events()] == ["locked-001"]


DEEP_CONFIG = """
endpoints:
  - { name: thena, source: thena, path: /thena/events, token: "${WEBHOOK_TOKEN}" }
  - { name: pagerduty, source: pagerduty, path: /webhooks/pagerduty, secret: "${PD_SECRET}" }
  - { name: slack, source: slack, path: /webhooks/slack/events, signing_secret: "${SLACK_SECRET}" }
"""


def test_deeply_nested_json_from_an_authenticated_sender_is_a_400_with_a_reason(
    server_factory: Callable[..., Server],
) -> None:
    """Thousands of levels used to be a RecursionError answered 500, which senders retry for ever."""
    server = server_factory(DEEP_CONFIG, {"WEBHOOK_TOKEN": TOKEN, "PD_SECRET": "pd-secret", "SLACK_SECRET": "s"})
    deep = b"[" * 5000 + b"]" * 5000
    thena = b'{"message": {"eventId": "d-1", "eventType": "ticket:created", "payload": ' + deep + b"}}"
    pagerduty = b'{"event": {"id": "E1", "event_type": "incident.triggered", "data": ' + deep + b"}}"
    signed = pagerduty_signature(deep, "pd-secret")
    answers = [
        server.post(f"/thena/events?token={TOKEN}", content=thena),
        server.post(f"/thena/events?token={TOKEN}", content=deep),
        server.post(
            "/webhooks/pagerduty",
            content=pagerduty,
            headers={"x-pagerduty-signature": pagerduty_signature(pagerduty, "pd-secret")},
        ),
        server.post("/webhooks/pagerduty", content=deep, headers={"x-pagerduty-signature": signed}),
    ]
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert "nested more than 100 levels deep" in answer.json()["error"]
    # A Slack challenge is read before its signature is checked: unreadable, it is a 400 too.
    challenge = server.post("/webhooks/slack/events", content=b'{"type": "url_verification", "challenge": [' + deep)
    assert challenge.status_code == 400 and "nested more than 100" in challenge.json()["error"]
    for endpoint, count in (("thena", 2), ("pagerduty", 2), ("slack", 1)):
        assert server.metric("alertbridge_requests_refused_total", endpoint=endpoint, reason="bad_payload") == count
    assert server.metric("alertbridge_events_stored_total", outcome="new") == 0
    assert "Traceback" not in server.logs() and "RecursionError" not in server.logs()
