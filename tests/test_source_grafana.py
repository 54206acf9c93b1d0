"""Grafana Alerting's webhook contact point, over real HTTP: Grafana's documented example payload,
signed here with hmac as Grafana's docs describe it (hex HMAC-SHA256 of `timestamp:body`, or of the
body alone without a timestamp header), independently of the verifier."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import Server

SECRET = "grafana-hmac-5d0c7a"
TOKEN = "grafana-bearer-93e1"
SIGNED_PATH, BODY_ONLY_PATH, TOKEN_PATH = "/webhooks/grafana", "/webhooks/grafana-plain", "/webhooks/grafana-token"

CONFIG = """
endpoints:
  - name: grafana
    source: grafana
    path: /webhooks/grafana
    hmac:
      secret: ${GRAFANA_SECRET}
      timestamp_header: X-Grafana-Alerting-Signature-Timestamp
  - name: grafana-plain
    source: grafana
    path: /webhooks/grafana-plain
    hmac: { secret: "${GRAFANA_SECRET}", header: X-Signature }
  - name: grafana-token
    source: grafana
    path: /webhooks/grafana-token
    token: ${GRAFANA_TOKEN}
"""

# The example of Grafana's docs ("Configure webhook notifications", JSON payload), as published.
EXAMPLE: dict[str, Any] = {
    "receiver": "My Super Webhook",
    "status": "firing",
    "orgId": 1,
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "High memory usage", "team": "blue", "zone": "us-1"},
            "annotations": {
                "description": "The system has high memory usage",
                "runbook_url": "https://myrunbook.com/runbook/1234",
                "summary": "This alert was triggered for zone us-1",
            },
            "startsAt": "2021-10-12T09:51:03.157076+02:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://play.grafana.org/alerting/1afz29v7z/edit",
            "fingerprint": "c6eadffa33fcdf37",
            "silenceURL": "https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT2%2Cteam%3Dblue%2Czone%3Dus-1",
            "dashboardURL": "",
            "panelURL": "",
            "values": {"B": 44.23943737541908, "C": 1},
        },
        {
            "status": "firing",
            "labels": {"alertname": "High CPU usage", "team": "blue", "zone": "eu-1"},
            "annotations": {
                "description": "The system has high CPU usage",
                "runbook_url": "https://myrunbook.com/runbook/1234",
                "summary": "This alert was triggered for zone eu-1",
            },
            "startsAt": "2021-10-12T09:56:03.157076+02:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://play.grafana.org/alerting/d1rdpdv7k/edit",
            "fingerprint": "bc97ff14869b13e3",
            "silenceURL": "https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT1%2Cteam%3Dblue%2Czone%3Deu-1",
            "dashboardURL": "",
            "panelURL": "",
            "values": {"B": 44.23943737541908, "C": 1},
        },
    ],
    "groupLabels": {},
    "commonLabels": {"team": "blue"},
    "commonAnnotations": {},
    "externalURL": "https://play.grafana.org/",
    "version": "1",
    "groupKey": "{}:{}",
    "truncatedAlerts": 0,
    "title": "[FIRING:2]  (blue)",
    "state": "alerting",
    "message": (
        "**Firing**\n"
        "\n"
        "Labels:\n"
        " - alertname = T2\n"
        " - team = blue\n"
        " - zone = us-1\n"
        "Annotations:\n"
        " - description = This is the alert rule checking the second system\n"
        " - runbook_url = https://myrunbook.com\n"
        " - summary = This is my summary\n"
        "Source: https://play.grafana.org/alerting/1afz29v7z/edit\n"
        "Silence: https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT2%2Cteam%3Dblue%2Czone%3Dus-1\n"
        "\n"
        "Labels:\n"
        " - alertname = T1\n"
        " - team = blue\n"
        " - zone = eu-1\n"
        "Annotations:\n"
        "Source: https://play.grafana.org/alerting/d1rdpdv7k/edit\n"
        "Silence: https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT1%2Cteam%3Dblue%2Czone%3Deu-1\n"
    ),
}


def signed(body: bytes, timestamp: int | str | None = None, secret: str = SECRET) -> dict[str, str]:
    """Grafana's headers: the hex HMAC-SHA256 of `timestamp:body` (of the body alone without a timestamp)."""
    if timestamp is None:
        return {"X-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}
    message = f"{timestamp}:".encode() + body
    return {
        "X-Grafana-Alerting-Signature": hmac.new(secret.encode(), message, hashlib.sha256).hexdigest(),
        "X-Grafana-Alerting-Signature-Timestamp": str(timestamp),
    }


@pytest.fixture
def server(server_factory: Callable[..., Server]) -> Server:
    return server_factory(CONFIG, {"GRAFANA_SECRET": SECRET, "GRAFANA_TOKEN": TOKEN})


def test_grafanas_example_signed_with_a_timestamp_is_one_event_per_alert(server: Server) -> None:
    body = json.dumps(EXAMPLE).encode()
    answer = server.post(SIGNED_PATH, content=body, headers=signed(body, int(time.time())))
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["events"]) == 2
    events = {row["event"]["dedup_key"]: row["event"] for row in server.events()}
    assert sorted(events) == ["bc97ff14869b13e3", "c6eadffa33fcdf37"]
    memory = events["c6eadffa33fcdf37"]
    assert memory["kind"] == "grafana.firing"
    assert memory["subject"] == {"system": "grafana", "type": "alert", "id": "c6eadffa33fcdf37"}
    assert memory["title"] == "This alert was triggered for zone us-1"
    assert memory["description"] == "The system has high memory usage"
    assert memory["status"] == "firing"
    assert memory["occurred_at"] == "2021-10-12T09:51:03.157076+02:00"
    assert memory["url"] == "https://play.grafana.org/alerting/1afz29v7z/edit"  # no panel or dashboard link
    assert memory["labels"] == {"alertname": "High memory usage", "team": "blue", "zone": "us-1"}
    assert memory["identifiers"]["grafana_org_id"] == "1"
    assert memory["identifiers"]["alertname"] == "High memory usage"
    assert memory["raw"]["alert"]["values"] == {"B": 44.23943737541908, "C": 1}
    assert memory["raw"]["state"] == "alerting" and memory["raw"]["title"] == "[FIRING:2]  (blue)"
    assert events["bc97ff14869b13e3"]["title"] == "This alert was triggered for zone eu-1"


def test_a_redelivery_is_stored_once_and_a_resolve_is_new(server: Server) -> None:
    body = json.dumps(EXAMPLE).encode()
    first = server.post(SIGNED_PATH, content=body, headers=signed(body, int(time.time()))).json()
    # Grafana sends the group again later: a new timestamp and signature, the same alerts.
    again = server.post(SIGNED_PATH, content=body, headers=signed(body, int(time.time()) + 1)).json()
    assert again == {**first, "duplicate": True}
    resolved = copy.deepcopy(EXAMPLE)
    resolved["alerts"][0].update(status="resolved", endsAt="2021-10-12T10:01:03.157076+02:00")
    resolved["alerts"][0]["panelURL"] = "https://play.grafana.org/d/abc?viewPanel=2"
    body = json.dumps(resolved).encode()
    answer = server.post(SIGNED_PATH, content=body, headers=signed(body, int(time.time()))).json()
    assert answer["duplicate"] is False
    (event,) = [row["event"] for row in server.events() if row["event"]["kind"] == "grafana.resolved"]
    assert event["dedup_key"] == "c6eadffa33fcdf37"
    assert event["occurred_at"] == "2021-10-12T10:01:03.157076+02:00"
    assert event["url"] == "https://play.grafana.org/d/abc?viewPanel=2"
    assert len(server.events()) == 3


def test_a_signature_of_the_body_alone_without_a_timestamp_header(server: Server) -> None:
    body = json.dumps(EXAMPLE).encode()
    assert server.post(BODY_ONLY_PATH, content=body, headers=signed(body)).status_code == 200
    wrong = signed(body, secret="another-secret")
    assert server.post(BODY_ONLY_PATH, content=body, headers=wrong).status_code == 403


def headers_for(case: str, body: bytes) -> dict[str, str]:
    now = int(time.time())
    good = signed(body, now)
    return {
        "no signature": {},
        "no timestamp": {"X-Grafana-Alerting-Signature": good["X-Grafana-Alerting-Signature"]},
        "wrong secret": signed(body, now, secret="not-the-secret"),
        "another body": signed(body + b" ", now),
        "timestamp changed": {**good, "X-Grafana-Alerting-Signature-Timestamp": str(now - 1)},
        "stale": signed(body, now - 400),
        "from the future": signed(body, now + 400),
        "not a number": signed(body, "soon"),
        "thousands of digits": signed(body, "9" * 5000),  # int() of it raises: refused before
    }[case]


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("no signature", 401, "X-Grafana-Alerting-Signature header is required"),
        ("no timestamp", 401, "X-Grafana-Alerting-Signature-Timestamp header is required"),
        ("wrong secret", 403, "does not match"),
        ("another body", 403, "does not match"),
        ("timestamp changed", 403, "does not match"),
        ("stale", 403, "more than 300 s from now"),
        ("from the future", 403, "more than 300 s from now"),
        ("not a number", 403, "not a Unix time"),
        ("thousands of digits", 403, "not a Unix time"),
    ],
)
def test_bad_signatures_are_refused_and_nothing_is_stored(server: Server, case: str, status: int, message: str) -> None:
    body = json.dumps(EXAMPLE).encode()
    answer = server.post(SIGNED_PATH, content=body, headers=headers_for(case, body))
    assert answer.status_code == status
    assert message in answer.json()["error"]
    assert SECRET not in answer.text and SECRET not in server.logs()
    assert "Traceback" not in server.logs()
    assert server.events() == []


def test_the_authorization_header_grafana_sends(server: Server) -> None:
    body = json.dumps(EXAMPLE).encode()
    assert server.post(TOKEN_PATH, content=body).status_code == 401
    assert server.post(TOKEN_PATH, content=body, headers={"authorization": "Bearer nope"}).status_code == 403
    assert server.events() == []
    assert server.post(TOKEN_PATH, content=body, headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert len(server.events()) == 2


@pytest.mark.parametrize("source", ["grafana", "alertmanager"])
def test_an_endpoint_without_a_credential_is_a_check_error(server_factory: Callable[..., Server], source: str) -> None:
    config = f"endpoints:\n  - name: open\n    source: {source}\n    path: /open\n"
    server = server_factory(config, start=False)
    result = server.cli("check", "--config", str(server.config), check=False)
    assert result.returncode == 1
    assert "needs a credential" in result.stderr
