"""Seed 003 end to end: PagerDuty webhooks in, signed forwards to agents, answers back as incident notes.

The REST target talks to a fake PagerDuty REST API that checks headers and bodies against PagerDuty's
OpenAPI description; agents are fakes that verify the Standard Webhooks signature independently.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from .conftest import EXAMPLES, Server, wait_until
from .fakes.agent import FakeAgent
from .fakes.pagerduty_rest import FakePagerDutyREST
from .signing import pagerduty_signature
from .test_pagerduty_source import incident_data, v3

PD_SECRET = "pd-webhook-secret"
AGENT_SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItYWdlbnRzLTAxMjM0NTY3"  # base64 of a 32-byte key
API_TOKEN = "pd-api-token-xyz"
FROM = "bridge@example.com"

CONFIG = """
endpoints:
  - name: pagerduty
    source: pagerduty
    path: /webhooks/pagerduty
    secret: ${PD_SECRET}
  - name: agent-answers
    source: agent
    path: /webhooks/agent
    secret: ${AGENT_SECRET}

targets:
  - name: pagerduty-api
    type: pagerduty_rest
    token: ${API_TOKEN}
    from_email: bridge@example.com
    url: ${PD_API}
    retry: { backoff_base: 0.2, backoff_cap: 0.5 }
  - name: agent
    type: forward
    url: ${AGENT_URL}
    secret: ${AGENT_SECRET}
    headers: { X-Team-Token: team-a-token }
    timeout: 2s
    notes_to: pagerduty-api
    callback_url: ${PUBLIC_BASE}/webhooks/agent
    retry: { backoff_base: 0.2, backoff_cap: 0.5 }

routes:
  - name: diagnose
    match: { event_types: [incident.triggered] }
    actions:
      - target: agent
        action: forward
        context: { agent: diagnostic-agent }
  - name: agent-notes
    match: { kind: agent.note }
    actions:
      - target: pagerduty-api
        action: note
        incident_id: "{{ original.identifiers.pagerduty_incident_id if original else none }}"
        content: "{{ event.note }}"
"""


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDutyREST]:
    with FakePagerDutyREST(API_TOKEN, FROM) as fake:
        fake.add_incident("PGR0VU2", "PF9KMXH")
        yield fake


def start(
    server_factory: Callable[..., Server], config: str, pagerduty: FakePagerDutyREST, agent: FakeAgent | None
) -> Server:
    env = {
        "PD_SECRET": PD_SECRET,
        "AGENT_SECRET": AGENT_SECRET,
        "API_TOKEN": API_TOKEN,
        "PD_API": pagerduty.url,
        "AGENT_URL": f"{agent.url}/agent" if agent else "http://127.0.0.1:9/agent",
    }
    server = server_factory(config, env, start=False)
    server.env["PUBLIC_BASE"] = server.url
    return server.start()


def send(server: Server, body: bytes, webhook_id: str) -> httpx.Response:
    headers = {"x-pagerduty-signature": pagerduty_signature(body, PD_SECRET), "x-webhook-id": webhook_id}
    return server.post("/webhooks/pagerduty", content=body, headers=headers)


def attempts_of(server: Server, delivery_id: str) -> list[dict[str, Any]]:
    return list(server.cli_json("deliveries", "show", delivery_id)["attempts"])


def test_an_answer_in_the_response_becomes_a_note(
    server_factory: Callable[..., Server], pagerduty: FakePagerDutyREST
) -> None:
    with FakeAgent(AGENT_SECRET, mode="note") as agent:
        server = start(server_factory, CONFIG, pagerduty, agent)
        assert send(server, v3("incident.triggered"), "wh-1").status_code == 200

        wait_until(lambda: pagerduty.incidents["PGR0VU2"].notes, 15, "the agent's note on the incident")
        assert pagerduty.incidents["PGR0VU2"].notes == ["diagnostic-agent: looked at 'A little bump in the road'"]
        assert agent.verified == [True]
        forward = agent.requests[0]
        assert forward.headers["x-team-token"] == "team-a-token"
        assert forward.headers["webhook-id"] and forward.headers["webhook-timestamp"].isdigit()
        document = agent.forwards[0]
        assert document["type"] == "incident.triggered"
        assert document["context"] == {"agent": "diagnostic-agent"}
        assert document["data"]["identifiers"]["pagerduty_incident_id"] == "PGR0VU2"
        assert document["callback"]["url"] == f"{server.url}/webhooks/agent"
        assert pagerduty.validation_errors == []
        note_request = next(r for r in pagerduty.requests if r.path.endswith("/notes"))
        assert note_request.headers["authorization"] == f"Token token={API_TOKEN}"
        assert note_request.headers["accept"] == "application/vnd.pagerduty+json;version=2"
        assert note_request.headers["from"] == FROM

        # The note is a delivery of its own, done once (recorded just after PagerDuty has it).
        def all_delivered() -> list[dict[str, Any]] | None:
            found = server.deliveries()
            return found if len(found) == 2 and all(d["status"] == "delivered" for d in found) else None

        deliveries = wait_until(all_delivered, what="both deliveries recorded")
        assert sorted((d["target"], d["action"], d["status"]) for d in deliveries) == [
            ("agent", "forward", "delivered"),
            ("pagerduty-api", "note", "delivered"),
        ]


def test_an_agent_that_answers_later_through_the_callback(
    server_factory: Callable[..., Server], pagerduty: FakePagerDutyREST
) -> None:
    with FakeAgent(AGENT_SECRET, mode="later", callback_delay=0.3) as agent:
        server = start(server_factory, CONFIG, pagerduty, agent)
        assert send(server, v3("incident.triggered"), "wh-2").status_code == 200

        wait_until(lambda: pagerduty.incidents["PGR0VU2"].notes, 15, "the called-back note on the incident")
        assert [r.status_code for r in agent.callbacks] == [200]
        assert pagerduty.incidents["PGR0VU2"].notes == ["diagnostic-agent: looked at 'A little bump in the road'"]
        answers = [e for e in server.events() if e["event"]["kind"] == "agent.note"]
        assert len(answers) == 1
        original = agent.forwards[0]["callback"]["event_id"]
        assert answers[0]["event"]["identifiers"]["in_reply_to"] == original

        # Answers are authenticated and tied to their event: another event's token is refused.
        callback = agent.forwards[0]["callback"]
        forged = server.client.post(
            "/webhooks/agent",
            json={"event_id": "01OTHEREVENT", "note": "not mine"},
            headers={"Authorization": f"Bearer {callback['token']}"},
        )
        assert forged.status_code == 403
        missing = server.client.post("/webhooks/agent", json={"event_id": original, "note": "no token"})
        assert missing.status_code == 401
        assert server.metric("alertbridge_requests_refused_total", endpoint="agent-answers", reason="bad_token") == 1


def test_an_agent_down_for_a_while_gets_the_work_once_when_back(
    server_factory: Callable[..., Server], pagerduty: FakePagerDutyREST
) -> None:
    agent = FakeAgent(AGENT_SECRET, mode="note")
    server = start(server_factory, CONFIG, pagerduty, agent)  # the agent is not listening yet
    try:
        assert send(server, v3("incident.triggered"), "wh-3").status_code == 200
        wait_until(lambda: any(d["attempts"] >= 2 for d in server.deliveries()), 15, "retries while the agent is down")
        (forward,) = server.deliveries()
        assert forward["status"] == "pending"
        assert "could not reach agent" in (forward["last_error"] or "")
        agent.start()
        wait_until(lambda: pagerduty.incidents["PGR0VU2"].notes, 15, "the note once the agent is back")
        wait_until(lambda: all(d["status"] == "delivered" for d in server.deliveries()), 10, "all delivered")
        assert len(agent.forwards) == 1
        assert len(pagerduty.incidents["PGR0VU2"].notes) == 1
    finally:
        agent.stop()


REST_CONFIG = """
endpoints:
  - name: pagerduty
    source: pagerduty
    path: /webhooks/pagerduty
    secret: ${PD_SECRET}

targets:
  - name: pagerduty-api
    type: pagerduty_rest
    token: ${API_TOKEN}
    from_email: bridge@example.com
    url: ${PD_API}
    retry: { backoff_base: 0.2, backoff_cap: 5, max_attempts: 4 }

routes:
  - name: mirror
    match: { kind: incident.triggered }
    actions:
      - target: pagerduty-api
        action: create
        service_id: PMIRROR
        title: "[mirror] {{ event.title }}"
        urgency: low
        incident_key: "mirror-{{ event.subject.id }}"
        details: "{{ event.url }}"
  - name: annotate
    match: { kind: incident.acknowledged }
    actions:
      - target: pagerduty-api
        action: note
        content: "acknowledged by {{ event.actor }}"
      - target: pagerduty-api
        action: acknowledge
  - name: reassign
    match: { kind: incident.escalated }
    actions:
      - target: pagerduty-api
        action: reassign
        assignee_ids: [PUSER9, PUSER10]
  - name: close
    match: { kind: incident.resolved }
    actions:
      - target: pagerduty-api
        action: resolve
        resolution: "closed by alertbridge"
"""


def test_every_rest_action_passes_pagerdutys_checks(
    server_factory: Callable[..., Server], pagerduty: FakePagerDutyREST
) -> None:
    server = start(server_factory, REST_CONFIG, pagerduty, None)
    for n, kind in enumerate(["incident.triggered", "incident.acknowledged", "incident.escalated"]):
        assert send(server, v3(kind, event_id=f"E{n}"), f"wh-{n}").status_code == 200
    wait_until(lambda: len(server.deliveries("delivered")) == 4, 15, "create, note, acknowledge, reassign")
    assert send(server, v3("incident.resolved", event_id="E9"), "wh-9").status_code == 200
    wait_until(lambda: len(server.deliveries("delivered")) == 5, 15, "resolve")

    assert pagerduty.validation_errors == []
    mirror = next(i for i in pagerduty.incidents.values() if i.service_id == "PMIRROR")
    assert (mirror.title, mirror.urgency, mirror.incident_key) == (
        "[mirror] A little bump in the road",
        "low",
        "mirror-PGR0VU2",
    )
    original = pagerduty.incidents["PGR0VU2"]
    assert original.notes == ["acknowledged by PLH1HKV"]  # the acting user's id
    assert original.assignees == ["PUSER9", "PUSER10"]
    assert (original.status, original.resolution) == ("resolved", "closed by alertbridge")
    create = next(d for d in server.deliveries() if d["action"] == "create")
    assert create["result"] == {"incident_id": mirror.id}


def test_rest_failures_retried_or_kept_with_pagerdutys_message(
    server_factory: Callable[..., Server], pagerduty: FakePagerDutyREST
) -> None:
    server = start(server_factory, REST_CONFIG, pagerduty, None)
    # 429 with PagerDuty's rate-limit headers: retried after ratelimit-reset, then done.
    pagerduty.behave(
        429,
        headers={"ratelimit-limit": "960", "ratelimit-remaining": "0", "ratelimit-reset": "1"},
        body={"error": {"message": "Rate Limit Exceeded", "code": 2020}},
    )
    assert send(server, v3("incident.triggered", event_id="E1"), "wh-1").status_code == 200
    wait_until(lambda: server.deliveries("delivered"), 15, "the create after the 429")
    (create,) = server.deliveries()
    attempts = attempts_of(server, create["id"])
    assert [a["outcome"] for a in attempts] == ["retry", "success"]
    assert attempts[0]["status_code"] == 429 and "Rate Limit Exceeded" in attempts[0]["message"]
    assert attempts[1]["started_at"] - attempts[0]["started_at"] >= 0.9

    # 404 for an incident PagerDuty does not have: permanent, PagerDuty's words kept, no retry.
    data = copy.deepcopy(incident_data())
    data["id"] = "PUNKNOWN"
    assert send(server, v3("incident.resolved", event_id="E2", data=data), "wh-2").status_code == 200
    wait_until(lambda: server.deliveries("dead"), 15, "the resolve of an unknown incident dead-lettered")
    (dead,) = server.deliveries("dead")
    (attempt,) = attempts_of(server, dead["id"])
    assert attempt["status_code"] == 404 and attempt["outcome"] == "permanent"
    assert "Not Found" in attempt["message"] and "2100" in attempt["message"]

    # The API key never shows in what is kept or logged.
    assert API_TOKEN not in json.dumps(server.deliveries()) + server.logs()


FILTER_CONFIG = """
endpoints:
  - name: pagerduty
    source: pagerduty
    path: /webhooks/pagerduty
    secret: ${PD_SECRET}
targets:
  - name: agent
    type: forward
    url: ${AGENT_URL}
    secret: ${AGENT_SECRET}
routes:
  - name: types
    match: { event_types: [incident.escalated] }
    actions: [{ target: agent, action: forward, context: { route: types } }]
    continue: true
  - name: services
    match: { allowed_services: [PDB0001, payment-service] }
    actions: [{ target: agent, action: forward, context: { route: services } }]
    continue: true
  - name: teams
    match: { allowed_teams: [PTEAMDB] }
    actions: [{ target: agent, action: forward, context: { route: teams } }]
    continue: true
  - name: priority
    match: { min_priority: P2 }
    actions: [{ target: agent, action: forward, context: { route: priority } }]
    continue: true
  - name: urgency
    match: { min_urgency: high }
    actions: [{ target: agent, action: forward, context: { route: urgency } }]
    continue: true
"""


def incident(service: tuple[str, str], team: str, priority: str | None, urgency: str) -> dict[str, Any]:
    data = copy.deepcopy(incident_data())
    data["service"] = {"id": service[0], "type": "service_reference", "summary": service[1]}
    data["teams"] = [{"id": team, "type": "team_reference", "summary": team}]
    data["priority"] = {"id": "PPRI", "type": "priority_reference", "summary": priority} if priority else None
    data["urgency"] = urgency
    return data


@pytest.mark.parametrize(
    ("event_type", "data", "expected"),
    [
        ("incident.escalated", incident(("PX", "web"), "PTEAMX", "P5", "low"), {"types"}),
        ("incident.triggered", incident(("PDB0001", "database"), "PTEAMX", None, "low"), {"services"}),
        ("incident.triggered", incident(("PPAY", "payment-service"), "PTEAMX", None, "low"), {"services"}),
        ("incident.triggered", incident(("PX", "web"), "PTEAMDB", None, "low"), {"teams"}),
        ("incident.triggered", incident(("PX", "web"), "PTEAMX", "P1", "low"), {"priority"}),
        ("incident.triggered", incident(("PX", "web"), "PTEAMX", "P2", "low"), {"priority"}),
        ("incident.triggered", incident(("PX", "web"), "PTEAMX", "P3", "low"), set()),
        ("incident.triggered", incident(("PX", "web"), "PTEAMX", None, "high"), {"urgency"}),
        (
            "incident.escalated",
            incident(("PPAY", "payment-service"), "PTEAMDB", "P1", "high"),
            {"types", "services", "teams", "priority", "urgency"},
        ),
    ],
)
def test_every_seed_003_filter(
    server_factory: Callable[..., Server],
    pagerduty: FakePagerDutyREST,
    event_type: str,
    data: dict[str, Any],
    expected: set[str],
) -> None:
    with FakeAgent(AGENT_SECRET, mode="silent") as agent:
        server = start(server_factory, FILTER_CONFIG, pagerduty, agent)
        assert send(server, v3(event_type, event_id="EF", data=data), "wh-f").status_code == 200
        (event,) = wait_until(lambda: [e for e in server.events() if e["routed_at"]], 10, "the event routed")
        assert event["status"] == ("routed" if expected else "unmatched")
        trace = event["trace"]
        matched = {step["route"] for step in trace if step.get("matched")}
        assert matched == expected
        for step in trace:
            if step.get("route") and not step.get("matched"):
                assert step["reasons"], f"no reason in the trace for {step['route']}"
        if expected:
            wait_until(lambda: len(agent.forwards) == len(expected), 10, "the forwards")
            assert {f["context"]["route"] for f in agent.forwards} == expected
        else:
            assert any("no route matched" in str(step.get("result", "")) for step in trace)
            assert server.deliveries() == []


def test_seed_003_example_runs_with_the_seeds_variables(
    server_factory: Callable[..., Server], pagerduty: FakePagerDutyREST
) -> None:
    secret = "seed-003-secret"
    pagerduty.add_incident("PDBINC", "PDB")
    with FakeAgent(secret, mode="note") as agent:
        env = {
            "PAGERDUTY_WEBHOOK_SECRET": secret,
            "PAGERDUTY_API_TOKEN": API_TOKEN,
            "AGENT_URL": f"{agent.url}/agent",
            "PAGERDUTY_API_URL": pagerduty.url,
            "PAGERDUTY_FROM_EMAIL": FROM,
        }
        server = server_factory(EXAMPLES / "pagerduty-agent.yaml", env)

        def post(event_type: str, data: dict[str, Any], n: int) -> None:
            body = v3(event_type, event_id=f"E{n}", data=data)
            headers = {"x-pagerduty-signature": pagerduty_signature(body, secret), "x-webhook-id": f"wh-{n}"}
            assert server.post("/webhooks/pagerduty", content=body, headers=headers).status_code == 200

        api = incident(("PAPI", "production-api"), "PT", "P1", "high")
        api["id"] = "PGR0VU2"
        database = incident(("PDB", "production-database"), "PT", "P1", "high")
        database["id"] = "PDBINC"
        web = incident(("PW", "web"), "PT", "P1", "high")
        web["id"] = "PWEBINC"
        pagerduty.add_incident("PWEBINC", "PW")
        post("incident.triggered", api, 1)  # the main trigger and auto-diagnose
        post("incident.triggered", web, 2)  # another service: the seed's main trigger alone
        post("incident.escalated", database, 3)  # senior agent
        post("incident.resolved", api, 4)  # the main trigger and cleanup

        wait_until(lambda: len(agent.forwards) == 6, 15, "six forwards")
        agents = sorted((f["type"], f["data"]["service"]["name"], f["context"]["agent"]) for f in agent.forwards)
        assert agents == [
            ("incident.escalated", "production-database", "senior-sre-agent"),
            ("incident.resolved", "production-api", "cleanup-agent"),
            ("incident.resolved", "production-api", "incident-response-agent"),
            ("incident.triggered", "production-api", "diagnostic-agent"),
            ("incident.triggered", "production-api", "incident-response-agent"),
            ("incident.triggered", "web", "incident-response-agent"),
        ]
        cleanup = next(f for f in agent.forwards if f["context"]["agent"] == "cleanup-agent")
        assert cleanup["context"]["parameters"] == {"create_postmortem": True, "cleanup_temp_resources": True}
        assert all(agent.verified)
        wait_until(lambda: len(pagerduty.incidents["PGR0VU2"].notes) == 4, 15, "notes on the API incident")
        wait_until(lambda: pagerduty.incidents["PDBINC"].notes, 15, "the note on the database incident")
        wait_until(lambda: pagerduty.incidents["PWEBINC"].notes, 15, "the note on the web incident")
        assert pagerduty.validation_errors == []


def test_a_triggered_incident_on_any_service_reaches_the_agent(
    server_factory: Callable[..., Server], pagerduty: FakePagerDutyREST
) -> None:
    """Seed 003's pagerduty-incident-handler: every service's triggered, acknowledged and resolved
    incidents reach the incident-response agent; a use case that also takes the event runs its own agent
    too, as each of the seed's triggers runs on its own."""
    secret = "seed-003-secret"
    with FakeAgent(secret, mode="silent") as agent:
        env = {"PAGERDUTY_WEBHOOK_SECRET": secret, "PAGERDUTY_API_TOKEN": API_TOKEN, "AGENT_URL": f"{agent.url}/agent"}
        server = server_factory(EXAMPLES / "pagerduty-agent.yaml", env)
        sent = [
            ("incident.triggered", incident(("PANY123", "billing-cron"), "PT", None, "low")),
            ("incident.acknowledged", incident(("PANY123", "billing-cron"), "PT", None, "low")),
            ("incident.triggered", incident(("PAPI", "production-api"), "PT", "P1", "high")),
            ("incident.unacknowledged", incident(("PANY123", "billing-cron"), "PT", None, "low")),
        ]
        for n, (event_type, data) in enumerate(sent):
            body = v3(event_type, event_id=f"EA{n}", data=data)
            headers = {"x-pagerduty-signature": pagerduty_signature(body, secret), "x-webhook-id": f"wh-a{n}"}
            assert server.post("/webhooks/pagerduty", content=body, headers=headers).status_code == 200

        wait_until(lambda: len([e for e in server.events() if e["routed_at"]]) == 4, 15, "all four routed")
        wait_until(lambda: len(agent.forwards) == 4, 15, "four forwards")
        got = sorted((f["type"], f["data"]["service"]["name"], f["context"]["agent"]) for f in agent.forwards)
        assert got == [
            ("incident.acknowledged", "billing-cron", "incident-response-agent"),
            ("incident.triggered", "billing-cron", "incident-response-agent"),
            ("incident.triggered", "production-api", "diagnostic-agent"),  # the use case, and
            ("incident.triggered", "production-api", "incident-response-agent"),  # the main trigger
        ]
        assert all(agent.verified) and len(server.deliveries()) == 4
        by_kind = {(e["event"]["kind"], e["event"]["service"]["name"]): e for e in server.events()}
        trace = by_kind[("incident.triggered", "production-api")]["trace"]
        matched = [step["route"] for step in trace if step.get("matched")]
        assert matched == ["pagerduty-incident-handler", "auto-diagnose"]
        assert by_kind[("incident.unacknowledged", "billing-cron")]["status"] == "unmatched"


RAW_CONFIG = """
endpoints:
  - name: pagerduty
    source: pagerduty
    path: /webhooks/pagerduty
    secret: ${PD_SECRET}
targets:
  - name: agent
    type: forward
    url: ${AGENT_URL}
    secret: ${AGENT_SECRET}
    body: raw
routes:
  - name: everything
    match: {}
    actions: [{ target: agent, action: forward }]
"""


def test_a_forward_can_carry_the_raw_payload(
    server_factory: Callable[..., Server], pagerduty: FakePagerDutyREST
) -> None:
    with FakeAgent(AGENT_SECRET, mode="silent") as agent:
        server = start(server_factory, RAW_CONFIG, pagerduty, agent)
        body = v3("incident.triggered")
        assert send(server, body, "wh-raw").status_code == 200
        wait_until(lambda: agent.requests, 15, "the forward")
        assert json.loads(agent.requests[0].body) == json.loads(body)  # what PagerDuty sent, not the event
        assert agent.verified == [True]  # signed over the raw bytes it carries
