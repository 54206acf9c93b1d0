"""Seed 004 end to end: events find the team that owns them and reach its agent with its token.

The example configuration runs as shipped; the agent and Slack are fakes over real HTTP.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from .backends import stored_bytes
from .conftest import EXAMPLES, Server, wait_until
from .fakes.agent import FakeAgent
from .fakes.slack import FakeSlack
from .signing import pagerduty_signature
from .test_team_sources import app_mention, github_post, slack_post

AGENT_SECRET = "whsec_c2VjcmV0LWtleS1mb3ItYWdlbnRzLTAxMjM0NTY3"
TEAM_TOKEN = "55a3eb51-team-token-extend-sre"
OTHER_TOKEN = "9c1d7e20-team-token-payments"
INTERNAL = "internal-credential"

EXTRA_TEAM = """
  - name: payments
    org: extend
    token: ${TEAM_TOKEN_PAYMENTS}
    routing:
      pagerduty_service_ids: [PSVCPAY]
      services: [payment]
      incidentio_alert_source_ids: [01KEGMSPPCKFPYHT2ZSNQ7WY3J]
"""


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack("xoxb-test", ("C0A4967KRBM",)) as fake:
        yield fake


def start(server_factory: Callable[..., Server], agent_url: str, slack: FakeSlack, tmp_path: Any) -> Server:
    text = (EXAMPLES / "team-routing.yaml").read_text()
    text = text.replace("routing:                            # more", "routing:  # more", 1)
    text = text.replace("\nrouting:\n", "\n" + EXTRA_TEAM.strip("\n") + "\n\nrouting:\n", 1)
    # Retries about 0.5 s then 1 s apart: room for a test to bring the agent back between them, even
    # when one `deliveries list` from the CLI takes most of a second on a busy machine.
    text = text.replace("retry: { max_attempts: 6, backoff_cap: 60 }", "retry: { max_attempts: 3, backoff_base: 1.0 }")
    env = {
        "SLACK_SIGNING_SECRET": "8f742231b10e8888abcd99yyyzzz85a5",
        "GITHUB_WEBHOOK_SECRET": "It's a Secret to Everybody",
        "PAGERDUTY_WEBHOOK_SECRET": "pd-secret",
        "INCIDENTIO_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "AGENT_URL": agent_url,
        "AGENT_SECRET": AGENT_SECRET,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_API_URL": f"{slack.url}/api",
        "INTERNAL_TOKEN": INTERNAL,
        "TEAM_TOKEN_EXTEND_SRE": TEAM_TOKEN,
        "TEAM_TOKEN_PAYMENTS": OTHER_TOKEN,
    }
    return server_factory(text, env)


def pd_post(server: Server, service: str, event_id: str) -> httpx.Response:
    body = json.dumps(
        {
            "event": {
                "id": event_id,
                "event_type": "incident.triggered",
                "agent": None,
                "data": {
                    "id": f"P{event_id}",
                    "type": "incident",
                    "title": "Checkout is slow",
                    "service": {"id": service, "type": "service_reference", "summary": "checkout"},
                },
            }
        }
    ).encode()
    headers = {"x-pagerduty-signature": pagerduty_signature(body, "pd-secret")}
    return server.post("/webhooks/pagerduty", content=body, headers=headers)


def incidentio_post(server: Server, payload: Any, message_id: str) -> httpx.Response:
    body = json.dumps(payload)
    now = dt.datetime.now(dt.UTC)
    signature = Webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").sign(message_id, now, body)
    headers = {"webhook-id": message_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}
    return server.client.post("/webhooks/incidentio", content=body.encode(), headers=headers)


def trace_of(server: Server, kind_prefix: str) -> list[dict[str, Any]]:
    (event,) = [e for e in server.events() if e["event"]["kind"].startswith(kind_prefix)]
    return list(event["trace"])


def test_each_identifier_and_the_priority_order(
    server_factory: Callable[..., Server], slack: FakeSlack, tmp_path: Any
) -> None:
    with FakeAgent(AGENT_SECRET, mode="silent") as agent:
        server = start(server_factory, f"{agent.url}/agent", slack, tmp_path)
        assert slack_post(server, "/webhooks/slack/events", app_mention()).status_code == 200
        assert (
            github_post(
                server, "issues", {"action": "opened", "repository": {"full_name": "incidentfox/mono-repo"}}
            ).status_code
            == 200
        )
        assert pd_post(server, "PSVCPAY", "E1").status_code == 200
        # incident.io: the alert source belongs to payments, but the slack channel (higher) to extend-sre.
        alert = {
            "event_type": "public_alert.alert_created_v1",
            "public_alert.alert_created_v1": {
                "id": "01A",
                "title": "5xx",
                "alert_source_id": "01KEGMSPPCKFPYHT2ZSNQ7WY3J",
            },
        }
        assert incidentio_post(server, alert, "msg-1").status_code == 200
        wait_until(lambda: len(agent.forwards) == 4, 15, "four forwards")
        sent = {
            f["type"]: (f["context"], r.headers.get("x-team-token"))
            for f, r in zip(agent.forwards, agent.requests, strict=True)
        }
        assert sent["slack.app_mention"] == ({"team": "extend-sre", "matched_by": "slack_channel_id"}, TEAM_TOKEN)
        assert sent["github.issues.opened"] == ({"team": "extend-sre", "matched_by": "github_repo"}, TEAM_TOKEN)
        assert sent["incident.triggered"] == ({"team": "payments", "matched_by": "pagerduty_service_id"}, OTHER_TOKEN)
        assert sent["incidentio.public_alert.alert_created_v1"] == (
            {"team": "payments", "matched_by": "incidentio_alert_source_id"},
            OTHER_TOKEN,
        )
        assert all(agent.verified)
        assert trace_of(server, "slack.")[0] == {
            "team": "extend-sre",
            "matched_by": "slack_channel_id",
            "identifier": "C0A4967KRBM",
        }
        assert server.metric("alertbridge_team_events_total", source="pagerduty", team="payments") == 1


def test_priority_decides_between_two_teams(
    server_factory: Callable[..., Server], slack: FakeSlack, tmp_path: Any
) -> None:
    with FakeAgent(AGENT_SECRET, mode="silent") as agent:
        server = start(server_factory, f"{agent.url}/agent", slack, tmp_path)
        # pagerduty_service_id (payments) outranks service and slack_channel_id.
        incident = {
            "event_type": "public_incident.incident_created_v2",
            "public_incident.incident_created_v2": {"id": "01I", "name": "DB down", "slack_channel_id": "C0A4967KRBM"},
            "alert_source_config_id": "01KEGMSPPCKFPYHT2ZSNQ7WY3J",
        }
        assert incidentio_post(server, incident, "msg-2").status_code == 200
        wait_until(lambda: agent.forwards, 15, "the forward")
        # slack_channel_id (extend-sre) ranks above incidentio_alert_source_id (payments).
        assert agent.forwards[0]["context"]["team"] == "extend-sre"
        assert agent.forwards[0]["context"]["matched_by"] == "slack_channel_id"


def test_claims_through_the_api_and_a_conflict(
    server_factory: Callable[..., Server], slack: FakeSlack, tmp_path: Any
) -> None:
    server = start(server_factory, "http://127.0.0.1:9/agent", slack, tmp_path)
    client = server.client
    assert client.get("/api/v1/config/me").status_code == 401
    assert client.get("/api/v1/config/me", headers={"Authorization": "Bearer nope"}).status_code == 403
    me = client.get("/api/v1/config/me", headers={"Authorization": f"Bearer {TEAM_TOKEN}"}).json()
    assert me["team"] == "extend-sre" and me["routing"]["slack_channel_ids"] == ["C0A4967KRBM"]

    # The seed's example request, as written.
    seed = {"routing": {"slack_channel_ids": ["C0A4967KRBM"], "services": ["payment-api"]}}
    answer = client.put("/api/v1/config/me", json=seed, headers={"Authorization": f"Bearer {TEAM_TOKEN}"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["routing"]["services"] == ["payment-api"]

    # payments cannot take extend-sre's channel: 409, and nothing of the request is applied.
    grab = {"routing": {"slack_channel_ids": ["C0A4967KRBM"], "github_repos": ["acme/payments"]}}
    refused = client.put("/api/v1/config/me", json=grab, headers={"Authorization": f"Bearer {OTHER_TOKEN}"})
    assert refused.status_code == 409
    assert refused.json()["conflicts"] == [
        {"identifier": "slack_channel_id", "value": "C0A4967KRBM", "team": "extend-sre"}
    ]
    mine = client.get("/api/v1/config/me", headers={"Authorization": f"Bearer {OTHER_TOKEN}"}).json()
    assert mine["routing"]["github_repos"] == [] and mine["routing"]["slack_channel_ids"] == []
    bad = client.put(
        "/api/v1/config/me", json={"routing": {"slack": ["x"]}}, headers={"Authorization": f"Bearer {OTHER_TOKEN}"}
    )
    assert bad.status_code == 400 and "unknown routing key" in bad.json()["error"]

    # The internal lookup, as the seed documents it, only with the internal credential.
    lookup = {"identifiers": {"slack_channel_id": "C0A4967KRBM"}}
    seed_headers = {"X-Internal-Service": "orchestrator"}
    assert client.post("/api/v1/internal/routing/lookup", json=lookup, headers=seed_headers).status_code == 401
    headers = {**seed_headers, "X-Internal-Token": INTERNAL}
    assert client.post("/api/v1/internal/routing/lookup", json=lookup, headers=headers).json() == {
        "found": True,
        "org_id": "extend",
        "team_node_id": "extend-sre",
        "matched_by": "slack_channel_id",
        "team_token": TEAM_TOKEN,
    }
    unknown = {"identifiers": {"slack_channel_id": "C_UNKNOWN"}}
    assert client.post("/api/v1/internal/routing/lookup", json=unknown, headers=headers).json() == {
        "found": False,
        "error": "No team found for identifiers",
        "identifiers": {"slack_channel_id": "C_UNKNOWN"},
    }
    # Tokens are kept hashed: the database holds neither.
    raw = stored_bytes(server.store)
    assert TEAM_TOKEN.encode() not in raw and OTHER_TOKEN.encode() not in raw
    assert TEAM_TOKEN not in server.logs()


def test_no_team_is_answered_logged_and_visible(
    server_factory: Callable[..., Server], slack: FakeSlack, tmp_path: Any
) -> None:
    server = start(server_factory, "http://127.0.0.1:9/agent", slack, tmp_path)
    body = app_mention().replace(b"C0A4967KRBM", b"C_UNKNOWN")
    assert slack_post(server, "/webhooks/slack/events", body).status_code == 200
    wait_until(lambda: all(e["routed_at"] for e in server.events()), 10, "routed")
    trace = trace_of(server, "slack.")
    assert trace[0]["team"] is None and "slack_channel_id='C_UNKNOWN'" in trace[0]["why"]
    assert server.deliveries() == []
    assert '"event": "no_team"' in server.logs() or "no_team" in server.logs()
    assert server.metric("alertbridge_team_lookups_total", source="slack", result="not_found") == 1


def test_agent_down_then_back_and_down_for_good(
    server_factory: Callable[..., Server], slack: FakeSlack, tmp_path: Any
) -> None:
    agent = FakeAgent(AGENT_SECRET, mode="silent")
    server = start(server_factory, f"{agent.url}/agent", slack, tmp_path)
    try:
        # Down, then back before the retries run out: delivered once, nobody told in Slack.
        assert slack_post(server, "/webhooks/slack/events", app_mention("Ev-1")).status_code == 200
        # Watched on /metrics, not with `deliveries list`: the three attempts take about a second, which
        # a CLI process can take to start on a busy machine, and the agent must be back before the last.
        wait_until(
            lambda: server.metric("alertbridge_delivery_attempts_total", target="agent", outcome="retry") >= 1,
            10,
            "a failed attempt",
        )
        agent.start()
        wait_until(lambda: server.deliveries("delivered"), 15, "delivered once the agent is back")
        assert len(agent.forwards) == 1 and slack.messages == []
        agent.stop()

        # Down for good: after its retries, one message in the team's channel.
        assert slack_post(server, "/webhooks/slack/events", app_mention("Ev-2")).status_code == 200
        wait_until(lambda: slack.messages, 20, "the Slack error message")
        (message,) = slack.messages
        assert message["channel"] == "C0A4967KRBM"
        assert "could not deliver slack.app_mention" in message["text"] and "after 3 attempts" in message["text"]
        dead = server.deliveries("dead")
        assert [d["target"] for d in dead] == ["agent"]
        assert slack.validation_errors == []
    finally:
        agent.stop()


def queued_by(output: str) -> list[str]:
    """The delivery ids `alertbridge replay` says it queued."""
    return [line.split()[1] for line in output.splitlines() if line.startswith("queued ")]


def test_replaying_an_event_sends_its_work_again_not_its_alarm(
    server_factory: Callable[..., Server], slack: FakeSlack, tmp_path: Any
) -> None:
    """The Slack message tells the operator to `alertbridge replay EVENT_ID`: that re-sends the forward,
    and the team hears again only if the new attempt dies too."""
    agent = FakeAgent(AGENT_SECRET, mode="silent")
    server = start(server_factory, f"{agent.url}/agent", slack, tmp_path)
    try:
        assert slack_post(server, "/webhooks/slack/events", app_mention("Ev-1")).status_code == 200
        wait_until(lambda: slack.messages, 20, "the Slack error message")
        event_id = slack.messages[0]["text"].rsplit("alertbridge replay ", 1)[1].strip()
        (forward,) = [d for d in server.deliveries() if d["target"] == "agent"]
        assert forward["event_id"] == event_id and forward["status"] == "dead"

        # Still down: only the forward is queued again; once it dies again, the team is told again.
        assert queued_by(server.cli("replay", event_id).stdout) == [forward["id"]]
        wait_until(lambda: len(slack.messages) == 2, 20, "the second message, after the replay died")
        wait_until(lambda: server.deliveries("dead") and server.deliveries("pending") == [], 10, "settled")

        # Back: the replay delivers the forward, and nobody is told anything.
        agent.start()
        assert queued_by(server.cli("replay", event_id).stdout) == [forward["id"]]
        wait_until(lambda: agent.forwards, 15, "the forward replayed")
        wait_until(
            lambda: (
                all(d["status"] in ("delivered", "dead") for d in server.deliveries())
                and server.deliveries("dead") == []
            ),
            15,
            "every delivery settled",
        )
        assert len(agent.forwards) == 1 and len(slack.messages) == 2
        assert slack.validation_errors == []
    finally:
        agent.stop()


def test_a_refusal_is_reported_as_a_refusal_not_after_retries(
    server_factory: Callable[..., Server], slack: FakeSlack, tmp_path: Any
) -> None:
    """A 4xx is not retried: the team's message must say the agent refused, not that retries ran out."""
    with FakeAgent(AGENT_SECRET, mode="silent") as agent:
        agent.behave(400, body={"error": "unknown team extend-sre"})
        server = start(server_factory, f"{agent.url}/agent", slack, tmp_path)
        assert slack_post(server, "/webhooks/slack/events", app_mention("Ev-1")).status_code == 200
        wait_until(lambda: slack.messages, 20, "the Slack error message")
        (message,) = slack.messages
        assert "refused with 400 (unknown team extend-sre), not retried" in message["text"], message["text"]
        assert "after its retries" not in message["text"] and "attempts" not in message["text"]
        (dead,) = server.deliveries("dead")
        assert dead["attempts"] == 1 and len(agent.requests) == 1
        # Unreachable, by contrast: how many attempts were made before giving up.
        agent.stop()
        assert slack_post(server, "/webhooks/slack/events", app_mention("Ev-2")).status_code == 200
        wait_until(lambda: len(slack.messages) == 2, 20, "the second message")
        assert "after 3 attempts (last: could not reach agent" in slack.messages[1]["text"], slack.messages[1]["text"]


def test_the_answer_stays_fast_while_the_agent_is_slow(
    server_factory: Callable[..., Server], slack: FakeSlack, tmp_path: Any
) -> None:
    with FakeAgent(AGENT_SECRET, mode="silent") as agent:
        agent.hang()
        server = start(server_factory, f"{agent.url}/agent", slack, tmp_path)
        took = []
        for n in range(15):
            started = time.monotonic()
            assert slack_post(server, "/webhooks/slack/events", app_mention(f"Ev-{n}")).status_code == 200
            took.append(time.monotonic() - started)
        wait_until(lambda: len(agent.requests) >= 15, 15, "the forwards under way")
        # Slack's budget is 3 s; with the agent hanging every answer still comes at once.
        assert max(took) < 1.0, took
        agent.release()


SLACK_ONLY = """
endpoints:
  - { name: slack-events, source: slack, path: /webhooks/slack/events, signing_secret: "${SLACK_SIGNING_SECRET}" }
targets:
  - name: slack
    type: slack
    token: xoxb-test
    url: ${SLACK_API_URL}
    retry: { backoff_base: 0.2, backoff_cap: 5 }
routes:
  - name: echo-to-thread
    match: { kind: slack.app_mention }
    actions:
      - target: slack
        action: post
        channel: "{{ event.identifiers.slack_channel_id }}"
        thread_ts: "{{ event.subject.id.split(':')[1] }}"
        text: "On it: {{ event.title }}"
"""


def test_slack_target_threads_and_honours_rate_limits(server_factory: Callable[..., Server], slack: FakeSlack) -> None:
    env = {"SLACK_SIGNING_SECRET": "8f742231b10e8888abcd99yyyzzz85a5", "SLACK_API_URL": f"{slack.url}/api"}
    server = server_factory(SLACK_ONLY, env)
    slack.behave(429, headers={"Retry-After": "1"}, body={"ok": False, "error": "ratelimited"})
    started = time.monotonic()
    assert slack_post(server, "/webhooks/slack/events", app_mention()).status_code == 200
    wait_until(lambda: slack.messages, 15, "the reply")
    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    (message,) = slack.messages
    assert (message["channel"], message["thread_ts"]) == ("C0A4967KRBM", "1795000000.000100")
    assert message["text"] == "On it: <@U0BOT> Investigate error spike"
    (delivery,) = server.deliveries("delivered")
    assert delivery["result"]["ts"] == message["ts"]
    # A refusal in the body is permanent, with Slack's words kept.
    slack.channels.clear()
    assert slack_post(server, "/webhooks/slack/events", app_mention("Ev-9")).status_code == 200
    wait_until(lambda: server.deliveries("dead"), 15, "the refused post dead-lettered")
    assert server.deliveries("dead")[0]["last_error"] == "Slack: channel_not_found"


EVERY_IDENTIFIER = """
server: { org: acme }
endpoints:
  - { name: slack-events, source: slack, path: /slack, signing_secret: "${SLACK_SIGNING_SECRET}" }
  - { name: github, source: github, path: /github, secret: "${GITHUB_WEBHOOK_SECRET}" }
  - { name: pagerduty, source: pagerduty, path: /pagerduty, secret: pd-secret }
  - { name: incidentio, source: incidentio, path: /incidentio, secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }
  - name: coralogix
    source: generic
    path: /coralogix
    token: cx-token
    fields:
      title: name
      service: service
      identifiers: { coralogix_team_name: team }
teams:
  - { name: t-incidentio-team, token: tok-1, routing: { incidentio_team_ids: [01TEAM] } }
  - { name: t-pagerduty, token: tok-2, routing: { pagerduty_service_ids: [PSVC9] } }
  - { name: t-slack, token: tok-3, routing: { slack_channel_ids: [C0A4967KRBM] } }
  - { name: t-github, token: tok-4, routing: { github_repos: [acme/api] } }
  - { name: t-coralogix, token: tok-5, routing: { coralogix_team_names: [otel-demo] } }
  - { name: t-alert-source, token: tok-6, routing: { incidentio_alert_source_ids: [01SRC] } }
  - { name: t-service, token: tok-7, routing: { services: [checkout] } }
targets:
  - { name: agent, type: forward, url: "${AGENT_URL}", secret: "${AGENT_SECRET}", team_token_header: X-Team-Token }
routes:
  - name: to-team
    match: { team.name: { exists: true } }
    actions: [{ target: agent, action: forward, team: "{{ team.name }}", context: { by: "{{ team.matched_by }}" } }]
"""


def test_every_identifier_routes_to_its_team(server_factory: Callable[..., Server]) -> None:
    with FakeAgent(AGENT_SECRET, mode="silent") as agent:
        env = {
            "SLACK_SIGNING_SECRET": "8f742231b10e8888abcd99yyyzzz85a5",
            "GITHUB_WEBHOOK_SECRET": "It's a Secret to Everybody",
            "AGENT_URL": f"{agent.url}/agent",
            "AGENT_SECRET": AGENT_SECRET,
        }
        server = server_factory(EVERY_IDENTIFIER, env)

        def incidentio(kind: str, resource: dict[str, Any], message_id: str) -> None:
            payload = {"event_type": kind, kind: resource}
            body = json.dumps(payload)
            now = dt.datetime.now(dt.UTC)
            signature = Webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").sign(message_id, now, body)
            stamp = str(int(now.timestamp()))
            headers = {"webhook-id": message_id, "webhook-timestamp": stamp, "webhook-signature": signature}
            assert server.client.post("/incidentio", content=body.encode(), headers=headers).status_code == 200

        incidentio("public_incident.incident_created_v2", {"id": "I1", "name": "x", "team_ids": ["01TEAM"]}, "m1")
        incidentio("public_alert.alert_created_v1", {"id": "A1", "title": "y", "alert_source_id": "01SRC"}, "m2")
        assert slack_post(server, "/slack", app_mention()).status_code == 200
        issue = {"action": "opened", "repository": {"full_name": "acme/api"}}
        assert github_post(server, "issues", issue, path="/github").status_code == 200
        incident = {"id": "P1", "type": "incident", "service": {"id": "PSVC9"}}
        body = json.dumps({"event": {"id": "E1", "event_type": "incident.triggered", "data": incident}}).encode()
        headers = {"x-pagerduty-signature": pagerduty_signature(body, "pd-secret")}
        assert server.post("/pagerduty", content=body, headers=headers).status_code == 200
        for n, (team, service) in enumerate([("otel-demo", "unknown-svc"), ("nobody", "checkout")]):
            cx = {"name": f"alert {n}", "team": team, "service": service}
            assert server.post("/coralogix?token=cx-token", body=cx).status_code == 200
        wait_until(lambda: len(agent.forwards) == 7, 15, "seven forwards")
        pairs = zip(agent.forwards, agent.requests, strict=True)
        routed = {f["context"]["by"]: r.headers["x-team-token"] for f, r in pairs}
        assert routed == {
            "github_repo": "tok-4",
            "incidentio_team_id": "tok-1",
            "incidentio_alert_source_id": "tok-6",
            "slack_channel_id": "tok-3",
            "pagerduty_service_id": "tok-2",
            "coralogix_team_name": "tok-5",
            "service": "tok-7",
        }
        delivered = server.metric(
            "alertbridge_team_deliveries_total", source="slack", team="t-slack", outcome="success"
        )
        assert delivered == 1
