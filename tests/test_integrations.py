"""Seed 001's integration settings over HTTP: saved encrypted, shown masked, tested against
PagerDuty's API (the fake), and applied to the live webhook endpoint."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from .backends import stored_bytes
from .conftest import EXAMPLES, Server
from .fakes.pagerduty_rest import FakePagerDutyREST
from .signing import pagerduty_signature
from .test_inbox import SEED_WEBHOOK

API_KEY = "u+pagerduty-api-key-1234"
SECRET = "whook-secret-for-pd"


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDutyREST]:
    with FakePagerDutyREST(API_KEY) as fake:
        yield fake


def admin(server: Server, role: str = "admin") -> dict[str, str]:
    made = server.cli("tokens", "create", "--role", role, "--name", role).stdout.strip()
    return {"Authorization": f"Bearer {made}"}


def test_settings_saved_masked_tested_and_applied(
    server_factory: Callable[..., Server], pagerduty: FakePagerDutyREST, tmp_path: Path
) -> None:
    env = {"ALERTBRIDGE_SECRET_KEY": Fernet.generate_key().decode(), "PAGERDUTY_API_URL": pagerduty.url}
    server = server_factory(EXAMPLES / "pagerduty-inbox.yaml", env)
    headers, viewer = admin(server), admin(server, "viewer")
    client = server.client
    assert client.get("/api/integrations/pagerduty").status_code == 401
    first = client.get("/api/integrations/pagerduty", headers=headers).json()
    assert first == {
        "enabled": True,  # the endpoint is in the configuration file
        "webhookUrl": f"{server.url}/api/webhooks/pagerduty",
        "apiKey": None,
        "integrationKey": None,
        "webhookSecretSet": False,
    }
    # The seed's flow: enable, copy the URL, enter the key, test, save.
    assert client.post("/api/integrations/pagerduty/test", json={"apiKey": API_KEY}, headers=headers).json() == {
        "ok": True,
        "message": "PagerDuty accepted the API key",
    }
    refused = client.post("/api/integrations/pagerduty/test", json={"apiKey": "wrong"}, headers=headers).json()
    assert refused == {"ok": False, "message": "PagerDuty refused the API key"}
    settings = {"enabled": True, "apiKey": API_KEY, "integrationKey": "R0UTING", "webhookSecret": SECRET}
    assert client.post("/api/integrations/pagerduty", json=settings, headers=viewer).status_code == 403
    saved = client.post("/api/integrations/pagerduty", json=settings, headers=headers).json()
    assert saved["apiKey"] == "••••1234" and saved["webhookSecretSet"] is True and saved["enabled"] is True
    # Saving the masked value back keeps the key; the saved key still tests.
    again = client.post("/api/integrations/pagerduty", json={**settings, "apiKey": "••••1234"}, headers=headers)
    assert again.json()["apiKey"] == "••••1234"
    assert client.post("/api/integrations/pagerduty/test", json={}, headers=headers).json()["ok"] is True

    # Applied to the live endpoint: unsigned webhooks are refused now, signed ones taken.
    assert server.post("/api/webhooks/pagerduty", SEED_WEBHOOK).status_code == 401
    body = json.dumps(SEED_WEBHOOK).encode()
    signed = {"x-pagerduty-signature": pagerduty_signature(body, SECRET)}
    assert server.post("/api/webhooks/pagerduty", content=body, headers=signed).status_code == 200

    # Never stored, returned or logged in the clear.
    stored = stored_bytes(server.store)
    for secret in (API_KEY, SECRET):
        assert secret.encode() not in stored and secret not in server.logs()

    # It survives a restart, and turning it off refuses webhooks.
    server.stop()
    server.start()
    assert server.post("/api/webhooks/pagerduty", SEED_WEBHOOK).status_code == 401
    off = client.post("/api/integrations/pagerduty", json={"enabled": False}, headers=headers)
    assert off.json()["enabled"] is False
    assert server.post("/api/webhooks/pagerduty", content=body, headers=signed).status_code == 404


def test_without_a_secret_key_nothing_secret_is_saved(server_factory: Callable[..., Server]) -> None:
    server = server_factory(EXAMPLES / "pagerduty-inbox.yaml")
    answer = server.client.post("/api/integrations/pagerduty", json={"apiKey": "k" * 20}, headers=admin(server))
    assert answer.status_code == 409 and "ALERTBRIDGE_SECRET_KEY" in answer.json()["error"]


def test_connection_tests_for_pagerduty_and_opsgenie_keys(
    server_factory: Callable[..., Server], pagerduty: FakePagerDutyREST
) -> None:
    from .fakes.opsgenie import FakeOpsgenie

    with FakeOpsgenie("og-key") as opsgenie:
        server = server_factory(EXAMPLES / "pagerduty-inbox.yaml")
        headers = admin(server)

        def check(kind: str, key: str, url: str) -> object:
            body = {"kind": kind, "api_key": key, "url": url}
            return server.client.post("/api/v1/integrations/test", json=body, headers=headers).json()

        assert check("pagerduty", API_KEY, pagerduty.url) == {"ok": True, "message": "PagerDuty accepted the API key"}
        assert check("pagerduty", "nope", pagerduty.url) == {"ok": False, "message": "PagerDuty refused the API key"}
        assert check("opsgenie", "og-key", opsgenie.url) == {"ok": True, "message": "Opsgenie accepted the API key"}
        assert check("opsgenie", "nope", opsgenie.url) == {"ok": False, "message": "Opsgenie refused the API key"}
        assert check("opsgenie", "og-key", "http://127.0.0.1:9")["ok"] is False  # unreachable


def test_a_secret_from_the_configuration_file_is_reported_as_set(server_factory: Callable[..., Server]) -> None:
    """webhookSecretSet says whether webhooks must be signed: the file's secret counts as much as a saved one."""
    server = server_factory(EXAMPLES / "pagerduty-inbox.yaml", {"PAGERDUTY_WEBHOOK_SECRET": SECRET})
    headers = admin(server)
    assert server.post("/api/webhooks/pagerduty", SEED_WEBHOOK).status_code == 401  # enforced
    assert server.client.get("/api/integrations/pagerduty", headers=headers).json()["webhookSecretSet"] is True
    # Saving other settings does not make it forget the file's secret.
    saved = server.client.post("/api/integrations/pagerduty", json={"integrationKey": "R0UTING"}, headers=headers)
    assert saved.json()["webhookSecretSet"] is True
    assert server.post("/api/webhooks/pagerduty", SEED_WEBHOOK).status_code == 401
