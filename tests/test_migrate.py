"""`alertbridge migrate` on whichever store is configured, and store URLs that never show a password."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from alertbridge.store import postgres_schema, sqlite

from . import processes
from .backends import POSTGRES
from .conftest import EXAMPLES, Server
from .test_ingress import TOKEN, seed_env, ticket_event


def migrate(store: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTBRIDGE_")}
    return processes.run(["migrate"], cwd=cwd, env={**env, "ALERTBRIDGE_STORE": store})


def test_migrate_applies_every_version_once_then_nothing(store_url: str, tmp_path: Path) -> None:
    first = migrate(store_url, tmp_path)
    assert first.returncode == 0, first.stderr
    versions = [v for v, _ in (postgres_schema.MIGRATIONS if store_url.startswith("postgresql") else sqlite.MIGRATIONS)]
    assert versions == list(range(1, len(versions) + 1)) and len(versions) >= 9
    for version in versions:
        assert f"│ {version} " in first.stdout
    assert "new tables events, deliveries, attempts" in first.stdout
    assert f"{len(versions)} migration(s) applied" in first.stdout
    again = migrate(store_url, tmp_path)
    assert again.returncode == 0, again.stderr
    assert "up to date, nothing to apply" in again.stdout


def test_an_unreachable_store_is_an_error_without_its_password(tmp_path: Path) -> None:
    result = migrate("postgresql://alertbridge:hunter2-secret@127.0.0.1:1/alertbridge", tmp_path)
    assert result.returncode == 1
    assert "cannot migrate postgresql://alertbridge:***@127.0.0.1:1/alertbridge" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.skipif(not POSTGRES, reason="only a PostgreSQL store URL carries a password")
def test_a_password_in_the_store_url_is_never_logged(server_factory: Callable[..., Server]) -> None:
    server = server_factory(EXAMPLES / "thena-pagerduty.yaml", seed_env(), start=False)
    # Trust authentication ignores the password, so the URL works and the password is only there to be hidden.
    parts = urlsplit(server.store)
    netloc = f"{parts.username}:pg-pass-not-for-logs@{parts.hostname}:{parts.port or 5432}"
    server.store = server.env["ALERTBRIDGE_STORE"] = urlunsplit(parts._replace(netloc=netloc))
    server.start()
    assert server.post(f"/thena/events?token={TOKEN}", ticket_event("pw-1", "PW-1", "a@b.c")).status_code == 200
    assert f"{parts.username}:***@" in server.logs()  # the store is named, masked
    assert "pg-pass-not-for-logs" not in server.logs()
    assert "pg-pass-not-for-logs" not in server.cli("migrate").stdout
