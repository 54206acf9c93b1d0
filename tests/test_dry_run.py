"""`alertbridge send --dry-run` against a store: used once-per-ticket keys, missing links, a pause,
and no store at all (said so, and nothing created). The store's state is made by the real server."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from . import processes
from .conftest import EXAMPLES, Server, wait_until
from .fakes.opsgenie import FakeOpsgenie
from .fakes.pagerduty import FakePagerDutyEvents
from .fakes.pagerduty_rest import FakePagerDutyREST
from .test_ingress import seed_env, ticket_event
from .test_sync import OG_INTEGRATION, created_pair, start


def test_dry_run_says_a_once_per_ticket_key_was_used_already(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    with FakePagerDutyEvents() as pd:
        server = server_factory(EXAMPLES / "thena-pagerduty.yaml", seed_env(pd.url + "/v2/enqueue"))
        first = tmp_path / "created.json"
        first.write_text(json.dumps(ticket_event("once-1", "ONCE-1", [{"email": "hossamhafez@luciq.ai"}])))
        server.cli("send", str(first), "--endpoint", "thena-events", "--config", str(server.config))
        pd.wait_for(lambda: len(pd.incidents) == 1)
        # PagerDuty has it; the dispatcher records the attempt just after.
        (delivery,) = wait_until(lambda: server.deliveries("delivered"), what="the delivery recorded")

        update = tmp_path / "updated.json"
        update.write_text(
            json.dumps(
                ticket_event("once-2", "ONCE-1", [{"email": "hossamhafez@luciq.ai"}], event_type="ticket:updated")
            )
        )
        args = ("send", str(update), "--endpoint", "thena-events", "--config", str(server.config), "--dry-run")
        shown = server.cli(*args).stdout
        assert (
            f"would not be sent: once-per-ticket key thena-ticket-ONCE-1 already used by delivery {delivery['id']}"
            in shown
        )

        other = tmp_path / "other.json"
        other.write_text(json.dumps(ticket_event("once-3", "ONCE-2", [{"email": "hossamhafez@luciq.ai"}])))
        fresh = server.cli(
            "send", str(other), "--endpoint", "thena-events", "--config", str(server.config), "--dry-run"
        )
        assert "would not be sent" not in fresh.stdout and "→ trigger on pagerduty-a" in fresh.stdout
        assert len(server.events()) == 1  # the dry runs stored nothing
        assert len(pd.incidents) == 1


def test_dry_run_says_an_action_would_wait_for_a_missing_link(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    with (
        FakeOpsgenie("og-api-key", OG_INTEGRATION) as opsgenie,
        FakePagerDutyREST("pd-api-key", "bridge@example.com") as pd,
    ):
        pd.webhook_secret = "pd-webhook-secret"
        sync = start(server_factory, (opsgenie, pd))
        alert, incident_id = created_pair(sync)  # the alert is linked to the incident it made
        created = opsgenie.webhooks_sent[0]

        def acknowledged(alert_id: str) -> Path:
            payload = json.loads(json.dumps(created))
            payload["action"] = "Acknowledge"
            payload["alert"]["alertId"] = payload["alert"]["alias"] = alert_id
            payload["alertFlowContext"]["requestId"] = str(uuid.uuid4())
            path = tmp_path / f"ack-{alert_id}.json"
            path.write_text(json.dumps(payload))
            return path

        config = str(sync.server.config)
        linked = sync.server.cli(
            "send", str(acknowledged(alert.id)), "--endpoint", "opsgenie", "--config", config, "--dry-run"
        )
        assert "would wait" not in linked.stdout
        assert f'"incident_id": "{incident_id}"' in linked.stdout

        stranger = str(uuid.uuid4())
        unlinked = sync.server.cli(
            "send", str(acknowledged(stranger)), "--endpoint", "opsgenie", "--config", config, "--dry-run"
        ).stdout
        assert f"would wait for link: the pagerduty incident linked to opsgenie alert {stranger}" in unlinked


def test_dry_run_without_a_store_says_so_creates_none_and_shows_a_pause(tmp_path: Path) -> None:
    config = tmp_path / "paused.yaml"
    config.write_text((EXAMPLES / "thena-pagerduty.yaml").read_text() + "\ndelivery:\n  paused: true\n")
    payload = tmp_path / "ticket.json"
    payload.write_text(json.dumps(ticket_event("nostore-1", "NS-1", [{"email": "hossamhafez@luciq.ai"}])))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTBRIDGE_")}
    result = processes.run(
        ["send", str(payload), "--endpoint", "thena-events", "--dry-run"],
        cwd=tmp_path,
        env={**env, **seed_env(), "ALERTBRIDGE_CONFIG": str(config)},  # the README's command, as written
    )
    assert result.returncode == 0, result.stderr
    assert "no store at sqlite:///./alertbridge.db yet (nothing created)" in result.stderr
    assert "deliveries are paused (delivery.paused: true)" in result.stderr
    assert "→ trigger on pagerduty-a" in result.stdout
    assert not (tmp_path / "alertbridge.db").exists()


def test_send_without_a_config_says_how_to_name_one(tmp_path: Path) -> None:
    payload = tmp_path / "ticket.json"
    payload.write_text("{}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTBRIDGE_")}
    result = processes.run(["send", str(payload), "--dry-run"], cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "pass --config FILE or set ALERTBRIDGE_CONFIG" in result.stderr


def test_dry_run_on_a_store_not_made_yet_leaves_it_unmade(store_url: str, tmp_path: Path) -> None:
    """On PostgreSQL the test's database exists but has no schema: a dry run must not migrate it."""
    payload = tmp_path / "ticket.json"
    payload.write_text(json.dumps(ticket_event("unmade-1", "UM-1", [{"email": "hossamhafez@luciq.ai"}])))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTBRIDGE_")}
    args = ["send", str(payload), "--config", str(EXAMPLES / "thena-pagerduty.yaml"), "--endpoint", "thena-events"]
    for _ in range(2):  # the second run finds the store as the first left it
        result = processes.run([*args, "--dry-run", "--store", store_url], cwd=tmp_path, env={**env, **seed_env()})
        assert result.returncode == 0, result.stderr
        assert "yet (nothing created): the decision below does not know the store's state" in result.stderr
        assert "→ trigger on pagerduty-a" in result.stdout
    assert not list(tmp_path.glob("*.db"))


def test_dry_run_on_a_store_an_older_alertbridge_made_says_to_migrate(store_url: str, tmp_path: Path) -> None:
    """Just after an upgrade, before serve restarts: the dry run must not read columns the store has
    not got yet (a traceback), but say so and show the decision without the store's state."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ALERTBRIDGE_")}, **seed_env()}

    def alertbridge(*args: str) -> subprocess.CompletedProcess[str]:
        return processes.run([*args, "--store", store_url], cwd=tmp_path, env=env)

    assert alertbridge("migrate").returncode == 0
    if store_url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as conn:
            conn.execute("DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)")
    else:
        import psycopg

        with psycopg.connect(store_url, autocommit=True) as pg:
            pg.execute("DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)")
    payload = tmp_path / "ticket.json"
    payload.write_text(json.dumps(ticket_event("old-1", "OLD-1", [{"email": "hossamhafez@luciq.ai"}])))
    config = str(EXAMPLES / "thena-pagerduty.yaml")
    result = alertbridge("send", str(payload), "--config", config, "--endpoint", "thena-events", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "run `alertbridge migrate`" in result.stderr and "Traceback" not in result.stderr
    assert "→ trigger on pagerduty-a" in result.stdout
