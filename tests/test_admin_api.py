"""The admin API over HTTP: events with their traces, deliveries with their attempts, replay, and
the org wall (anything of another org is a 404)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .conftest import Server, wait_until
from .fakes.pagerduty import FakePagerDutyEvents

CONFIG = """
endpoints:
  - { name: thena-a, source: thena, path: /a/thena, token: tok-a, org: acme }
  - { name: thena-b, source: thena, path: /b/thena, token: tok-b, org: globex }
targets:
  - name: pd
    type: pagerduty_events
    url: ${PD_URL}
    routing_key: ${PD_KEY}
    retry: { max_attempts: 1 }
routes:
  - name: page
    match: { kind: ticket.created }
    actions: [{ target: pd, action: trigger }]
"""


def ticket(n: int) -> dict[str, Any]:
    return {"eventId": f"ev-{n}", "eventType": "ticket:created", "payload": {"ticket": {"id": f"T{n}", "title": "x"}}}


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDutyEvents]:
    with FakePagerDutyEvents() as fake:
        yield fake


@pytest.fixture
def server(server_factory: Callable[..., Server], pagerduty: FakePagerDutyEvents) -> Server:
    return server_factory(CONFIG, {"PD_URL": f"{pagerduty.url}/v2/enqueue", "PD_KEY": "R" * 32})


def token(server: Server, org: str, role: str = "admin") -> dict[str, str]:
    made = server.cli("tokens", "create", "--org", org, "--role", role, "--name", f"{org}-{role}").stdout.strip()
    assert made.startswith("ab_")
    return {"Authorization": f"Bearer {made}"}


def test_events_traces_deliveries_and_the_org_wall(server: Server, pagerduty: FakePagerDutyEvents) -> None:
    acme, globex = token(server, "acme"), token(server, "globex")
    assert server.post("/a/thena?token=tok-a", ticket(1)).status_code == 200
    assert server.post("/b/thena?token=tok-b", ticket(2)).status_code == 200
    wait_until(lambda: len(pagerduty.incidents) == 2, 15, "both paged")
    client = server.client

    assert client.get("/api/v1/events").status_code == 401
    assert client.get("/api/v1/events", headers={"Authorization": "Bearer ab_nope"}).status_code == 401
    mine = client.get("/api/v1/events", headers=acme).json()
    assert [e["event"]["endpoint"] for e in mine] == ["thena-a"]
    assert "raw" not in mine[0]["event"]
    event_id = mine[0]["event"]["id"]

    detail = client.get(f"/api/v1/events/{event_id}", headers=acme).json()
    assert detail["status"] == "routed"
    assert detail["trace"][0]["route"] == "page" and detail["trace"][0]["matched"] is True
    assert detail["event"]["raw"]["eventId"] == "ev-1"
    (delivery,) = detail["deliveries"]
    assert client.get(f"/api/v1/events/{event_id}", headers=globex).status_code == 404

    one = client.get(f"/api/v1/deliveries/{delivery['id']}", headers=acme).json()
    assert one["status"] == "delivered" and one["attempts_made"][0]["status_code"] == 202
    assert client.get(f"/api/v1/deliveries/{delivery['id']}", headers=globex).status_code == 404
    theirs = client.get("/api/v1/deliveries", headers=globex).json()
    assert len(theirs) == 1 and theirs[0]["event_id"] != event_id

    assert [e["name"] for e in client.get("/api/v1/endpoints", headers=globex).json()] == ["thena-b"]
    shown = client.get("/api/v1/endpoints", headers=acme).text + client.get("/api/v1/targets", headers=acme).text
    assert "tok-a" not in shown and "R" * 32 not in shown
    routes = client.get("/api/v1/routes", headers=acme).json()
    assert routes[0]["name"] == "page" and routes[0]["provisioned"] and routes[0]["read_only"]
    filtered = client.get("/api/v1/events", params={"kind": "ticket.updated"}, headers=acme).json()
    assert filtered == []
    spec = client.get("/api/v1/openapi.json").json()
    assert {"/events", "/events/{event_id}", "/deliveries", "/deliveries/{delivery_id}", "/replay"} <= set(
        spec["paths"]
    )


def test_replay_with_a_preview_by_selection_and_roles(server: Server, pagerduty: FakePagerDutyEvents) -> None:
    acme, globex, viewer = token(server, "acme"), token(server, "globex"), token(server, "acme", "viewer")
    pagerduty.behave(400, body={"status": "invalid event", "message": "Event object is invalid"}, times=3)
    for n in range(3):
        assert server.post("/a/thena?token=tok-a", ticket(10 + n)).status_code == 200
    wait_until(lambda: len(server.deliveries("dead")) == 3, 15, "three dead letters")
    client = server.client

    selection = {"target": "pd", "status": "dead", "since": 0, "preview": True}
    assert client.post("/api/v1/replay", json=selection, headers=viewer).status_code == 403
    preview = client.post("/api/v1/replay", json=selection, headers=acme).json()
    assert (preview["count"], preview["replayed"]) == (3, False)
    assert server.deliveries("dead") and len(pagerduty.incidents) == 0  # a preview sends nothing
    # Another org's selection finds none of them, and its ids replay nothing.
    assert client.post("/api/v1/replay", json=selection, headers=globex).json()["count"] == 0
    assert client.post("/api/v1/replay", json={"ids": preview["deliveries"]}, headers=globex).json()["count"] == 0

    done = client.post("/api/v1/replay", json={**selection, "preview": False}, headers=acme).json()
    assert (done["count"], done["replayed"]) == (3, True)
    wait_until(lambda: len(pagerduty.incidents) == 3, 15, "the three replayed")
    assert client.post("/api/v1/replay", json={}, headers=acme).status_code == 422


def test_schemathesis_finds_no_server_error(server: Server) -> None:
    """Every operation of the OpenAPI description, fuzzed: no answer is a 5xx."""
    import subprocess
    import sys
    from pathlib import Path

    headers = token(server, "acme")
    assert server.post("/a/thena?token=tok-a", ticket(1)).status_code == 200
    cli = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(cli),
            "run",
            f"{server.url}/api/v1/openapi.json",
            "--url",
            f"{server.url}/api/v1",
            "--header",
            f"Authorization:{headers['Authorization']}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "passed" in result.stdout


def test_cli_replays_a_selection_after_a_preview(server: Server, pagerduty: FakePagerDutyEvents) -> None:
    pagerduty.behave(503, times=2)
    for n in range(2):
        assert server.post("/a/thena?token=tok-a", ticket(20 + n)).status_code == 200
    wait_until(lambda: len(server.deliveries("dead")) == 2, 15, "two dead letters")
    preview = server.cli("replay", "--target", "pd", "--since", "1h")
    assert "2 would be replayed" in preview.stdout
    assert len(server.deliveries("dead")) == 2 and pagerduty.incidents == []
    done = server.cli("replay", "--target", "pd", "--since", "1h", "--yes")
    assert "2 delivery(ies) queued again" in done.stdout
    wait_until(lambda: len(pagerduty.incidents) == 2, 15, "both sent")
    assert "nothing to replay" in server.cli("replay", "--target", "pd", "--since", "1h").stdout


def test_console_sessions_need_the_csrf_token_to_change_anything(server: Server) -> None:
    import httpx

    server.cli("users", "create", "--email", "ops@example.com", "--org", "acme", "--password", "a long passphrase")
    browser = httpx.Client(base_url=server.url)
    assert browser.post("/console/login", json={"email": "ops@example.com", "password": "nope"}).status_code == 401
    signed = browser.post("/console/login", json={"email": "OPS@example.com", "password": "a long passphrase"})
    assert signed.status_code == 200
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    csrf = signed.json()["csrf"]
    assert browser.get("/api/v1/events").status_code == 200  # reading needs only the session
    assert browser.post("/api/v1/replay", json={"ids": ["x"]}).status_code == 403  # changing needs the token
    assert browser.post("/api/v1/replay", json={"ids": ["x"]}, headers={"X-CSRF-Token": csrf}).status_code == 200
    assert browser.post("/console/logout").status_code == 403
    assert browser.post("/console/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert browser.get("/api/v1/events").status_code == 401
