"""Every source's parser on arbitrary JSON: it makes events or raises BadPayload, never anything else.

A sender that passed the credential check can still send anything; an exception other than
BadPayload would be answered 500, which tells the sender to retry the same body for ever. The
JSON here is drawn with the keys the parsers look for, so that odd values (a list where an object
is expected, a huge number as a timestamp, nesting thousands of levels deep) reach the code that
reads them. What a parser returns must also be storable (the event encodes and decodes). A source
that speaks an API may instead refuse with a 4xx of that API (`Refused`, e.g. Opsgenie's 422).
"""

from __future__ import annotations

import itertools
import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertbridge import events
from alertbridge.config import EndpointConfig
from alertbridge.sources import REGISTRY, BadPayload, Refused
from alertbridge.sources.base import Endpoint, Incoming, Source

# Keys and values the parsers look for, so that drawn documents reach past the first checks.
KEYS_TEXT = (
    "message event data payload ticket messages action alert event_type eventType eventId event_id type id "
    "note title agent channel ts event_ts event_time item team team_id user text actions value container "
    "message_ts view callback_id trigger_id repository full_name issue pull_request comment number html_url "
    "incident incident_key service summary priority urgency status assignees assignments assignee "
    "routing_key event_action dedup_key client client_url links images href src component group class "
    "created_on occurred_at log_entries teams alertId alias tinyId tags details source entity responders "
    "integrationName alertFlowContext requestId visibleTo updatedAt createdAt priorityName statusName assignedTo "
    "assignedAgent email name orgId actor timestamp alert_source custom_field_entries severity url kind "
    "Type MessageId TopicArn Subject Message Timestamp AlarmName AlarmArn NewStateValue Trigger "
    "alerts labels annotations startsAt endsAt fingerprint generatorURL groupKey receiver commonLabels "
    "alertname job panelURL dashboardURL values "
    "externalURL"
)
VALUES_TEXT = (
    "incident.triggered incident.acknowledged incident.resolved incident.annotated incident.trigger "
    "ticket:created ticket:updated app:installation Create Acknowledge AddNote Close "
    "public_incident.incident_created_v2 public_alert.alert_created_v1 app_mention message "
    "block_actions event_callback url_verification P1 high critical "
    "Notification SubscriptionConfirmation UnsubscribeConfirmation ALARM OK INSUFFICIENT_DATA "
    "firing resolved "
    "trigger acknowledge resolve R0UT1NGKEY0000000000000000000001"
)
KEYS, VALUES = KEYS_TEXT.split(), VALUES_TEXT.split()

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.sampled_from([0, -1, 10**12, 2**63, 10**30, 1e300, -1e300])  # odd where a time or a count goes
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(VALUES)
)
keys = st.sampled_from(KEYS) | st.text(max_size=8)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=40,
)

SECRETS: dict[str, dict[str, Any]] = {
    "thena": {"token": "t"},
    "pagerduty": {"secret": "s", "integration_key": ["R0UTING", "PSUB1"]},
    "opsgenie": {"token": "t"},
    "slack": {"signing_secret": "s"},
    "github": {"secret": "s"},
    "incidentio": {"secret": "whsec_c2VjcmV0"},
    "alertmanager": {"token": "t"},
    "grafana": {"hmac": {"secret": "s"}},
    "generic": {
        "token": "t",
        "fields": {
            "kind": "kind",
            "title": "title",
            "service": "service.name",
            "subject_id": "id",
            "assignees": "assignees[*].email",
            "identifiers": {"team": "team.id"},
        },
    },
    "agent": {"secret": "s"},
    "opsgenie_api": {"api_keys": ["k"]},
    "sns": {"topics": ["arn:aws:sns:us-east-1:123456789012:alarms"]},
    "pagerduty_events": {"routing_keys": ["R0UT1NGKEY0000000000000000000001"]},
    # The generic source again, making one event per element of `alerts` (`each`).
    "generic:each": {
        "token": "t",
        "each": "alerts",
        "fields": {
            "delivery_key": "fingerprint",
            "title": "labels.alertname",
            "url": "payload().externalURL",
            "tags": "labels.*",
            "identifiers": {"receiver": "payload().receiver"},
        },
    },
}
# Where a source that serves paths under its endpoint's takes a body (default: the endpoint's path).
PATHS = {"opsgenie_api": "/opsgenie_api/v2/alerts"}


def path_of(source: str) -> str:
    return PATHS.get(source, f"/{source}")


HEADERS: dict[str, list[dict[str, str]]] = {
    "github": [{"x-github-event": name} for name in ("issues", "pull_request", "issue_comment", "push", "ping")],
    "slack": [{"content-type": "application/json"}, {"content-type": "application/x-www-form-urlencoded"}],
}


def module_of(name: str) -> Source:
    """The source a SECRETS entry configures: its name, up to a `:` that tells two settings apart."""
    return REGISTRY[name.partition(":")[0]]


def endpoint(source: str) -> Endpoint:
    module = module_of(source)
    extra = SECRETS[source]
    config = EndpointConfig.model_validate({"name": source, "source": module.name, "path": f"/{source}", **extra})
    return Endpoint(config, module, module.settings.model_validate(extra), "default", 1 << 20, lambda: 1.8e9)


def request(source: str, document: Any, variant: int = 0) -> Incoming:
    headers = dict(HEADERS.get(source, [{}])[variant % len(HEADERS.get(source, [{}]))])
    body = json.dumps(document).encode()
    if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        body = b"payload=" + quote(body).encode()
    return Incoming("POST", path_of(source), {}, headers, body)


def parses_or_refuses(source: str, incoming: Incoming) -> None:
    """The property: events that can be stored, or BadPayload; nothing else gets out."""
    try:
        made = module_of(source).parse(incoming, endpoint(source))
    except BadPayload as exc:
        assert str(exc), "a refusal says why"
        return
    except Refused as exc:
        assert 400 <= exc.status < 500 and exc.message, "an API's own refusal: a 4xx that says why"
        return
    for event in made:
        assert events.decode(events.encode(event)) == event


@pytest.mark.parametrize("source", sorted(SECRETS))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=documents, variant=st.integers(0, 4))
def test_arbitrary_json(source: str, document: Any, variant: int) -> None:
    parses_or_refuses(source, request(source, document, variant))


# Where each source expects an object, in a document that is otherwise right: arbitrary values go there.
PDV2 = {"messages": [{"id": "M1", "event": "incident.trigger", "incident": {"id": "P1"}}]}
ALERTS = {"status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "A"}, "startsAt": "t"}]}
ALERT_PLACES = (
    "alerts",
    "alerts.0",
    "alerts.0.labels",
    "alerts.0.annotations",
    "alerts.0.labels.severity",
    "alerts.0.status",
    "alerts.0.fingerprint",
    "status",
)
SHAPES: dict[str, list[tuple[dict[str, Any], str]]] = {
    "thena": [
        ({"message": {"eventId": "e1", "eventType": "ticket:created", "payload": {"ticket": {"id": "T1"}}}}, path)
        for path in ("message", "message.payload", "message.payload.ticket", "message.payload.ticket.assignedTo")
    ],
    "pagerduty": [
        ({"event": {"id": "E1", "event_type": "incident.triggered", "data": {"id": "P1", "type": "incident"}}}, path)
        for path in ("event", "event.data", "event.data.service", "event.data.assignees", "event.data.integration")
    ]
    + [(PDV2, path) for path in ("messages", "messages.0.incident", "messages.0.log_entries", "messages.0.webhook")]
    + [(PDV2, "messages.0.incident.alerts"), (PDV2, "messages.0.incident.first_trigger_log_entry")],
    "opsgenie": [
        ({"action": "Create", "alert": {"alertId": "A1", "message": "m"}}, path)
        for path in ("alert", "alertFlowContext", "alert.details", "alert.tags", "alert.responders")
    ],
    "slack": [
        ({"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_mention", "channel": "C1"}}, path)
        for path in ("event", "event.item", "event_time", "event_id", "actions", "container", "user")
    ],
    "github": [
        ({"action": "opened", "repository": {"full_name": "a/b"}, "issue": {"number": 1}}, path)
        for path in ("repository", "issue", "pull_request", "comment", "sender")
    ],
    "incidentio": [
        ({"event_type": "public_incident.incident_created_v2"}, "public_incident.incident_created_v2"),
        ({"event_type": "public_alert.alert_created_v1"}, "public_alert.alert_created_v1"),
    ],
    "alertmanager": [(ALERTS, path) for path in ALERT_PLACES],
    "grafana": [(ALERTS, path) for path in ALERT_PLACES],
    "generic": [({"kind": "k", "id": "1"}, path) for path in ("service", "assignees", "team", "title")],
    "agent": [({"event_id": "E1", "note": "n"}, path) for path in ("note", "event_id", "title", "agent")],
    "opsgenie_api": [
        ({"message": "m", "alias": "a"}, path)
        for path in ("details", "responders", "visibleTo", "tags", "actions", "priority", "message", "alias", "note")
    ],
    "sns": [
        ({"Type": "Notification", "MessageId": "m1", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": m}, path)
        for m in ('{"AlarmName": "a", "NewStateValue": "ALARM", "AlarmArn": "arn:aws:cloudwatch:r:1:alarm:a"}', "hi")
        for path in ("Type", "MessageId", "TopicArn", "Message", "Subject", "Timestamp")
    ],
    "pagerduty_events": [
        (
            {
                "routing_key": "R0UT1NGKEY0000000000000000000001",
                "event_action": "trigger",
                "payload": {"summary": "s", "source": "h", "severity": "critical"},
            },
            path,
        )
        for path in ("payload", "payload.summary", "payload.severity", "event_action", "dedup_key", "links", "images")
    ]
    + [({"routing_key": "R0UT1NGKEY0000000000000000000001", "event_action": "trigger"}, "client_url")],
    "generic:each": [
        ({"externalURL": "u", "alerts": [{"fingerprint": "f", "labels": {"alertname": "a"}}]}, path)
        for path in ("alerts", "alerts.0", "alerts.0.labels", "alerts.0.fingerprint", "externalURL")
    ],
}


MISSING = object()  # placed at a path: the key is taken out instead


def placed(skeleton: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `skeleton` with `value` at the dotted `path` (a number indexes a list), or without it."""
    document = json.loads(json.dumps(skeleton))
    parts = path.split(".")
    here: Any = document
    for part, after in itertools.pairwise(parts):
        here = here[int(part)] if isinstance(here, list) else here.setdefault(part, [{}] if after.isdigit() else {})
    if isinstance(here, list):
        here[int(parts[-1])] = None if value is MISSING else value
    elif value is MISSING:
        here.pop(parts[-1], None)
    else:
        here[parts[-1]] = value
    return document


@pytest.mark.parametrize("source", sorted(SECRETS))
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), value=documents, variant=st.integers(0, 4))
def test_odd_values_where_objects_are_expected(source: str, data: st.DataObject, value: Any, variant: int) -> None:
    skeleton, path = data.draw(st.sampled_from(SHAPES[source]))
    if data.draw(st.integers(0, 9)) == 0:
        value = MISSING
    parses_or_refuses(source, request(source, placed(skeleton, path, value), variant))


ODD = [None, True, 0, -1, 1.5, 10**12, 2**63, 10**30, 1e300, "", "x", [], [1], ["x"], {}, {"a": 1}, [{}], MISSING]


@pytest.mark.parametrize("source", sorted(SECRETS))
def test_each_odd_value_at_each_place(source: str) -> None:
    """The same, every value at every place: what a random draw may take many runs to hit."""
    for skeleton, path in SHAPES[source]:
        for value in ODD:
            for variant in range(len(HEADERS.get(source, [{}]))):
                parses_or_refuses(source, request(source, placed(skeleton, path, value), variant))


ALARM = {
    "AlarmName": "a",
    "NewStateValue": "ALARM",
    "NewStateReason": "r",
    "StateChangeTime": "2026-01-01T00:00:00.000+0000",
    "AlarmArn": "arn:aws:cloudwatch:us-east-1:1:alarm:a",
    "AWSAccountId": "1",
    "Region": "US East (N. Virginia)",
    "Trigger": {"MetricName": "m", "Namespace": "n"},
}


def test_each_odd_value_inside_an_alarm_message() -> None:
    """SNS carries a CloudWatch alarm as JSON inside the `Message` string: odd values there too."""
    for path in (*ALARM, "Trigger.MetricName", "Trigger.Namespace"):
        for value in ODD:
            alarm = json.dumps(placed(ALARM, path, value))
            message = {
                "Type": "Notification",
                "MessageId": "m1",
                "TopicArn": "arn:aws:sns:us-east-1:1:t",
                "Message": alarm,
            }
            parses_or_refuses("sns", request("sns", message))


DEEP = "\u0000deep"  # stands where the deep value goes; json.dumps would recurse into the real thing


def deep_body(document: Any, depth: int, form: bool) -> bytes:
    """`document` as JSON with `depth` levels of alternating lists and objects where DEEP stands."""
    nested = "".join('{"data":' if level % 2 else "[" for level in range(depth)) + "1"
    nested += "".join("}" if level % 2 else "]" for level in reversed(range(depth)))
    text = json.dumps(document).replace(json.dumps(DEEP), nested)
    return b"payload=" + quote(text).encode() if form else text.encode()


@pytest.mark.parametrize("source", sorted(SECRETS))
@pytest.mark.parametrize("depth", [200, 3_000, 50_000])
def test_deep_nesting_is_refused_with_a_reason(source: str, depth: int) -> None:
    """Thousands of levels is no webhook: refused, naming the limit, at the top or inside the shape."""
    for headers in HEADERS.get(source, [{}]):
        if headers.get("x-github-event") == "ping":
            continue  # a ping's body is not read
        form = headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
        places = [*SHAPES[source], ({}, "")]
        for skeleton, path in places:
            document = placed(skeleton, path, DEEP) if path else DEEP
            incoming = Incoming("POST", path_of(source), {}, headers, deep_body(document, depth, form))
            with pytest.raises(BadPayload, match="nested more than"):
                module_of(source).parse(incoming, endpoint(source))


@pytest.mark.parametrize("source", sorted(SECRETS))
def test_ordinary_nesting_is_taken(source: str) -> None:
    """Real payloads nest a few levels, some a few dozen: well within the limit, and made into events."""
    skeleton, path = SHAPES[source][0]
    for variant, headers in enumerate(HEADERS.get(source, [{}])):
        form = headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
        incoming = Incoming("POST", path_of(source), {}, headers, deep_body(placed(skeleton, path, DEEP), 40, form))
        parses_or_refuses(source, incoming)
        if headers.get("x-github-event") != "ping":
            assert module_of(source).parse(request(source, skeleton, variant), endpoint(source))


# The PagerDuty Events door also takes Events API v1 at a path of its own: the same property there.
EVENTS_V1_PATH = "/pagerduty_events/generic/2010-04-15/create_event.json"
EVENTS_V1_SHAPE = {
    "service_key": "R0UT1NGKEY0000000000000000000001",
    "event_type": "trigger",
    "description": "d",
    "contexts": [{"type": "link", "href": "https://example.com"}],
}


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), value=documents)
def test_events_api_v1_odd_values(data: st.DataObject, value: Any) -> None:
    path = data.draw(st.sampled_from(["contexts", "contexts.0", "contexts.0.type", "event_type", "incident_key"]))
    document = placed(EVENTS_V1_SHAPE, path, MISSING if data.draw(st.integers(0, 9)) == 0 else value)
    try:
        made = REGISTRY["pagerduty_events"].parse(
            Incoming("POST", EVENTS_V1_PATH, {}, {}, json.dumps(document).encode()),
            endpoint("pagerduty_events"),
        )
    except BadPayload as exc:
        assert str(exc)
        return
    for event in made:
        assert events.decode(events.encode(event)) == event
