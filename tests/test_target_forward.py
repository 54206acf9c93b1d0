"""Forward target, unit: the signed Standard Webhooks request it builds and how it reads the answer.

Signatures are checked by `tests/signing.py` (written from the Standard Webhooks spec, not from
our signer); the body is the spec's recommended `{type, timestamp, data}`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from alertbridge.events import Event, Subject
from alertbridge.security import callback_token
from alertbridge.targets.forward import TARGET, Settings

from .answers import NOW, answer, sending
from .signing import standard_webhooks_valid

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks spec's example secret
EVENT = Event(
    id="01JEVENT000000000000000000",
    org="default",
    endpoint="pagerduty",
    source="pagerduty",
    kind="incident.triggered",
    received_at=NOW - 1,
    delivery_key="01G0EKZQVH3NZFMX9MG7S8WH1T",
    subject=Subject("pagerduty", "incident", "PT4KHLK"),
    title="The server is on fire.",
    raw={"event": {"id": "01G0EKZQVH3NZFMX9MG7S8WH1T", "event_type": "incident.triggered"}},
)


def settings(**extra: Any) -> Settings:
    return Settings.model_validate({"url": "https://agent.example.com/hooks", "secret": SECRET, **extra})


def test_event_body_signed_the_standard_webhooks_way() -> None:
    sent = TARGET.request(settings(), "forward", {"context": {"agent": "triage"}}, sending("forward", EVENT))
    assert (sent.method, sent.url, sent.json) == ("POST", "https://agent.example.com/hooks", None)
    assert sent.content is not None
    headers = dict(sent.headers)
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == "01JDELIVERY0000000000000000"  # the delivery's: the same on every retry
    assert headers["webhook-timestamp"] == str(int(NOW))
    assert standard_webhooks_valid(SECRET, headers, sent.content)
    assert not standard_webhooks_valid(SECRET, headers, sent.content + b" ")
    body = json.loads(sent.content)
    assert body["type"] == "incident.triggered"
    assert body["timestamp"] == "2026-11-18T11:06:40+00:00"
    assert body["context"] == {"agent": "triage"}
    assert body["data"]["id"] == EVENT.id and body["data"]["subject"] == {
        "system": "pagerduty",
        "type": "incident",
        "id": "PT4KHLK",
    }
    assert "raw" not in body["data"] and "callback" not in body


def test_raw_body_is_the_senders_payload() -> None:
    sent = TARGET.request(settings(body="raw"), "forward", {}, sending("forward", EVENT))
    assert sent.content is not None and json.loads(sent.content) == EVENT.raw
    assert standard_webhooks_valid(SECRET, dict(sent.headers), sent.content)


def test_callback_carries_a_token_for_this_event() -> None:
    own = settings(callback_url="https://bridge.example.com/agent")
    sent = TARGET.request(own, "forward", {}, sending("forward", EVENT))
    assert sent.content is not None
    assert json.loads(sent.content)["callback"] == {
        "url": "https://bridge.example.com/agent",
        "event_id": EVENT.id,
        "token": callback_token(SECRET, EVENT.id),
    }


def test_headers_and_team_token() -> None:
    own = settings(headers={"X-Api-Key": "k1"}, team_token_header="Authorization", team_token_prefix="Bearer ")
    sent = TARGET.request(own, "forward", {}, sending("forward", EVENT, team_token="tt-1"))
    assert sent.headers["X-Api-Key"] == "k1"
    assert sent.headers["Authorization"] == "Bearer tt-1"
    unsigned = Settings.model_validate({"url": "http://127.0.0.1:9/"})
    bare = TARGET.request(unsigned, "forward", {}, sending("forward", EVENT, team_token="tt-1"))
    assert "webhook-signature" not in bare.headers and "Authorization" not in bare.headers


NOTE = {"note": "Root cause: a full disk on db-2."}


def test_an_answer_with_a_note_becomes_a_note_on_the_incident() -> None:
    outcome = TARGET.classify(answer(200, NOTE), settings(notes_to="pd"), {}, sending("forward", EVENT))
    assert outcome.kind == "success"
    assert [(f.target, f.action, f.fields) for f in outcome.follow_ups] == [
        ("pd", "note", {"incident_id": "PT4KHLK", "content": NOTE["note"]})
    ]


@pytest.mark.parametrize(
    ("status", "body", "notes_to"),
    [(200, NOTE, None), (202, b"", "pd"), (200, {"note": "  "}, "pd"), (204, b"", "pd"), (200, b"accepted", "pd")],
)
def test_other_successes_are_done(status: int, body: Any, notes_to: str | None) -> None:
    outcome = TARGET.classify(answer(status, body), settings(notes_to=notes_to), {}, sending("forward", EVENT))
    assert (outcome.kind, outcome.message, outcome.follow_ups) == ("success", f"HTTP {status}", ())


@pytest.mark.parametrize(
    ("status", "headers", "kind", "wait"),
    [
        (429, {"Retry-After": "10"}, "retry", 10.0),
        (429, {}, "retry", None),
        (502, {}, "retry", None),
        (504, {}, "retry", None),
        (400, {}, "permanent", None),
        (401, {}, "permanent", None),
        (404, {}, "permanent", None),
        (409, {}, "permanent", None),
        (410, {}, "permanent", None),  # Standard Webhooks: 410 Gone means stop sending
    ],
)
def test_failures(status: int, headers: dict[str, str], kind: str, wait: float | None) -> None:
    outcome = TARGET.classify(answer(status, {"error": "no"}, headers), settings(), {}, sending("forward", EVENT))
    assert (outcome.kind, outcome.retry_after, outcome.message) == (kind, wait, "no")
