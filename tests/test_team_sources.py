"""Seed 004's senders over real HTTP: Slack, GitHub, incident.io and any JSON sender.

Slack requests are signed with Slack's SDK, incident.io's with the Standard Webhooks library, and
GitHub's with a helper written from GitHub's documentation, over GitHub's published examples.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_sdk.signature import SignatureVerifier
from standardwebhooks.webhooks import Webhook

from .conftest import ROOT, Server

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
GITHUB_SECRET = "It's a Secret to Everybody"
INCIDENTIO_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
EXAMPLES = ROOT / ".venv" / "share" / "octokit-webhooks-examples" / "package" / "api.github.com" / "index.json"

CONFIG = """
endpoints:
  - name: slack-events
    source: slack
    path: /webhooks/slack/events
    signing_secret: ${SLACK_SECRET}
  - name: slack-interactions
    source: slack
    path: /webhooks/slack/interactions
    signing_secret: ${SLACK_SECRET}
  - name: github
    source: github
    path: /webhooks/github
    secret: ${GITHUB_SECRET}
  - name: incidentio
    source: incidentio
    path: /webhooks/incidentio
    secret: ${INCIDENTIO_SECRET}
  - name: coralogix
    source: generic
    path: /webhooks/coralogix
    hmac:
      secret: ${GENERIC_SECRET}
      header: X-Coralogix-Signature
      algorithm: sha256
      encoding: base64
      prefix: "v1="
    fields:
      kind: "'coralogix.alert'"
      delivery_key: uuid
      title: name
      severity: priority
      service: "fields[?key=='service'].value | [0]"
      dedup_key: alert_id
      tags: labels[*].name
      identifiers:
        coralogix_team_name: team_name
"""


@pytest.fixture
def server(server_factory: Callable[..., Server]) -> Server:
    env = {
        "SLACK_SECRET": SLACK_SECRET,
        "GITHUB_SECRET": GITHUB_SECRET,
        "INCIDENTIO_SECRET": INCIDENTIO_SECRET,
        "GENERIC_SECRET": "coralogix-secret",
    }
    return server_factory(CONFIG, env)


def slack_post(
    server: Server, path: str, body: bytes, *, age: float = 0, retry: int | None = None, form: bool = False
) -> Any:
    timestamp = str(int(time.time() - age))
    headers = {
        "x-slack-request-timestamp": timestamp,
        "x-slack-signature": SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=timestamp, body=body),
        "content-type": "application/x-www-form-urlencoded" if form else "application/json",
    }
    if retry is not None:
        headers["x-slack-retry-num"] = str(retry)
        headers["x-slack-retry-reason"] = "http_timeout"
    return server.client.post(path, content=body, headers=headers)


def app_mention(event_id: str = "Ev0A4967KRBM") -> bytes:
    return json.dumps(
        {
            "token": "verification-token",
            "team_id": "T0001",
            "api_app_id": "A0001",
            "type": "event_callback",
            "event_id": event_id,
            "event_time": 1_795_000_000,
            "event": {
                "type": "app_mention",
                "user": "U0001",
                "text": "<@U0BOT> Investigate error spike",
                "ts": "1795000000.000100",
                "channel": "C0A4967KRBM",
                "event_ts": "1795000000.000100",
            },
        }
    ).encode()


def test_slack_url_verification_is_answered_once_signed(server: Server) -> None:
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    body = json.dumps({"token": "t", "challenge": challenge, "type": "url_verification"})
    answer = slack_post(server, "/webhooks/slack/events", body.encode())
    assert answer.status_code == 200
    assert answer.json() == {"challenge": challenge}
    unsigned = server.post("/webhooks/slack/events", content=body.encode())
    assert unsigned.status_code == 401
    assert server.events() == []


def test_slack_event_retries_and_stale_requests(server: Server) -> None:
    assert slack_post(server, "/webhooks/slack/events", app_mention()).status_code == 200
    # Slack retries after 3 s even when the first answer was only late: the same event_id, stored once.
    retried = slack_post(server, "/webhooks/slack/events", app_mention(), retry=1)
    assert retried.status_code == 200 and retried.json()["duplicate"] is True
    (event,) = server.events()
    stored = event["event"]
    assert stored["kind"] == "slack.app_mention"
    assert stored["identifiers"] == {
        "slack_channel_id": "C0A4967KRBM",
        "slack_team_id": "T0001",
        "slack_user_id": "U0001",
        "slack_event_id": "Ev0A4967KRBM",
    }
    assert stored["title"] == "<@U0BOT> Investigate error spike"

    stale = slack_post(server, "/webhooks/slack/events", app_mention("Ev2"), age=6 * 60)
    assert stale.status_code == 403 and "five minutes" in stale.json()["error"]
    assert server.metric("alertbridge_requests_refused_total", endpoint="slack-events", reason="stale_timestamp") == 1
    tampered = app_mention("Ev3").replace(b"Investigate", b"Ignore")
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=timestamp, body=app_mention("Ev3"))
    headers = {"x-slack-request-timestamp": timestamp, "x-slack-signature": signature}
    assert server.client.post("/webhooks/slack/events", content=tampered, headers=headers).status_code == 403
    assert len(server.events()) == 1


def test_the_seeds_slack_example_and_interactions(server: Server) -> None:
    seed = b'{"event": {"type": "app_mention", "channel": "C0A4967KRBM", "text": "Investigate error spike"}}'
    assert slack_post(server, "/webhooks/slack/events", seed).status_code == 200
    payload = {
        "type": "block_actions",
        "user": {"id": "U0002", "username": "bob", "team_id": "T0001"},
        "team": {"id": "T0001", "domain": "acme"},
        "channel": {"id": "C0A4967KRBM", "name": "incidents"},
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        "message": {"ts": "1795000000.000200", "text": "Run the investigation?"},
        "actions": [{"action_id": "run", "type": "button", "value": "investigate", "action_ts": "1795000001.1"}],
    }
    form = urlencode({"payload": json.dumps(payload)}).encode()
    assert slack_post(server, "/webhooks/slack/interactions", form, form=True).status_code == 200
    kinds = {e["event"]["kind"]: e["event"] for e in server.events()}
    assert kinds["slack.app_mention"]["identifiers"]["slack_channel_id"] == "C0A4967KRBM"
    click = kinds["slack.interaction.block_actions"]
    assert (click["actor"], click["actor_name"], click["title"]) == ("U0002", "bob", "investigate")
    assert click["identifiers"]["slack_channel_id"] == "C0A4967KRBM"
    assert click["subject"] == {"system": "slack", "type": "message", "id": "C0A4967KRBM:1795000000.000200"}


def github_post(
    server: Server, name: str, payload: Any, delivery: str | None = None, path: str = "/webhooks/github"
) -> Any:
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "x-github-event": name,
        "x-github-delivery": delivery or str(uuid.uuid4()),
        "x-hub-signature-256": signature,
        "content-type": "application/json",
        "user-agent": "GitHub-Hookshot/044aadd",
    }
    return server.client.post(path, content=body, headers=headers)


def github_examples() -> dict[str, list[dict[str, Any]]]:
    assert EXAMPLES.exists(), f"{EXAMPLES} is missing: ./scripts/setup fetches it from the npm registry"
    return {entry["name"]: entry["examples"] for entry in json.loads(EXAMPLES.read_text())}


def test_githubs_published_examples(server: Server) -> None:
    examples = github_examples()
    sent: list[tuple[str, dict[str, Any]]] = []
    for name in ("pull_request", "issues", "workflow_run", "check_run", "push", "release"):
        for payload in examples[name][:6]:
            assert github_post(server, name, payload).status_code == 200, (name, payload.get("action"))
            sent.append((name, payload))
    for payload in examples["ping"]:
        answer = github_post(server, "ping", payload)
        assert answer.status_code == 200 and answer.json()["events"] == []
    stored = [e["event"] for e in server.events()]
    assert len(stored) == len(sent)  # pings are answered, not stored
    by_kind: dict[str, int] = {}
    for event in stored:
        by_kind[event["kind"]] = by_kind.get(event["kind"], 0) + 1
    expected: dict[str, int] = {}
    for name, payload in sent:
        kind = f"github.{name}.{payload['action']}" if payload.get("action") else f"github.{name}"
        expected[kind] = expected.get(kind, 0) + 1
    assert by_kind == expected
    for (_, payload), event in zip(sent, reversed(stored), strict=True):
        if payload.get("repository"):
            assert event["identifiers"]["github_repo"] == payload["repository"]["full_name"]
    pr = next(e for e in stored if e["kind"].startswith("github.pull_request."))
    assert pr["subject"]["type"] == "pull_request" and "#" in pr["subject"]["id"]


def test_github_redelivery_and_bad_signatures(server: Server) -> None:
    payload = github_examples()["issues"][0]
    assert github_post(server, "issues", payload, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958").status_code == 200
    again = github_post(server, "issues", payload, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert again.json()["duplicate"] is True
    body = json.dumps(payload).encode()
    headers = {"x-github-event": "issues", "x-github-delivery": "d2", "x-hub-signature-256": "sha256=" + "0" * 64}
    assert server.client.post("/webhooks/github", content=body, headers=headers).status_code == 403
    assert server.client.post("/webhooks/github", content=body, headers={"x-github-event": "issues"}).status_code == 401
    assert len(server.events()) == 1


def incidentio_post(server: Server, payload: Any, message_id: str = "msg_p5jXN8AQM9LWM0D4loKWxJek") -> Any:
    body = json.dumps(payload)
    now = int(time.time())
    import datetime as dt

    signature = Webhook(INCIDENTIO_SECRET).sign(message_id, dt.datetime.fromtimestamp(now, dt.UTC), body)
    headers = {"webhook-id": message_id, "webhook-timestamp": str(now), "webhook-signature": signature}
    return server.client.post("/webhooks/incidentio", content=body.encode(), headers=headers)


def test_incidentio_incidents_alerts_and_private_events(server: Server) -> None:
    incident = {
        "event_type": "public_incident.incident_created_v2",
        "public_incident.incident_created_v2": {
            "id": "01HZ0000000000000000000001",
            "reference": "INC-123",
            "name": "Database is down",
            "summary": "Customer reports the API is returning 500s",
            "permalink": "https://app.incident.io/incidents/123",
            "incident_status": {"id": "s1", "name": "Investigating", "category": "live", "rank": 10},
            "severity": {"id": "sev1", "name": "Major", "rank": 100},
            "slack_channel_id": "C0123",
            "team_ids": ["01TEAM0000000000000000000A"],
        },
    }
    alert = {
        "event_type": "public_alert.alert_created_v1",
        "alert_source_config_id": "01KEGMSPPCKFPYHT2ZSNQ7WY3J",
        "public_alert.alert_created_v1": {
            "id": "01ALERT",
            "alert_source_id": "01KEGMSPPCKFPYHT2ZSNQ7WY3J",
            "title": "High error rate",
            "status": "firing",
            "deduplication_key": "checkout-5xx",
            "source_url": "https://grafana.example.com/d/abc",
        },
    }
    private = {
        "event_type": "private_incident.incident_created_v2",
        "private_incident.incident_created_v2": {"id": "01P"},
    }
    for n, payload in enumerate([incident, alert, private]):
        assert incidentio_post(server, payload, f"msg_{n}").status_code == 200
    assert incidentio_post(server, incident, "msg_0").json()["duplicate"] is True  # Svix retries: same webhook-id
    events = {e["event"]["kind"]: e["event"] for e in server.events()}
    created = events["incidentio.public_incident.incident_created_v2"]
    assert (created["title"], created["severity"], created["status"]) == ("Database is down", "Major", "Investigating")
    assert created["identifiers"]["incidentio_team_id"] == "01TEAM0000000000000000000A"
    assert created["identifiers"]["slack_channel_id"] == "C0123"
    fired = events["incidentio.public_alert.alert_created_v1"]
    assert fired["identifiers"]["incidentio_alert_source_id"] == "01KEGMSPPCKFPYHT2ZSNQ7WY3J"
    assert fired["dedup_key"] == "checkout-5xx"
    assert events["incidentio.private_incident.incident_created_v2"]["subject"]["id"] == "01P"
    bad = server.client.post(
        "/webhooks/incidentio",
        content=b"{}",
        headers={"webhook-id": "x", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,AAAA"},
    )
    assert bad.status_code == 403


def test_a_generic_sender_mapped_by_jmespath(server: Server) -> None:
    import base64

    payload = {
        "uuid": "5f3c",
        "alert_id": "cx-42",
        "name": "Checkout latency p99 > 2s",
        "priority": "critical",
        "team_name": "otel-demo",
        "fields": [{"key": "service", "value": "checkout"}],
        "labels": [{"name": "latency"}, {"name": "prod"}],
    }
    body = json.dumps(payload).encode()
    digest = base64.b64encode(hmac.new(b"coralogix-secret", body, hashlib.sha256).digest()).decode()
    answer = server.client.post("/webhooks/coralogix", content=body, headers={"x-coralogix-signature": f"v1={digest}"})
    assert answer.status_code == 200
    (event,) = [e["event"] for e in server.events()]
    assert (event["kind"], event["title"], event["severity"], event["dedup_key"]) == (
        "coralogix.alert",
        "Checkout latency p99 > 2s",
        "critical",
        "cx-42",
    )
    assert event["service"] == {"name": "checkout"} and event["tags"] == ["latency", "prod"]
    assert event["identifiers"] == {"coralogix_team_name": "otel-demo", "service": "checkout"}
    wrong = server.client.post("/webhooks/coralogix", content=body, headers={"x-coralogix-signature": "v1=AAAA"})
    assert wrong.status_code == 403


def test_a_jmespath_expression_that_does_not_compile_is_a_check_error(server_factory: Callable[..., Server]) -> None:
    config = """
endpoints:
  - name: grafana
    source: generic
    path: /webhooks/grafana
    token: t
    fields:
      title: "alerts[0].labels.alertname"
      severity: "alerts[?status=='firing'"
"""
    server = server_factory(config, start=False)
    result = server.cli("check", "--config", str(server.config), check=False)
    assert result.returncode == 1
    assert "alertbridge.yaml:9: endpoints[0].fields.severity:" in result.stderr
    assert "is not a JMESPath expression" in result.stderr


def test_every_source_documents_its_identifiers() -> None:
    from alertbridge import sources

    for name in ("slack", "github", "incidentio", "generic", "pagerduty", "opsgenie"):
        doc = sources.get(name).parse.__module__
        text = Path(__import__(doc, fromlist=["x"]).__file__).read_text()
        assert "identifiers" in text.split('"""')[1], f"{name} does not document its identifiers"
