"""The command line: serve with no config, send --dry-run, send into a running server, events and deliveries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from .conftest import EXAMPLES, Server, free_port, wait_until
from .fakes.pagerduty import FakePagerDutyEvents
from .test_ingress import seed_env, ticket_event


def run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alertbridge", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_with_no_config_starts_on_sqlite_in_the_working_directory(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTBRIDGE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "alertbridge", "serve", "--port", str(port), "--host", "127.0.0.1"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
    )
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, 20, "the server to start")
        assert (tmp_path / "alertbridge.db").exists()
        assert httpx.get(f"http://127.0.0.1:{port}/health").json() == {"ok": True}
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert b"No configuration given" in stderr


def test_send_dry_run_shows_the_trace_and_the_rendered_action(tmp_path: Path) -> None:
    payload = tmp_path / "ticket.json"
    payload.write_text(json.dumps(ticket_event("dry-1", "DRY-1", [{"email": "bedourelborai@luciq.ai"}])))
    result = run(
        "send",
        str(payload),
        "--endpoint",
        "thena-events",
        "--dry-run",
        "--config",
        str(EXAMPLES / "thena-pagerduty.yaml"),
        cwd=tmp_path,
        env=seed_env(),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "decision: routed" in out
    assert "page-ticket-owner" in out and "matched" in out
    assert "trigger on pagerduty-b" in out
    assert '"summary": "[Thena] Ticket DRY-1"' in out
    assert '"dedup_key": "thena-ticket-DRY-1"' in out
    assert "routing-key-b" not in out  # the routing key lives in the target, never in the trace
    assert not (tmp_path / "alertbridge.db").exists()  # a dry run stores nothing


def test_send_dry_run_explains_a_miss(tmp_path: Path) -> None:
    payload = tmp_path / "ticket.json"
    payload.write_text(json.dumps(ticket_event("dry-2", "DRY-2", "stranger@x.io", event_type="ticket:deleted")))
    result = run(
        "send",
        str(payload),
        "--endpoint",
        "thena-events",
        "--dry-run",
        "--config",
        str(EXAMPLES / "thena-pagerduty.yaml"),
        cwd=tmp_path,
        env=seed_env(),
    )
    assert result.returncode == 0, result.stderr
    assert "decision: unmatched" in result.stdout
    assert "kind 'ticket.deleted' NOT in ['ticket.created', 'ticket.updated']" in result.stdout
    assert "labels.service_group is missing" in result.stdout


def test_send_refuses_an_unreadable_payload_and_an_unknown_endpoint(tmp_path: Path) -> None:
    payload = tmp_path / "bad.json"
    payload.write_text("{not json")
    config = str(EXAMPLES / "thena-pagerduty.yaml")
    bad = run(
        "send",
        str(payload),
        "--endpoint",
        "thena-events",
        "--dry-run",
        "--config",
        config,
        cwd=tmp_path,
        env=seed_env(),
    )
    assert bad.returncode == 1 and "cannot be read as thena" in bad.stderr
    unknown = run("send", str(payload), "--endpoint", "nope", "--config", config, cwd=tmp_path, env=seed_env())
    assert unknown.returncode == 2 and "thena-events" in unknown.stderr


def test_send_into_the_store_of_a_running_server_is_delivered(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    with FakePagerDutyEvents() as pd:
        server = server_factory(EXAMPLES / "thena-pagerduty.yaml", seed_env(pd.url + "/v2/enqueue"))
        payload = tmp_path / "ticket.json"
        payload.write_text(json.dumps(ticket_event("cli-1", "CLI-1", [{"email": "hossamhafez@luciq.ai"}])))
        out = server.cli("send", str(payload), "--endpoint", "thena-events", "--config", str(server.config)).stdout
        assert "stored as" in out
        pd.wait_for(lambda: len(pd.incidents) == 1)
        again = server.cli("send", str(payload), "--endpoint", "thena-events", "--config", str(server.config)).stdout
        assert "already stored" in again

    (row,) = server.events()
    shown = server.cli("events", "show", row["event"]["id"]).stdout
    assert "page-ticket-owner" in shown and "delivered" in shown
    (delivery,) = server.deliveries("delivered")
    detail = server.cli("deliveries", "show", delivery["id"]).stdout
    assert "success" in detail and "202" in detail
    assert "1 attempt" in detail
