"""The PagerDuty Events API v2 door over real HTTP: PagerDuty's own Python client (`pagerduty` on PyPI)
pages alertbridge as it would page PagerDuty, and raw requests check every answer against PagerDuty's."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import httpx2
import pagerduty
import pytest

from alertbridge.config import EndpointConfig
from alertbridge.sources import REGISTRY, Refused
from alertbridge.sources.base import Endpoint, Incoming

from .backends import stored_bytes
from .conftest import Server, wait_until

KEY = "f3a1b2c3d4e5f60718293a4b5c6d7e8f"  # an integration key's shape: 32 letters and digits
OTHER_KEY = "0123456789abcdef0123456789ABCDEF"
SLOW_KEY = "5l0w5l0w5l0w5l0w5l0w5l0w5l0w5l0w"
UNKNOWN_KEY = "ffffffffffffffffffffffffffffffff"
ENV = {"PD_KEY_PAYMENTS": KEY, "PD_KEY_OTHER": OTHER_KEY, "PD_KEY_SLOW": SLOW_KEY}

CONFIG = """
endpoints:
  - name: pd-door
    source: pagerduty_events
    path: /pd
    routing_keys:
      - key: ${PD_KEY_PAYMENTS}
        name: payments
        service: payments-api
      - ${PD_KEY_OTHER}
  - name: pd-slow
    source: pagerduty_events
    path: /slow
    routing_keys: ["${PD_KEY_SLOW}"]
    rate_limit: 2
    rate_window: 1.5
  - name: pd-small
    source: pagerduty_events
    path: /small
    max_body_bytes: 2048
    routing_keys: ["${PD_KEY_PAYMENTS}"]
"""

INVALID = {"status": "invalid event", "message": "Event object is invalid"}


@pytest.fixture
def server(server_factory: Any) -> Server:
    return server_factory(CONFIG, ENV)


class _Proxy(httpx2.BaseTransport):
    """The network between the client and alertbridge: `https://alertbridge.example` reaches the test's
    server over plain HTTP, as a TLS-terminating proxy in front of alertbridge would (the client takes
    only https:// base URLs). Everything above the connection is the client's own (httpx2, which it
    is built on)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.inner = httpx2.HTTPTransport()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        assert request.url.host == "alertbridge.example", request.url
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self.server.port)
        return self.inner.handle_request(request)


def client(server: Server, key: str = KEY, path: str = "/pd") -> pagerduty.EventsApiV2Client:
    """PagerDuty's client with one URL changed: alertbridge's endpoint instead of https://events.pagerduty.com."""
    return pagerduty.EventsApiV2Client(key, base_url="https://alertbridge.example" + path, transport=_Proxy(server))


def events_of(server: Server, kind: str | None = None) -> list[dict[str, Any]]:
    found = [row["event"] for row in server.events()]
    return [e for e in found if kind is None or e["kind"] == kind]


def trigger(**overrides: Any) -> dict[str, Any]:
    body = {
        "routing_key": KEY,
        "event_action": "trigger",
        "payload": {"summary": "DISK at 99% on db01", "source": "db01.example.com", "severity": "critical"},
    }
    return {**body, **overrides}


def test_the_client_triggers_acknowledges_and_resolves(server: Server) -> None:
    pd = client(server)
    links = [{"href": "https://grafana.example.com/d/disk", "text": "Disk dashboard"}]
    images = [{"src": "https://grafana.example.com/render/disk.png", "alt": "disk"}]
    dedup_key = pd.trigger(
        "DISK at 99% on db01",
        "db01.example.com",
        severity="error",
        payload={"component": "mysql", "group": "prod-datapipe", "class": "disk", "timestamp": "2026-12-04T08:42:58Z"},
        custom_details={"free space": "1%"},
        links=links,
        images=images,
    )
    # No dedup_key sent: one was made, a UUID, as PagerDuty makes one, and the client got it back.
    assert uuid.UUID(dedup_key).version == 4 and str(uuid.UUID(dedup_key)) == dedup_key
    assert pd.acknowledge(dedup_key) == dedup_key
    assert pd.resolve(dedup_key) == dedup_key

    wait_until(lambda: len(events_of(server)) == 3, what="three events")
    (triggered,) = events_of(server, "pagerduty_events.trigger")
    assert triggered["subject"] == {"system": "pagerduty_events", "type": "alert", "id": dedup_key}
    assert triggered["dedup_key"] == dedup_key
    assert triggered["title"] == "DISK at 99% on db01"
    assert triggered["severity"] == "error"
    assert triggered["occurred_at"] == "2026-12-04T08:42:58Z"
    assert triggered["service"] == {"name": "payments-api"}
    assert triggered["url"] == "https://grafana.example.com/d/disk"
    assert triggered["identifiers"] == {
        "routing_key_name": "payments",
        "service": "payments-api",
        "source": "db01.example.com",
        "component": "mysql",
        "group": "prod-datapipe",
        "class": "disk",
    }
    assert triggered["raw"]["links"] == links and triggered["raw"]["images"] == images
    assert triggered["raw"]["payload"]["custom_details"] == {"free space": "1%"}
    assert "routing_key" not in triggered["raw"]
    for kind in ("acknowledge", "resolve"):
        (event,) = events_of(server, f"pagerduty_events.{kind}")
        assert event["subject"]["id"] == event["dedup_key"] == dedup_key
        assert event["severity"] is None


def test_the_client_sends_a_change_event(server: Server) -> None:
    client(server).send_change_event(
        payload={
            "summary": "Build Success: increase snapshot timeout",
            "source": "build-agent-7",
            "timestamp": "2026-12-04T09:00:00Z",
            "custom_details": {"build_number": "220"},
        },
        links=[{"href": "https://ci.example.com/builds/220", "text": "Build 220"}],
    )
    (event,) = wait_until(lambda: events_of(server, "pagerduty_events.change"), what="the change event")
    assert event["title"] == "Build Success: increase snapshot timeout"
    assert event["subject"] is None and event["dedup_key"] is None
    assert event["url"] == "https://ci.example.com/builds/220"
    assert event["identifiers"]["source"] == "build-agent-7"
    assert event["raw"]["payload"]["custom_details"] == {"build_number": "220"}


def test_the_client_reads_a_400_as_pagerduty_gives_it(server: Server) -> None:
    with pytest.raises(pagerduty.HttpError) as raised:
        client(server).trigger("summary", "host", severity="disaster")
    assert raised.value.response.status_code == 400
    assert raised.value.response.json() == {
        **INVALID,
        "errors": [
            "'payload.severity' is invalid (must be one of the following: 'critical', 'warning', 'error' or 'info')"
        ],
    }
    assert events_of(server) == []


def test_the_client_backs_off_on_a_429_and_gets_through(server: Server) -> None:
    pd = client(server, SLOW_KEY, "/slow")
    pd.sleep_timer = 0.5  # its first wait after a 429 (then doubled): shorter than its default for the test
    keys = [pd.trigger(f"problem {i}", "host", dedup_key=f"k{i}") for i in range(3)]
    assert keys == ["k0", "k1", "k2"]
    # The third came in over the rate: refused once at least, then taken when the client retried.
    assert server.metric("alertbridge_requests_refused_total", endpoint="pd-slow", reason="rate_limited") >= 1
    wait_until(lambda: len(events_of(server)) == 3, what="all three events")


def test_over_the_rate_a_key_is_answered_429_until_the_window_has_room(server: Server) -> None:
    body = trigger(routing_key=SLOW_KEY)
    for i in range(2):
        assert server.post("/slow/v2/enqueue", {**body, "dedup_key": f"d{i}"}).status_code == 202
    refused = server.post("/slow/v2/enqueue", {**body, "dedup_key": "over"})
    assert refused.status_code == 429
    assert refused.json() == {
        "status": "throttle exceeded",
        "message": "Requests for this service are arriving too quickly.  Please retry later.",
        "errors": ["Enhance Your Calm."],
    }
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    # Another key on another endpoint is not held back by this one's rate.
    assert server.post("/pd/v2/enqueue", trigger(dedup_key="elsewhere")).status_code == 202
    # Refused calls take no place in the window: a sender that retries gets through once it has room.
    accepted = wait_until(
        lambda: server.post("/slow/v2/enqueue", {**body, "dedup_key": "over"}).status_code == 202,
        timeout=10,
        what="the rate's window to have room",
    )
    assert accepted
    keys = sorted(e["dedup_key"] for e in events_of(server) if e["endpoint"] == "pd-slow")
    assert keys == ["d0", "d1", "over"]


MISTAKES: list[tuple[str, str, Any, list[str]]] = [
    ("nothing", "/pd/v2/enqueue", {}, ["'routing_key' cannot be blank", "'event_action' is missing or blank"]),
    (
        "no summary",
        "/pd/v2/enqueue",
        trigger(payload={"source": "db01", "severity": "critical"}),
        ["'payload.summary' is missing or blank"],
    ),
    (
        "a summary too long",
        "/pd/v2/enqueue",
        trigger(payload={"summary": "x" * 1025, "source": "db01", "severity": "critical"}),
        ["'payload.summary' is too long (maximum is 1024 characters)"],
    ),
    (
        "no source, no severity",
        "/pd/v2/enqueue",
        trigger(payload={"summary": "s"}),
        ["'payload.source' is missing or blank", "'payload.severity' is missing or blank"],
    ),
    (
        "a bad severity",
        "/pd/v2/enqueue",
        trigger(payload={"summary": "s", "source": "h", "severity": "high"}),
        ["'payload.severity' is invalid (must be one of the following: 'critical', 'warning', 'error' or 'info')"],
    ),
    ("no payload", "/pd/v2/enqueue", {**trigger(), "payload": None}, ["'payload' is missing or blank"]),
    (
        "a bad event_action",
        "/pd/v2/enqueue",
        trigger(event_action="snooze"),
        ["'event_action' is invalid (must be one of the following: 'trigger', 'acknowledge' or 'resolve')"],
    ),
    (
        "acknowledge without dedup_key",
        "/pd/v2/enqueue",
        {"routing_key": KEY, "event_action": "acknowledge"},
        ["'dedup_key' is missing or blank"],
    ),
    (
        "resolve without dedup_key",
        "/pd/v2/enqueue",
        {"routing_key": KEY, "event_action": "resolve", "dedup_key": ""},
        ["'dedup_key' is missing or blank"],
    ),
    (
        "a dedup_key too long",
        "/pd/v2/enqueue",
        trigger(dedup_key="k" * 256),
        ["'dedup_key' is too long (maximum is 255 characters)"],
    ),
    (
        "a short routing key",
        "/pd/v2/enqueue",
        trigger(routing_key="abc123"),
        ["Length of 'routing_key' is incorrect (should be 32 characters)"],
    ),
    (
        "a routing key with symbols",
        "/pd/v2/enqueue",
        trigger(routing_key="e+23rschqsESqk9Q6_-g"),
        [
            "Length of 'routing_key' is incorrect (should be 32 characters)",
            "'routing_key' cannot contain non-alphanumeric characters.",
        ],
    ),
    (
        "a link without href",
        "/pd/v2/enqueue",
        trigger(links=[{"text": "no href"}], images=[{"alt": "no src"}]),
        ["'links[0].href' is missing or blank", "'images[0].src' is missing or blank"],
    ),
    (
        "a change event without summary",
        "/pd/v2/change/enqueue",
        {"routing_key": KEY, "payload": {"source": "ci"}},
        ["'payload.summary' is missing or blank"],
    ),
]


def test_each_mistake_is_answered_400_with_pagerdutys_errors_and_nothing_stored(server: Server) -> None:
    for what, path, body, errors in MISTAKES:
        answer = server.post(path, body)
        assert (answer.status_code, answer.json()) == (400, {**INVALID, "errors": errors}), what
    unreadable = server.post("/pd/v2/enqueue", content=b'{"routing_key": ')
    assert unreadable.status_code == 400
    assert unreadable.json() == {
        "status": "Unrecognized object",
        "message": "Event object format is unrecognized",
        "errors": ["JSON parse error"],
    }
    assert server.metric("alertbridge_requests_refused_total", reason="bad_payload") == len(MISTAKES) + 1
    assert server.metric("alertbridge_events_stored_total", outcome="new") == 0
    assert events_of(server) == []


def test_an_unknown_routing_key_is_refused_as_pagerduty_refuses_it(server: Server) -> None:
    for body in (trigger(routing_key=UNKNOWN_KEY), {"routing_key": UNKNOWN_KEY, "payload": {"summary": "change"}}):
        path = "/pd/v2/enqueue" if "event_action" in body else "/pd/v2/change/enqueue"
        answer = server.post(path, body)
        assert (answer.status_code, answer.json()) == (400, {**INVALID, "errors": ["Invalid routing key"]})
    # A key of another endpoint is no key of this one.
    answer = server.post("/slow/v2/enqueue", trigger())
    assert (answer.status_code, answer.json()) == (400, {**INVALID, "errors": ["Invalid routing key"]})
    assert server.metric("alertbridge_requests_refused_total", endpoint="pd-door", reason="bad_token") == 2
    assert server.metric("alertbridge_requests_refused_total", endpoint="pd-slow", reason="bad_token") == 1
    assert events_of(server) == []


def test_each_key_says_which_it_was_without_the_key(server: Server) -> None:
    assert server.post("/pd/v2/enqueue", trigger(dedup_key="a")).status_code == 202
    assert server.post("/pd/v2/enqueue", trigger(routing_key=OTHER_KEY, dedup_key="b")).status_code == 202
    wait_until(lambda: len(events_of(server)) == 2, what="two events")
    by_key = {e["dedup_key"]: e for e in events_of(server)}
    assert by_key["a"]["identifiers"]["routing_key_name"] == "payments"
    assert by_key["a"]["service"] == {"name": "payments-api"}
    # A bare key is named by a short digest of it: stable, and not the key.
    unnamed = by_key["b"]["identifiers"]["routing_key_name"]
    assert unnamed.startswith("key-") and len(unnamed) == 12 and unnamed[4:] not in OTHER_KEY
    assert by_key["b"]["service"] is None and "service" not in by_key["b"]["identifiers"]


def test_every_path_pagerduty_serves_and_no_other(server: Server) -> None:
    for path in ("/pd/v2/enqueue", "/pd/enqueue", "/pd/v2/enqueue/"):
        answer = server.post(path, trigger(dedup_key=f"at {path}"))
        assert answer.status_code == 202, path
        assert answer.json() == {"status": "success", "message": "Event processed", "dedup_key": f"at {path}"}
    for path in ("/pd/v2/change/enqueue", "/pd/change/enqueue"):
        answer = server.post(path, {"routing_key": KEY, "payload": {"summary": f"deploy via {path}"}})
        assert (answer.status_code, answer.json()) == (202, {"status": "success", "message": "Change event processed"})
    missing = server.post("/pd/v1/enqueue", trigger())
    assert missing.status_code == 404
    assert missing.json()["status"] == "Not Found" and "/pd/v2/enqueue" in missing.json()["message"]
    assert server.client.get("/pd/v2/enqueue").status_code == 405
    wait_until(lambda: len(events_of(server)) == 5, what="five events")


def test_each_request_is_an_event_as_at_pagerduty_and_a_made_key_is_the_events(server: Server) -> None:
    """PagerDuty's API has no idempotency key: the same trigger sent twice is two events (after a
    resolve, a new alert); whether it pages twice is the routes' (per-episode keys)."""
    body = json.dumps(trigger()).encode()  # no dedup_key: alertbridge makes one
    first = server.post("/pd/v2/enqueue", content=body)
    again = server.post("/pd/v2/enqueue", content=body)
    assert first.status_code == again.status_code == 202
    made = {first.json()["dedup_key"], again.json()["dedup_key"]}
    assert len(made) == 2, "without a dedup key, each trigger is an alert of its own, as at PagerDuty"
    given = trigger(dedup_key="srv01/mysql")
    assert server.post("/pd/v2/enqueue", given).json()["dedup_key"] == "srv01/mysql"
    assert server.post("/pd/v2/enqueue", given).json()["dedup_key"] == "srv01/mysql"
    wait_until(lambda: len(events_of(server)) == 4, what="four events")
    assert server.metric("alertbridge_events_stored_total", outcome="duplicate") == 0
    keys = sorted(e["dedup_key"] for e in events_of(server))
    assert keys == sorted([*made, "srv01/mysql", "srv01/mysql"]), "the key answered is the event's"


def test_oversized_and_deeply_nested_bodies_are_refused(server: Server) -> None:
    big = trigger(payload={"summary": "s", "source": "h", "severity": "info", "custom_details": {"x": "y" * 4096}})
    answer = server.post("/small/v2/enqueue", big)
    assert answer.status_code == 413
    assert answer.json() == {
        "status": "Request Entity Too Large",
        "message": "the body is over the 2048 byte limit",
        "errors": ["the body is over the 2048 byte limit"],
    }
    deep = b'{"routing_key": "%s", "event_action": "trigger", "payload": ' % KEY.encode()
    deep += b'{"a": [' * 200 + b"1" + b"]}" * 200 + b"}"
    answer = server.post("/pd/v2/enqueue", content=deep)
    assert answer.status_code == 400
    assert answer.json()["status"] == "invalid event"
    assert "nested more than 100 levels" in answer.json()["errors"][0]
    assert events_of(server) == []


def test_the_routing_key_is_in_no_event_log_or_answer(server: Server) -> None:
    answers: list[httpx.Response] = [
        server.post("/pd/v2/enqueue", trigger(dedup_key="secret-check")),
        server.post("/pd/v2/change/enqueue", {"routing_key": KEY, "payload": {"summary": "deploy"}}),
        server.post("/pd/v2/enqueue", trigger(payload={"summary": "no severity", "source": "h"})),
        server.post("/pd/v2/enqueue", trigger(routing_key=UNKNOWN_KEY)),
        server.post("/pd/nowhere", trigger()),
        server.post("/slow/v2/enqueue", trigger()),
    ]
    assert [a.status_code for a in answers] == [202, 202, 400, 400, 404, 400]
    for answer in answers:
        assert KEY not in answer.text and UNKNOWN_KEY not in answer.text
    wait_until(lambda: len(events_of(server)) == 2, what="two events")
    listed = server.cli("events", "list", "--json").stdout
    assert "secret-check" in listed and KEY not in listed
    stored = stored_bytes(server.store)
    assert b"secret-check" in stored
    assert KEY.encode() not in stored and UNKNOWN_KEY.encode() not in stored
    logs = server.logs()
    assert "refused" in logs
    assert KEY not in logs and UNKNOWN_KEY not in logs


def test_keys_saved_through_the_admin_api_are_sealed_and_live(server_factory: Any) -> None:
    secret_key = "a secret key of at least thirty-two characters"
    server = server_factory(CONFIG, {**ENV, "ALERTBRIDGE_SECRET_KEY": secret_key})
    made = server.cli("tokens", "create", "--org", "default", "--role", "admin", "--name", "ops").stdout.strip()
    admin = {"Authorization": f"Bearer {made}"}
    fresh, bare = "A1b2C3d4E5f6A7b8C9d0E1f2A3b4C5d6", "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
    endpoint = {
        "name": "pd-saved",
        "source": "pagerduty_events",
        "path": "/saved",
        "routing_keys": [{"key": fresh, "name": "checkout", "service": "checkout-api"}, bare],
    }
    saved = server.client.post("/api/v1/endpoints", json=endpoint, headers=admin)
    assert saved.status_code == 201, saved.text
    shown = server.client.get("/api/v1/endpoints/pd-saved", headers=admin)
    assert shown.status_code == 200
    assert fresh not in saved.text + shown.text and bare not in saved.text + shown.text
    keys = shown.json()["settings"]["routing_keys"]
    assert keys[0]["name"] == "checkout" and keys[0]["key"].startswith("••••") and keys[1].startswith("••••")
    # Live at once, with either key; the events name the key, never show it.
    assert server.post("/saved/v2/enqueue", trigger(routing_key=fresh, dedup_key="c1")).status_code == 202
    assert server.post("/saved/v2/enqueue", trigger(routing_key=bare, dedup_key="c2")).status_code == 202
    assert (
        server.post("/saved/v2/enqueue", trigger(dedup_key="c3")).status_code == 400
    )  # the file's key is not this one's
    wait_until(lambda: len(events_of(server)) == 2, what="two events")
    names = {e["dedup_key"]: e["identifiers"]["routing_key_name"] for e in events_of(server)}
    assert names["c1"] == "checkout" and names["c2"].startswith("key-")
    stored = stored_bytes(server.store)
    assert fresh.encode() not in stored and bare.encode() not in stored
    assert fresh not in server.logs() and bare not in server.logs()


def test_check_refuses_a_key_that_is_no_integration_key_without_showing_it(server_factory: Any) -> None:
    short = "not-a-pagerduty-key"
    server = server_factory(CONFIG, {**ENV, "PD_KEY_OTHER": short}, start=False)
    result = server.cli("check", "--config", str(server.config), check=False)
    assert result.returncode != 0
    said = result.stdout + result.stderr
    assert "routing_keys" in said and "32 letters and digits" in said, said
    assert short not in said


V1 = "/generic/2010-04-15/create_event.json"


def test_events_api_v1_is_served_at_its_generic_path(server: Server) -> None:
    """Older integrations (a `service_key`) post PagerDuty's Events API v1: answered 200 with the
    incident_key, as v1 answers, and stored as the same events as v2's."""
    trigger_v1 = {
        "service_key": KEY,
        "event_type": "trigger",
        "description": "FAILURE for production/HTTP on srv01",
        "client": "Nagios",
        "client_url": "https://nagios.example.com",
        "details": {"ping time": "1500ms"},
        "contexts": [
            {"type": "link", "href": "https://nagios.example.com/srv01", "text": "srv01"},
            {"type": "image", "src": "https://nagios.example.com/srv01.png"},
        ],
    }
    first = server.post("/pd" + V1, trigger_v1)
    assert first.status_code == 200
    made = first.json()["incident_key"]
    assert first.json() == {"status": "success", "message": "Event processed", "incident_key": made}
    assert len(made) == 36
    resent = server.post("/pd" + V1, trigger_v1).json()["incident_key"]
    assert resent != made, "sent again without a key: another alert, as at PagerDuty"
    for kind in ("acknowledge", "resolve"):
        answer = server.post("/pd" + V1, {"service_key": KEY, "event_type": kind, "incident_key": made})
        assert (answer.status_code, answer.json()["incident_key"]) == (200, made)
    wait_until(lambda: len(events_of(server)) == 4, what="four events")
    (triggered,) = [e for e in events_of(server, "pagerduty_events.trigger") if e["dedup_key"] == made]
    assert triggered["title"] == "FAILURE for production/HTTP on srv01"
    assert triggered["subject"]["id"] == triggered["dedup_key"] == made
    assert triggered["actor"] == "Nagios" and triggered["url"] == "https://nagios.example.com"
    assert triggered["identifiers"]["routing_key_name"] == "payments"
    assert triggered["raw"]["details"] == {"ping time": "1500ms"} and len(triggered["raw"]["contexts"]) == 2
    assert "service_key" not in triggered["raw"]
    assert {e["kind"] for e in events_of(server)} == {
        f"pagerduty_events.{k}" for k in ("trigger", "acknowledge", "resolve")
    }

    mistakes = [
        ({}, ["Service key can't be blank", "'event_type' is missing or blank"]),
        (
            {"service_key": "abc", "event_type": "trigger"},
            [
                "Service key is the wrong length (should be 32 characters)",
                "'description' is missing or blank",
            ],
        ),
        (
            {"service_key": KEY, "event_type": "snooze"},
            ["event_type is invalid (must be one of: trigger acknowledge resolve)"],
        ),
        ({"service_key": KEY, "event_type": "resolve"}, ["'incident_key' is missing or blank"]),
        (
            {**trigger_v1, "contexts": [{"type": "video"}]},
            ["'contexts[0].type' is invalid (must be one of: link image)"],
        ),
    ]
    for body, errors in mistakes:
        answer = server.post("/pd" + V1, body)
        assert (answer.status_code, answer.json()) == (400, {**INVALID, "errors": errors}), body
    unknown = server.post("/pd" + V1, {**trigger_v1, "service_key": UNKNOWN_KEY})
    assert (unknown.status_code, unknown.json()) == (400, {**INVALID, "errors": ["Invalid service key"]})
    assert len(events_of(server)) == 4


def test_events_api_v1_over_the_rate_is_answered_403_as_v1_does(server: Server) -> None:
    body = {"service_key": SLOW_KEY, "event_type": "trigger", "description": "d"}
    for i in range(2):
        assert server.post("/slow" + V1, {**body, "incident_key": f"v{i}"}).status_code == 200
    refused = server.post("/slow" + V1, {**body, "incident_key": "over"})
    assert refused.status_code == 403
    assert refused.json()["status"] == "throttle exceeded" and "retry-after" in refused.headers


def test_the_rate_window_follows_the_endpoints_clock() -> None:
    """The window on a clock the test drives (the endpoint's): PagerDuty's 120 a minute, looking back
    60 s from now; room again exactly when the oldest call in the window is 60 s old."""
    source = REGISTRY["pagerduty_events"]
    extra = {"routing_keys": [KEY, OTHER_KEY]}
    config = EndpointConfig.model_validate({"name": "clocked", "source": source.name, "path": "/clocked", **extra})
    now = [1_000.0]
    endpoint = Endpoint(config, source, source.settings.model_validate(extra), "default", 1 << 20, lambda: now[0])

    def call(key: str = KEY) -> int:
        body = json.dumps(trigger(routing_key=key)).encode()
        try:
            source.verify(Incoming("POST", "/clocked/v2/enqueue", {}, {}, body), endpoint)
        except Refused as refused:
            assert refused.message == "Requests for this service are arriving too quickly.  Please retry later."
            return int(dict(refused.headers)["retry-after"])
        return 0

    for second in range(120):  # 120 calls over the first two seconds: all taken
        now[0] = 1_000.0 + second / 60
        assert call() == 0
    now[0] = 1_030.0
    assert call() == 30  # the 121st, 30 s on: refused until the first is 60 s old
    assert call(OTHER_KEY) == 0  # another key has its own window
    now[0] = 1_059.99
    assert call() == 1
    now[0] = 1_060.0
    assert call() == 0  # the first call aged out: room for one
    assert call() == 1  # and only one (the second call is 60 s old at 1 060.0167)
