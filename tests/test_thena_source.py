"""The Thena parser on every documented and seen payload shape (no server needed)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertbridge.config import EndpointConfig
from alertbridge.sources import BadPayload, Unauthorized, thena
from alertbridge.sources.base import Endpoint, Incoming


def endpoint() -> Endpoint:
    config = EndpointConfig.model_validate({"name": "t", "source": "thena", "path": "/t", "token": "s3cret"})
    return Endpoint(
        config,
        thena.SOURCE,
        thena.Settings.model_validate({"token": "s3cret"}),
        "default",
        1 << 20,
        clock=lambda: 1_700_000_000.0,
    )


def request(
    body: Any, *, query: dict[str, str] | None = None, headers: dict[str, str] | None = None, method: str = "POST"
) -> Incoming:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Incoming(method, "/t", query or {}, headers or {}, raw)


def wrapped(ticket: dict[str, Any], event_type: str = "ticket:created", event_id: str = "e1") -> dict[str, Any]:
    return {"message": {"eventId": event_id, "eventType": event_type, "payload": {"ticket": ticket}}}


@pytest.mark.parametrize(
    ("assigned", "expected"),
    [
        (None, ()),
        ("Someone@Example.com", ("someone@example.com",)),
        ("U123", ("U123",)),
        ({"email": "A@X.io", "id": "U1", "name": "A"}, ("a@x.io",)),
        ({"id": "U1"}, ("U1",)),
        ([{"email": "a@x.io"}, "b@x.io", {"email": "A@x.io"}], ("a@x.io", "b@x.io")),
        ([], ()),
    ],
)
def test_assigned_to_shapes(assigned: Any, expected: tuple[str, ...]) -> None:
    (event,) = thena.parse(request(wrapped({"id": "T1", "assignedTo": assigned})), endpoint())
    assert event.assignees == expected


def test_assigned_agent_email_comes_first() -> None:
    ticket = {"id": "T1", "assignedTo": "U123", "assignedAgent": {"id": "U123", "email": "Agent@X.io"}}
    (event,) = thena.parse(request(wrapped(ticket)), endpoint())
    assert event.assignees == ("agent@x.io", "U123")


def test_flat_and_sns_string_messages_read_the_same() -> None:
    ticket = {
        "id": "T9",
        "title": "Disk full",
        "priorityName": "Urgent",
        "statusName": "Open",
        "teamName": "Ops",
        "teamId": "TM1",
        "tags": ["db"],
    }
    flat = {
        "eventId": "e9",
        "eventType": "ticket:updated",
        "timestamp": "2026-11-24T10:00:00Z",
        "orgId": "O1",
        "actor": {"email": "bot@x.io"},
        "payload": {"ticket": ticket},
    }
    as_string = {"message": json.dumps(flat)}
    for body in (flat, {"message": flat}, as_string):
        (event,) = thena.parse(request(body), endpoint())
        assert event.kind == "ticket.updated"
        assert event.delivery_key == "e9"
        assert event.subject is not None and event.subject.id == "T9"
        assert (event.title, event.priority, event.severity, event.status) == ("Disk full", "P1", "critical", "Open")
        assert event.teams == ("Ops",)
        assert event.tags == ("db",)
        assert event.actor == "bot@x.io"
        assert event.occurred_at == "2026-11-24T10:00:00Z"
        assert event.identifiers == {"thena_ticket_id": "T9", "thena_team_id": "TM1", "thena_org_id": "O1"}
        assert event.dedup_key == "thena-ticket-T9"


@pytest.mark.parametrize(
    ("name", "priority", "severity"),
    [
        ("High", "P2", "error"),
        ("medium", "P3", "warning"),
        ("Low", "P4", "info"),
        (None, None, "warning"),
        ("Whatever", None, "warning"),
    ],
)
def test_priority_names(name: str | None, priority: str | None, severity: str) -> None:
    (event,) = thena.parse(request(wrapped({"id": "T", "priorityName": name})), endpoint())
    assert (event.priority, event.severity) == (priority, severity)


def test_any_other_event_type_is_its_own_kind() -> None:
    (event,) = thena.parse(request(wrapped({"id": "T"}, "ticket:comment:added")), endpoint())
    assert event.kind == "ticket.comment.added"


def test_installation_events_lose_their_bot_token() -> None:
    body = {
        "installation_id": "I1",
        "event_type": "app:installation",
        "bot_token": "pk_live_secret",
        "team_ids": ["T1"],
    }
    (event,) = thena.parse(request(body), endpoint())
    assert event.kind == "app.installation"
    assert "pk_live_secret" not in json.dumps(event.raw)


@pytest.mark.parametrize("body", [b"{", b"[]", b'"x"', b'{"message": 5}', b'{"message": "not json"}', b"{}"])
def test_unreadable_bodies_are_bad_payloads(body: bytes) -> None:
    with pytest.raises(BadPayload):
        thena.parse(request(body), endpoint())


def test_token_from_query_header_or_bearer() -> None:
    ep = endpoint()
    thena.verify(request({}, query={"token": "s3cret"}), ep)
    thena.verify(request({}, headers={"x-webhook-token": "s3cret"}), ep)
    thena.verify(request({}, headers={"authorization": "Bearer s3cret"}), ep)
    with pytest.raises(Unauthorized) as missing:
        thena.verify(request({}), ep)
    assert missing.value.status == 401
    with pytest.raises(Unauthorized) as wrong:
        thena.verify(request({}, query={"token": "s3cre"}), ep)
    assert wrong.value.status == 403


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    ticket=st.dictionaries(
        st.sampled_from(
            [
                "id",
                "title",
                "assignedTo",
                "assignedAgent",
                "priorityName",
                "tags",
                "teamName",
                "statusName",
                "description",
            ]
        ),
        json_values,
    ),
    event_type=st.text(min_size=1, max_size=30),
    wrap=st.booleans(),
)
def test_any_ticket_shape_parses_or_is_a_bad_payload(ticket: dict[str, Any], event_type: str, wrap: bool) -> None:
    message = {"eventId": "e", "eventType": event_type, "payload": {"ticket": ticket}}
    body = {"message": message} if wrap else message
    try:
        events = thena.parse(request(body), endpoint())
    except BadPayload:
        return
    for event in events:
        assert all(isinstance(a, str) and a for a in event.assignees)
