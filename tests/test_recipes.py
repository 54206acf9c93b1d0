"""Each recipe for a tool without a module works as its page says: the configuration and the tool's
example payload are read from the page itself (the blocks marked `<!-- tested: config -->` and
`<!-- tested: payload -->`), so the page cannot drift from what is tested. The server runs with that
configuration; the payload is posted as the tool sends it (signed where the tool signs, with Sentry's
scheme written from its docs in tests/signing.py), and the event's fields are checked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from .conftest import Server
from .signing import sentry_signature

RECIPES = Path(__file__).resolve().parents[1] / "docs" / "recipes"
TOKEN = "recipe-token-0123456789"
SENTRY_SECRET = "sentry-client-secret-abcdef"


def blocks(page: str, name: str) -> list[str]:
    """The fenced blocks right after each `<!-- tested: NAME -->` on the page, in order."""
    found = re.findall(rf"<!-- tested: {name} -->\n```[a-z]+\n(.*?)\n```", page, re.S)
    assert found, f"the page has no block marked <!-- tested: {name} -->"
    return [text + "\n" for text in found]


def variables(config: str) -> list[str]:
    return re.findall(r"\$\{([A-Z_]+)", config)


# What each recipe's example payloads must become, in the page's order: its field mapping's rows.
EXPECTED: dict[str, list[dict[str, Any]]] = {
    "datadog": [
        {
            "kind": "alert.triggered",
            "delivery_key": "1234567",
            "title": "[Triggered] [Memory Alert]",
            "description": "@webhook-url Sending to the webhook",
            "status": "Triggered",
            "severity": "error",
            "priority": "P1",
            "occurred_at": "1406662672000",
            "url": "https://app.datadoghq.com/event/jump_to?event_id=123456",
            "subject": {"system": "datadog", "type": "monitor", "id": "1234"},
            "dedup_key": "7201983245186320158",
            "service": {"name": "checkout"},
            "identifiers": {
                "datadog_monitor_id": "1234",
                "datadog_org": "Datadog",
                "host": "ip-012345",
                "service": "checkout",
            },
        }
    ],
    "sentry": [
        {
            "kind": "issue_alert.triggered",
            "delivery_key": "request-0",
            "title": "ReferenceError: heck is not defined",
            "description": "heck is not defined",
            "severity": "error",
            "status": "triggered",
            "url": "https://sentry.io/organizations/test-org/issues/1117540176/events/e4874d664c3540c1a32eab185f12c5ab/",
            "occurred_at": "2019-08-19T21:06:17.677000Z",
            "actor": "Sentry",
            "subject": {"system": "sentry", "type": "issue", "id": "1117540176"},
            "dedup_key": "1117540176",
            "identifiers": {"sentry_issue_id": "1117540176", "sentry_rule": "Very Important Alert Rule!"},
        },
        {
            "kind": "metric_alert.resolved",
            "delivery_key": "request-1",
            "title": "Resolved: Too many errors",
            "description": "1000 events in the last 10 minutes\\nFilter: level:error",
            "severity": "info",
            "status": "resolved",
            "url": "https://sentry.io/organizations/baz/alerts/1/",
            "occurred_at": "2020-09-13T12:26:40.000000Z",
            "actor": "Sentry",
            "subject": {"system": "sentry", "type": "metric_alert", "id": "4"},
            "dedup_key": "4",
            "tags": [],
            "identifiers": {"sentry_rule": "Too many errors"},
        },
    ],
    "zabbix": [
        {
            "kind": "alert.triggered",
            "title": "High CPU utilization (over 90% for 5m)",
            "status": "problem",
            "severity": "error",
            "occurred_at": "2026.12.04 10:21:07",
            "url": "https://zabbix.example.com/tr_events.php?triggerid=23456&eventid=12345",
            "subject": {"system": "zabbix", "type": "problem", "id": "12345"},
            "dedup_key": "zabbix-12345",
            "service": {"name": "checkout"},
            "identifiers": {"host": "web-01", "zabbix_trigger_id": "23456", "service": "checkout"},
        }
    ],
    "uptime-kuma": [
        {
            "kind": "monitor.down",
            "title": "[Test] [🔴 Down] getaddrinfo ENOTFOUND test.com",
            "description": "getaddrinfo ENOTFOUND test.com",
            "status": "down",
            "severity": "critical",
            "occurred_at": "2024-09-24 23:51:35.527",
            "url": "https://test.com",
            "subject": {"system": "uptime-kuma", "type": "monitor", "id": "29"},
            "dedup_key": "uptime-kuma-29",
            "service": {"name": "checkout"},
            "tags": ["service"],
            "identifiers": {"uptime_kuma_monitor": "Test", "service": "checkout"},
        }
    ],
}


def sent_as_the_tool_sends(name: str, body: bytes, index: int, genuine: bool = True) -> dict[str, str]:
    """The headers the tool sends: Sentry signs the body with the integration's client secret and
    names the request and its resource; the others carry the token in the header the recipe sets up."""
    if name == "sentry":
        secret = SENTRY_SECRET if genuine else "not-the-client-secret"
        return {
            "sentry-hook-resource": "metric_alert" if b'"metric_alert"' in body else "event_alert",
            "sentry-hook-timestamp": "1566248778",
            "sentry-hook-signature": sentry_signature(secret, body),
            "request-id": f"request-{index}",
        }
    return {"x-webhook-token": TOKEN if genuine else "not-the-token"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_recipe_page_config_turns_the_tools_payload_into_the_documented_event(
    name: str, server_factory: Callable[..., Server]
) -> None:
    page = (RECIPES / f"{name}.md").read_text()
    (config,) = blocks(page, "config")
    payloads = blocks(page, "payload")
    assert len(payloads) == len(EXPECTED[name]), "every example on the page has its expected event here"
    endpoint = YAML(typ="safe").load(config)["endpoints"][0]
    env = {var: SENTRY_SECRET if "SENTRY" in var else TOKEN for var in variables(config)}
    assert env, "the recipe's secret comes from the environment"
    server = server_factory(config, env)

    for index, (payload, expected) in enumerate(zip(payloads, EXPECTED[name], strict=True)):
        body = payload.encode()
        document = json.loads(body)  # the page's example is valid JSON, as the tool sends it
        forged = server.post(endpoint["path"], content=body, headers=sent_as_the_tool_sends(name, body, index, False))
        assert forged.status_code == 403, forged.text
        answer = server.post(endpoint["path"], content=body, headers=sent_as_the_tool_sends(name, body, index))
        assert answer.status_code == 200, answer.text
        (event_id,) = answer.json()["events"]
        event = next(row["event"] for row in server.events() if row["event"]["id"] == event_id)
        assert {field: event.get(field) for field in expected} == expected
        assert event["endpoint"] == endpoint["name"] and event["source"] == "generic"
        assert event["raw"] == document

        again = server.post(endpoint["path"], content=body, headers=sent_as_the_tool_sends(name, body, index))
        assert again.json() == {"ok": True, "events": [event_id], "duplicate": True}
    assert len(server.events()) == len(payloads)


def test_every_recipe_page_for_a_generic_sender_is_tested() -> None:
    pages = {p.stem for p in RECIPES.glob("*.md") if "<!-- tested: config -->" in p.read_text()}
    assert pages == set(EXPECTED)
