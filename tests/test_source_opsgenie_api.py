"""The Opsgenie Alert API door over real HTTP: Opsgenie's own SDK (`opsgenie-sdk`) creates, acknowledges,
adds notes to and closes alerts through it and understands its answers; raw requests show each refusal in
Opsgenie's shape and that a refused request stores nothing and the key shows up nowhere."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import opsgenie_sdk
import pytest

from .backends import stored_bytes
from .conftest import Server, wait_until
from .fakes.pagerduty import FakePagerDutyEvents

KEY = "og-door-key-5c1e7a9d"
OLD_KEY = "og-door-key-previous-77b2"
UNKNOWN_REQUEST = "0b0e7c4e-59c1-4bd4-9a55-0d4c1e3b1f0a"  # a UUID alertbridge did not make
ALIAS = "disk/db-1 var"  # a slash and a space: the SDK escapes them in the path, the door reads them back
PROCESSABLE = "Request body is not processable. Please check the errors."

CONFIG = """
endpoints:
  - name: opsgenie-door
    source: opsgenie_api
    path: /opsgenie
    max_body_bytes: 65536
    api_keys: ["${OG_KEY}", "${OG_OLD_KEY}"]
"""


@pytest.fixture
def door(server_factory: Callable[..., Server]) -> Server:
    return server_factory(CONFIG, {"OG_KEY": KEY, "OG_OLD_KEY": OLD_KEY})


def alert_api(server: Server, key: str | None = KEY) -> opsgenie_sdk.AlertApi:
    """Opsgenie's SDK, set up as a tool would be after its `api_url` is moved to alertbridge."""
    configuration = opsgenie_sdk.Configuration()
    configuration.host = f"{server.url}/opsgenie"
    # Configuration() is a shallow copy of one default: its key dicts are shared unless replaced.
    configuration.api_key, configuration.api_key_prefix = {}, {}
    if key is not None:
        configuration.api_key["Authorization"] = key
        configuration.api_key_prefix["Authorization"] = "GenieKey"
    configuration.retry_enabled = False  # a refusal must surface as the SDK's exception, not be retried
    return opsgenie_sdk.AlertApi(opsgenie_sdk.ApiClient(configuration))


def events_by_kind(server: Server, count: int) -> dict[str, dict[str, Any]]:
    found = wait_until(lambda: len(server.events()) >= count and server.events(), what=f"{count} events")
    return {row["event"]["kind"]: row["event"] for row in found}


def test_the_sdk_creates_acknowledges_notes_and_closes_by_alias(door: Server) -> None:
    api = alert_api(door)
    created = api.create_alert(
        opsgenie_sdk.CreateAlertPayload(
            message="Disk full on db-1",
            alias=ALIAS,
            description="/var is at 99 %",
            # As the SDK's own samples give them: its TeamRecipient model leaves out the `type` Opsgenie needs.
            responders=[{"type": "team", "name": "storage"}, {"type": "user", "username": "ann@x.io"}],
            tags=["disk", "prod"],
            details={"host": "db-1", "region": "eu"},
            entity="db-1",
            source="nagios",
            priority="P2",
            user="nagios-bot",
            note="first seen at 12:00",
        )
    )
    assert isinstance(created, opsgenie_sdk.SuccessResponse)
    assert created.result == "Request will be processed" and created.request_id and created.took is not None
    acked = api.acknowledge_alert(
        ALIAS, identifier_type="alias", acknowledge_alert_payload=opsgenie_sdk.AcknowledgeAlertPayload(user="ann")
    )
    noted = api.add_note(
        ALIAS, opsgenie_sdk.AddNoteToAlertPayload(user="ann", note="cleaning /var/log"), identifier_type="alias"
    )
    closed = api.close_alert(
        ALIAS, identifier_type="alias", close_alert_payload=opsgenie_sdk.CloseAlertPayload(note="done")
    )
    ids = {created.request_id, acked.request_id, noted.request_id, closed.request_id}
    assert len(ids) == 4, "each request has its own id"

    events = events_by_kind(door, 4)
    assert set(events) == {"opsgenie_api.create", "opsgenie_api.acknowledge", "opsgenie_api.note", "opsgenie_api.close"}
    create = events["opsgenie_api.create"]
    assert create["title"] == "Disk full on db-1" and create["description"] == "/var is at 99 %"
    assert (create["priority"], create["severity"]) == ("P2", "error")
    assert create["tags"] == ["disk", "prod"] and create["labels"] == {"host": "db-1", "region": "eu"}
    assert create["teams"] == ["storage"] and create["assignees"] == ["ann@x.io"]
    assert (create["actor"], create["note"]) == ("nagios-bot", "first seen at 12:00")
    assert create["identifiers"]["opsgenie_api_alias"] == ALIAS
    assert create["identifiers"]["opsgenie_api_entity"] == "db-1"
    assert create["identifiers"]["opsgenie_api_source"] == "nagios"
    assert create["identifiers"]["opsgenie_api_request_id"] == created.request_id
    subject = create["subject"]
    assert subject["system"] == "opsgenie_api" and subject["type"] == "alert"
    for kind in ("opsgenie_api.acknowledge", "opsgenie_api.note", "opsgenie_api.close"):
        assert events[kind]["subject"] == subject, f"{kind} reaches the alert the create made"
        assert events[kind]["dedup_key"] == subject["id"] == create["dedup_key"]
    assert events["opsgenie_api.acknowledge"]["actor"] == "ann"
    assert events["opsgenie_api.note"]["note"] == "cleaning /var/log"
    assert events["opsgenie_api.close"]["note"] == "done"


def test_the_sdk_learns_the_alert_id_from_the_request_status_and_closes_by_id(door: Server) -> None:
    api = alert_api(door)
    created = api.create_alert(opsgenie_sdk.CreateAlertPayload(message="no alias given"))
    status = api.get_request_status(created.request_id)
    assert isinstance(status, opsgenie_sdk.GetRequestStatusResponse)
    assert status.data.action == "Create" and status.data.is_success is True
    alert_id = status.data.alert_id
    assert alert_id

    acked = api.acknowledge_alert(alert_id, identifier_type="id")
    closed = api.close_alert(alert_id)  # identifierType defaults to id
    assert api.get_request_status(closed.request_id).data.action == "Close"
    assert api.get_request_status(acked.request_id).data.alert_id == alert_id

    events = events_by_kind(door, 3)
    create = events["opsgenie_api.create"]
    assert create["subject"]["id"] == alert_id and create["priority"] == "P3", "Opsgenie's default priority"
    assert create["identifiers"]["opsgenie_api_alias"], "an alias-less create is given one, as by Opsgenie"
    assert events["opsgenie_api.close"]["dedup_key"] == create["dedup_key"] == alert_id, "one alert, by id or alias"
    assert events["opsgenie_api.close"]["subject"] == create["subject"]
    assert events["opsgenie_api.acknowledge"]["subject"] == create["subject"]

    # A second alias-less create is another alert: Opsgenie gives each its own alias.
    other = api.get_request_status(api.create_alert(opsgenie_sdk.CreateAlertPayload(message="again")).request_id)
    assert other.data.alert_id != alert_id


def test_the_sdk_raises_its_exceptions_on_refusals_and_nothing_is_stored(door: Server) -> None:
    with pytest.raises(opsgenie_sdk.exceptions.ConfigurationException) as invalid:
        alert_api(door).create_alert(opsgenie_sdk.CreateAlertPayload(message="x" * 131))
    assert invalid.value.status == 422
    body = json.loads(invalid.value.body)
    assert body["message"] == PROCESSABLE and set(body["errors"]) == {"message"}

    with pytest.raises(opsgenie_sdk.exceptions.AuthenticationException) as denied:
        alert_api(door, key="not-the-key").create_alert(opsgenie_sdk.CreateAlertPayload(message="m"))
    assert denied.value.status == 403
    with pytest.raises(opsgenie_sdk.exceptions.AuthenticationException) as anonymous:
        alert_api(door, key=None).create_alert(opsgenie_sdk.CreateAlertPayload(message="m"))
    assert anonymous.value.status == 401
    assert json.loads(anonymous.value.body)["message"].startswith("Could not authenticate")
    with pytest.raises(opsgenie_sdk.exceptions.ApiException) as unknown:
        alert_api(door).get_request_status(UNKNOWN_REQUEST)
    assert unknown.value.status == 404
    assert door.events() == []

    # A request id alertbridge made, with one digit of it changed, is not one alertbridge made.
    made = alert_api(door).create_alert(opsgenie_sdk.CreateAlertPayload(message="m")).request_id
    assert alert_api(door).get_request_status(made).data.alert_id
    for position in (0, 15, 35):
        changed = made[:position] + ("0" if made[position] != "0" else "1") + made[position + 1 :]
        with pytest.raises(opsgenie_sdk.exceptions.ApiException) as forged:
            alert_api(door).get_request_status(changed)
        assert forged.value.status == 404, changed


def _error_body(answer: Any) -> dict[str, Any]:
    body = answer.json()
    assert isinstance(body["took"], float) and body["requestId"], body
    return body


def _post(server: Server, path: str, body: Any, key: str | None = KEY) -> Any:
    headers = {"Authorization": f"GenieKey {key}"} if key else {}
    return server.post(path, body, headers=headers)


ONE_OF_PRIORITIES = "should be one of [ P1, P2, P3, P4, P5 ]"  # Opsgenie's own words
INVALID: list[tuple[str, Any, dict[str, str]]] = [
    ("/opsgenie/v2/alerts", {"alias": "a"}, {"message": "Message can not be empty."}),
    ("/opsgenie/v2/alerts", {"message": "   "}, {"message": "Message can not be empty."}),
    ("/opsgenie/v2/alerts", {"message": 5}, {"message": "should be a string"}),
    ("/opsgenie/v2/alerts", {"message": "m" * 131}, {"message": "should be at most 130 characters (it has 131)"}),
    (
        "/opsgenie/v2/alerts",
        {"message": "m", "priority": "P9"},
        {"priority": ONE_OF_PRIORITIES},
    ),
    ("/opsgenie/v2/alerts", {"message": "m", "priority": 1}, {"priority": ONE_OF_PRIORITIES}),
    (
        "/opsgenie/v2/alerts",
        {"message": "m", "alias": "a" * 513},
        {"alias": "should be at most 512 characters (it has 513)"},
    ),
    ("/opsgenie/v2/alerts", {"message": "m", "tags": "disk"}, {"tags": "should be a list of strings"}),
    (
        "/opsgenie/v2/alerts",
        {"message": "m", "details": {"n": 1}},
        {"details": "should be a map of strings to strings"},
    ),
    (
        "/opsgenie/v2/alerts",
        {"message": "m", "responders": [{"type": "team"}]},
        {"responders[0]": "id or name should be provided"},
    ),
    (
        "/opsgenie/v2/alerts",
        {"message": "", "priority": "high", "visibleTo": [{"type": "robot", "id": "r"}]},
        {
            "message": "Message can not be empty.",
            "priority": ONE_OF_PRIORITIES,
            "visibleTo[0]": "type should be one of [ team, user, escalation, schedule ]",
        },
    ),
    ("/opsgenie/v2/alerts/a/notes?identifierType=alias", {"user": "ann"}, {"note": "Note can not be empty."}),
    ("/opsgenie/v2/alerts/a/close?identifierType=name", {}, {"identifierType": "should be one of [ id, alias, tiny ]"}),
    (
        "/opsgenie/v2/alerts/12/close?identifierType=tiny",
        {},
        {"identifierType": "alertbridge hands out no tiny ids: use the id or the alias"},
    ),
]


def test_each_invalid_request_is_a_422_in_opsgenies_shape_and_stores_nothing(door: Server) -> None:
    for path, body, errors in INVALID:
        answer = _post(door, path, body)
        assert answer.status_code == 422, (path, body, answer.text)
        assert _error_body(answer) | {"took": 0, "requestId": ""} == {
            "message": PROCESSABLE,
            "errors": errors,
            "took": 0,
            "requestId": "",
        }, (path, body)
    assert door.events() == []
    assert door.metric("alertbridge_requests_refused_total", endpoint="opsgenie-door", reason="invalid") == len(INVALID)


def test_a_missing_or_wrong_genie_key_is_refused_and_stores_nothing(door: Server) -> None:
    for headers, status in [
        ({}, 401),
        ({"Authorization": f"Bearer {KEY}"}, 401),
        ({"Authorization": "GenieKey"}, 401),
        ({"Authorization": "GenieKey wrong-key"}, 403),
        ({"Authorization": f"GenieKey {KEY}x"}, 403),
    ]:
        answer = door.post("/opsgenie/v2/alerts", {"message": "m"}, headers=headers)
        assert answer.status_code == status, (headers, answer.text)
        assert _error_body(answer)["message"].startswith("Could not authenticate"), answer.text
        status_answer = door.client.get(
            "/opsgenie/v2/alerts/requests/0b0e7c4e-59c1-4bd4-9a55-0d4c1e3b1f0a", headers=headers
        )
        assert status_answer.status_code == status
    assert door.events() == []
    # The key being rotated out still works, beside the current one.
    assert _post(door, "/opsgenie/v2/alerts", {"message": "m"}, key=OLD_KEY).status_code == 202
    wait_until(lambda: len(door.events()) == 1, what="the event sent with the old key")


def test_unreadable_oversized_and_deeply_nested_bodies_are_refused(door: Server) -> None:
    not_json = door.post("/opsgenie/v2/alerts", content=b"{message: m", headers={"Authorization": f"GenieKey {KEY}"})
    assert not_json.status_code == 400 and "not valid JSON" in _error_body(not_json)["message"]
    not_object = _post(door, "/opsgenie/v2/alerts", ["message"])
    assert not_object.status_code == 400 and "JSON object" in _error_body(not_object)["message"]
    large = _post(door, "/opsgenie/v2/alerts", {"message": "m", "description": "d" * 70000})
    assert large.status_code == 413 and "byte limit" in _error_body(large)["message"]
    deep = door.post(
        "/opsgenie/v2/alerts",
        content=b'{"message": "m", "details": ' + b'{"a":' * 500 + b"1" + b"}" * 500 + b"}",
        headers={"Authorization": f"GenieKey {KEY}"},
    )
    assert deep.status_code == 400 and "nested more than 100 levels" in _error_body(deep)["message"]
    assert door.events() == []


def test_paths_that_are_not_the_alert_api_are_404_and_wrong_methods_405(door: Server) -> None:
    for path in (
        "/opsgenie/v2/alerts/a/escalate",
        "/opsgenie/v1/alerts",
        "/opsgenie/v2/incidents",
        "/opsgenie/v2/alerts/a/close/again",
        "/opsgenie/v2/alerts//close",
    ):
        answer = _post(door, path, {"message": "m"})
        assert answer.status_code == 404, (path, answer.text)
        assert _error_body(answer)["message"] == "Resource or handler not found"
    unknown_id = _post(door, "/opsgenie/v2/alerts/5f0dc269-2d7c-4d8f/close", {})
    assert unknown_id.status_code == 404 and "not one alertbridge gave out" in _error_body(unknown_id)["message"]
    listing = door.client.get("/opsgenie/v2/alerts", headers={"Authorization": f"GenieKey {KEY}"})
    assert listing.status_code == 405 and "use POST" in _error_body(listing)["message"]
    deleted = door.client.delete("/opsgenie/v2/alerts/a", headers={"Authorization": f"GenieKey {KEY}"})
    assert deleted.status_code == 405
    assert door.events() == []


def test_the_key_appears_in_no_stored_event_log_or_answer(door: Server, store_url: str) -> None:
    answers = [
        _post(door, "/opsgenie/v2/alerts", {"message": "m", "alias": "k"}),
        _post(door, "/opsgenie/v2/alerts/k/close?identifierType=alias", {"note": "n"}),
        _post(door, "/opsgenie/v2/alerts", {"message": "m", "priority": "P0"}),
        _post(door, "/opsgenie/v2/alerts", {"message": "m"}, key=KEY + "-wrong"),
        door.post("/opsgenie/v2/alerts", {"message": "m"}),
    ]
    assert [a.status_code for a in answers] == [202, 202, 422, 403, 401]
    wait_until(lambda: len(door.events()) == 2, what="the two accepted requests")
    for answer in answers:
        assert KEY not in answer.text and KEY not in str(answer.headers)
    assert KEY not in json.dumps(door.events())
    assert KEY.encode() not in stored_bytes(store_url)
    assert KEY not in door.logs()


ROUTED = (
    CONFIG
    + """
targets:
  - name: pagerduty
    type: pagerduty_events
    routing_key: "${PD_KEY}"
    url: "${PD_URL}"
routes:
  - name: door-create
    match: { kind: opsgenie_api.create }
    actions:
      - target: pagerduty
        action: trigger
        dedup_key: "og-{{ event.subject.id }}"
        summary: "{{ event.title }}"
  - name: door-close
    match: { kind: opsgenie_api.close }
    actions:
      - target: pagerduty
        action: resolve
        dedup_key: "og-{{ event.subject.id }}"
"""
)


def test_a_tool_moved_off_opsgenie_pages_and_resolves_through_routes(server_factory: Callable[..., Server]) -> None:
    """The docs' example: creates trigger, closes resolve, whether the close names the alias or the id."""
    with FakePagerDutyEvents() as pagerduty:
        env = {"OG_KEY": KEY, "OG_OLD_KEY": OLD_KEY, "PD_KEY": "R" * 32, "PD_URL": f"{pagerduty.url}/v2/enqueue"}
        api = alert_api(server_factory(ROUTED, env))
        api.create_alert(opsgenie_sdk.CreateAlertPayload(message="by alias", alias="cpu-web-1", priority="P1"))
        by_id = api.create_alert(opsgenie_sdk.CreateAlertPayload(message="by id"))
        wait_until(lambda: len(pagerduty.incidents) == 2, 15, "both alerts paged")
        api.close_alert("cpu-web-1", identifier_type="alias")
        api.close_alert(api.get_request_status(by_id.request_id).data.alert_id)
        wait_until(lambda: all(i.status == "resolved" for i in pagerduty.incidents), 15, "both resolved")
        assert sorted((i.summary, i.severity) for i in pagerduty.incidents) == [
            ("by alias", "critical"),
            ("by id", "warning"),
        ]
        assert pagerduty.validation_errors == []
