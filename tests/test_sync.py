"""Seed 002 end to end: Opsgenie ↔ PagerDuty through alertbridge, with fakes that send their webhooks back.

Every change made in one fake comes back from the other as a webhook, as the real services do; a
flow is over when everything is quiet, and the calls each side received are counted exactly: an
echo that went round again would show up as an extra call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .conftest import EXAMPLES, Server, wait_until
from .fakes.opsgenie import Alert, FakeOpsgenie
from .fakes.pagerduty_rest import FakePagerDutyREST
from .fakes.server import WebhookSender
from .signing import pagerduty_signature

PD_KEY = "pd-api-key"
PD_EMAIL = "bridge@example.com"
PD_SECRET = "pd-webhook-secret"
OG_KEY = "og-api-key"
OG_INTEGRATION = "ccb77fcc-3474-4ee3-8140-300926635ed1"
OG_TOKEN = "og-webhook-token"


# Exactly the seed's .env variables.
SEED_VARIABLES = {
    "PAGERDUTY_API_KEY": PD_KEY,
    "PAGERDUTY_SERVICE_ID": "PSVC1",
    "PAGERDUTY_WEBHOOK_SECRET": PD_SECRET,
    "PAGERDUTY_EMAIL": PD_EMAIL,
    "PAGERDUTY_USER": "",
    "OPSGENIE_API_KEY": OG_KEY,
    "OPSGENIE_INTEGRATION_ID": OG_INTEGRATION,
}


class Sync:
    def __init__(self, server: Server, opsgenie: FakeOpsgenie, pagerduty: FakePagerDutyREST) -> None:
        self.server, self.opsgenie, self.pagerduty = server, opsgenie, pagerduty
        self._auth: dict[str, str] | None = None

    def pd_writes(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.pagerduty.requests if r.method in ("POST", "PUT")]

    def og_writes(self) -> list[tuple[str, str]]:
        return self.opsgenie.api_writes()

    def api(self, path: str, **params: Any) -> Any:
        """The admin API, with a viewer token made once (state is read over HTTP, not by a CLI per poll)."""
        if self._auth is None:
            made = self.server.cli("tokens", "create", "--org", "default", "--role", "viewer", "--name", "sync")
            self._auth = {"Authorization": f"Bearer {made.stdout.strip()}"}
        answer = self.server.client.get(f"/api/v1{path}", params=params, headers=self._auth)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def events(self, **params: Any) -> list[dict[str, Any]]:
        return list(self.api("/events", limit=1000, **params))

    def deliveries(self) -> list[dict[str, Any]]:
        return list(self.api("/deliveries", limit=1000))

    def settle(self, timeout: float = 30) -> None:
        """Wait until nothing moves: every webhook taken (but those held back), every event routed, no
        delivery left to send."""
        senders = [v for fake in (self.opsgenie, self.pagerduty) for v in vars(fake).values()]
        senders = [v for v in senders if isinstance(v, WebhookSender)]
        deadline = time.monotonic() + timeout
        last: Any = None
        still_since = time.monotonic()
        while time.monotonic() < deadline:
            busy = [d for d in self.deliveries() if d["status"] in ("pending", "in_flight", "waiting")]
            unrouted = [e for e in self.events() if e["routed_at"] is None]
            state = (
                len(self.opsgenie.requests),
                len(self.pagerduty.requests),
                len(self.opsgenie.webhooks_sent),
                len(self.pagerduty.webhooks_sent),
                *(len(sender.answers) for sender in senders),
            )
            if state != last or busy or unrouted or not all(sender.quiet for sender in senders):
                last, still_since = state, time.monotonic()
            elif time.monotonic() - still_since > 0.8:
                return
            time.sleep(0.2)
        raise AssertionError(f"not quiet after {timeout} s: {self.deliveries()}")

    def suppressed(self) -> list[dict[str, Any]]:
        """The suppressed events, oldest first, each with its decision trace."""
        found = reversed(self.events(status="suppressed"))
        return [self.api(f"/events/{e['event']['id']}") for e in found]

    def routed(self, delivery_key: str) -> dict[str, Any]:
        """The event a webhook was stored as, once routed, with its trace."""
        (event,) = wait_until(
            lambda: [e for e in self.events() if e["event"]["delivery_key"] == delivery_key and e["routed_at"]],
            15,
            f"webhook {delivery_key} routed",
        )
        return dict(self.api(f"/events/{event['event']['id']}"))


@pytest.fixture
def fakes() -> Iterator[tuple[FakeOpsgenie, FakePagerDutyREST]]:
    with FakeOpsgenie(OG_KEY, OG_INTEGRATION) as opsgenie, FakePagerDutyREST(PD_KEY, PD_EMAIL) as pagerduty:
        pagerduty.webhook_secret = PD_SECRET
        yield opsgenie, pagerduty


def start(
    server_factory: Callable[..., Server],
    fakes: tuple[FakeOpsgenie, FakePagerDutyREST],
    **extra: str,
) -> Sync:
    opsgenie, pagerduty = fakes
    env = {
        **SEED_VARIABLES,
        # where the fakes are (optional variables of the example: the real services by default)
        "PAGERDUTY_API_URL": pagerduty.url,
        "OPSGENIE_API_URL": opsgenie.url,
        **extra,
    }
    server = server_factory(EXAMPLES / "opsgenie-pagerduty.yaml", env)
    # The Opsgenie webhook integration sends the API key as a custom header: no new secret needed.
    opsgenie.webhook_url = f"{server.url}/ops-webhook"
    opsgenie.webhook_headers = {"Authorization": f"GenieKey {OG_KEY}"}
    pagerduty.webhook_url = f"{server.url}/pd-webhook"
    return Sync(server, opsgenie, pagerduty)


def created_pair(sync: Sync) -> tuple[Alert, str]:
    alert = sync.opsgenie.user_create("Disk full on db-1", description="95% used", priority="P1")
    sync.settle()
    (incident,) = sync.pagerduty.incidents.values()
    return alert, incident.id


def test_every_flow_of_the_seed_round_trips_once(
    server_factory: Callable[..., Server], fakes: tuple[FakeOpsgenie, FakePagerDutyREST]
) -> None:
    sync = start(server_factory, fakes)
    opsgenie, pagerduty = fakes

    # Create → a PagerDuty incident; PagerDuty's incident.triggered comes back and goes no further.
    alert, incident_id = created_pair(sync)
    incident = pagerduty.incidents[incident_id]
    assert (incident.title, incident.urgency, incident.incident_key) == ("Disk full on db-1", "high", alert.id)
    assert sync.pd_writes() == [("POST", "/incidents")]
    assert sync.og_writes() == []

    def step(act: Callable[[], None], pd_calls: list[tuple[str, str]], og_calls: list[tuple[str, str]]) -> None:
        pd_before, og_before = len(sync.pd_writes()), len(sync.og_writes())
        act()
        sync.settle()
        assert sync.pd_writes()[pd_before:] == pd_calls
        assert sync.og_writes()[og_before:] == og_calls

    notes = f"/incidents/{incident_id}/notes"
    step(lambda: opsgenie.user("notes", alert, note="checking the disk"), [("POST", notes)], [])
    step(lambda: opsgenie.user("acknowledge", alert), [("POST", notes)], [])
    step(lambda: opsgenie.user("unacknowledge", alert), [("POST", notes)], [])
    assert incident.notes == [
        "alice@example.com in Opsgenie: checking the disk",
        "Acknowledged in Opsgenie by alice@example.com",
        "Unacknowledged in Opsgenie by alice@example.com",
    ]

    path = f"/v2/alerts/{alert.id}"
    step(lambda: pagerduty.user_acts(incident_id, status="acknowledged"), [], [("POST", f"{path}/acknowledge")])
    assert alert.acknowledged and alert.notes[-1] == ("alertbridge", "Acknowledged in PagerDuty by Bob")
    step(lambda: pagerduty.user_acts(incident_id, status="triggered"), [], [("POST", f"{path}/unacknowledge")])
    assert not alert.acknowledged
    step(lambda: pagerduty.user_acts(incident_id, note="rotated the logs"), [], [("POST", f"{path}/notes")])
    assert alert.notes[-1] == ("alertbridge", "Bob in PagerDuty: rotated the logs")
    step(lambda: pagerduty.user_acts(incident_id, status="resolved"), [], [("POST", f"{path}/close")])
    assert alert.status == "closed"

    # Every change alertbridge made came back once as a webhook, and was recognised as its own.
    echoes = sync.suppressed()
    assert len(echoes) == 8  # triggered, 3 annotated; Opsgenie: Acknowledge, UnAcknowledge, AddNote, Close
    for echo in echoes:
        step_, *after = echo["trace"]
        assert step_["result"] == "echo suppressed" and "alertbridge itself" in step_["why"]
        assert all("episode" in later for later in after), "an echo of an alert's change still moves its episode"
    assert pagerduty.validation_errors == [] and opsgenie.validation_errors == []


def test_a_persons_pagerduty_note_after_ours_is_not_taken_for_our_echo(
    server_factory: Callable[..., Server], fakes: tuple[FakeOpsgenie, FakePagerDutyREST]
) -> None:
    """PagerDuty direction. PagerDuty's webhooks for alertbridge's three notes on the incident run late;
    meanwhile Jane Human writes a note of her own there. Hers has other content and a person's agent:
    it reaches Opsgenie. Ours, when they come, are still our echoes (their content is ours)."""
    sync = start(server_factory, fakes)
    opsgenie, pagerduty = fakes
    alert, incident_id = created_pair(sync)
    incident = pagerduty.incidents[incident_id]

    pagerduty._outbox.hold()
    opsgenie.user("notes", alert, note="checking the disk")
    opsgenie.user("acknowledge", alert)
    opsgenie.user("unacknowledge", alert)
    wait_until(lambda: len(incident.notes) == 3, 15, "alertbridge's three notes on the incident")

    jane = {"id": "PJANE", "type": "user_reference", "summary": "Jane Human"}
    event = {
        "id": "EVJANE1",
        "event_type": "incident.annotated",
        "resource_type": "incident",
        "occurred_at": "2026-12-02T11:00:00.000Z",
        "agent": {**jane, "html_url": "https://example.pagerduty.com/users/PJANE"},
        "client": None,
        "data": {
            "id": "PNOTEJ",
            "type": "incident_note",
            "content": "The disk is fine now,\nI moved the logs.",
            "incident": {"id": incident_id, "type": "incident_reference", "summary": incident.title},
        },
    }
    body = json.dumps({"event": event}).encode()
    signed = {"x-pagerduty-signature": pagerduty_signature(body, PD_SECRET)}
    assert sync.server.post("/pd-webhook", content=body, headers=signed).status_code == 200

    hers = sync.routed("EVJANE1")
    assert hers["status"] == "routed", hers["trace"]
    assert hers["trace"][0]["result"] == "not an echo"
    assert f"annotated pagerduty incident {incident_id}" in hers["trace"][0]["why"]
    assert "other content" in hers["trace"][0]["why"]
    janes = "Jane Human in PagerDuty: The disk is fine now,\nI moved the logs."
    wait_until(lambda: ("alertbridge", janes) in alert.notes, 15, "Jane's note on the alert")

    pagerduty._outbox.release()
    sync.settle()
    assert [n for user, n in alert.notes if user == "alertbridge"] == [janes]
    assert sync.og_writes() == [("POST", f"/v2/alerts/{alert.id}/notes")]
    assert len(incident.notes) == 3  # nothing came back round
    ours = [e for e in sync.suppressed() if e["event"]["kind"] == "incident.annotated"]
    assert len(ours) == 3
    assert all("with the same content" in e["trace"][0]["why"] for e in ours)

    # Each expectation absorbed one echo: the same words again, from Jane, are hers.
    pagerduty.user_acts(incident_id, note="Acknowledged in Opsgenie by alice@example.com", name="Jane Human")
    sync.settle()
    assert alert.notes[-1] == ("alertbridge", "Jane Human in PagerDuty: Acknowledged in Opsgenie by alice@example.com")


def test_an_opsgenie_users_note_after_ours_is_not_taken_for_our_echo(
    server_factory: Callable[..., Server], fakes: tuple[FakeOpsgenie, FakePagerDutyREST]
) -> None:
    """Opsgenie direction. Opsgenie has taken alertbridge's note (Bob's, from PagerDuty) but not applied
    it yet when Carol adds a note of her own to the alert: hers, with other text, reaches PagerDuty;
    ours, when Opsgenie reports it, is our echo."""
    sync = start(server_factory, fakes)
    opsgenie, pagerduty = fakes
    alert, incident_id = created_pair(sync)
    incident = pagerduty.incidents[incident_id]

    opsgenie.pause()
    pagerduty.user_acts(incident_id, note="rotated the logs")
    wait_until(lambda: ("POST", f"/v2/alerts/{alert.id}/notes") in sync.og_writes(), 15, "our note sent to Opsgenie")
    opsgenie.user("notes", alert, user="carol@example.com", note="disk at 60% now")
    hers = sync.routed(f"AddNote:{opsgenie.webhooks_sent[-1]['alertFlowContext']['requestId']}")
    assert hers["status"] == "routed", hers["trace"]
    assert hers["trace"][0]["result"] == "not an echo" and "other content" in hers["trace"][0]["why"]
    carols = "carol@example.com in Opsgenie: disk at 60% now"
    wait_until(lambda: carols in incident.notes, 15, "Carol's note on the incident")

    opsgenie.resume()
    sync.settle()
    assert incident.notes == ["rotated the logs", carols]
    assert sync.pd_writes() == [("POST", "/incidents"), ("POST", f"/incidents/{incident_id}/notes")]
    bobs = "Bob in PagerDuty: rotated the logs"
    assert alert.notes == [("carol@example.com", "disk at 60% now"), ("alertbridge", bobs)]
    (ours,) = [e for e in sync.suppressed() if e["event"]["kind"] == "alert.note_added"]
    assert "with the same content as 'alertbridge'" in ours["trace"][0]["why"]


def test_an_acknowledgement_by_someone_else_after_ours_is_not_taken_for_our_echo(
    server_factory: Callable[..., Server], fakes: tuple[FakeOpsgenie, FakePagerDutyREST]
) -> None:
    """Opsgenie direction, where the webhook names who acted (`alert.username`, and `source.type` web
    for a person) and alertbridge knows the name it acts under (the `user` it sends). Bob acknowledges
    in PagerDuty, alertbridge acknowledges the alert; before Opsgenie applies that, Carol acknowledges
    it herself. Hers is not our echo and reaches PagerDuty as a note; ours, named alertbridge, is."""
    sync = start(server_factory, fakes)
    opsgenie, pagerduty = fakes
    alert, incident_id = created_pair(sync)
    incident = pagerduty.incidents[incident_id]

    opsgenie.pause()
    pagerduty.user_acts(incident_id, status="acknowledged")
    path = f"/v2/alerts/{alert.id}/acknowledge"
    wait_until(lambda: ("POST", path) in sync.og_writes(), 15, "our acknowledgement sent to Opsgenie")
    opsgenie.user("acknowledge", alert, user="carol@example.com")
    hers = sync.routed(f"Acknowledge:{opsgenie.webhooks_sent[-1]['alertFlowContext']['requestId']}")
    assert hers["status"] == "routed", hers["trace"]
    why = hers["trace"][0]["why"]
    assert hers["trace"][0]["result"] == "not an echo"
    assert f"acknowledged opsgenie alert {alert.id}" in why and "as 'alertbridge'" in why and "carol" in why
    carols = "Acknowledged in Opsgenie by carol@example.com"
    wait_until(lambda: carols in incident.notes, 15, "Carol's acknowledgement noted on the incident")

    opsgenie.resume()
    sync.settle()
    assert incident.notes == [carols]
    assert sync.pd_writes() == [("POST", "/incidents"), ("POST", f"/incidents/{incident_id}/notes")]
    assert sync.og_writes() == [("POST", path)]
    (ours,) = [e for e in sync.suppressed() if e["event"]["kind"] == "alert.acknowledged"]
    assert "as 'alertbridge'" in ours["trace"][0]["why"]


def test_closed_in_opsgenie_resolves_and_acknowledging_is_an_option(
    server_factory: Callable[..., Server], fakes: tuple[FakeOpsgenie, FakePagerDutyREST]
) -> None:
    sync = start(server_factory, fakes, ACKNOWLEDGE_IN_PAGERDUTY="true")
    opsgenie, pagerduty = fakes
    alert, incident_id = created_pair(sync)

    opsgenie.user("acknowledge", alert)
    sync.settle()
    incident = pagerduty.incidents[incident_id]
    assert incident.status == "acknowledged"
    assert sync.pd_writes()[1:] == [("POST", f"/incidents/{incident_id}/notes"), ("PUT", f"/incidents/{incident_id}")]
    assert sync.og_writes() == []  # PagerDuty's incident.acknowledged was our echo: not sent back

    opsgenie.user("close", alert)
    sync.settle()
    assert (incident.status, incident.resolution) == ("resolved", "Closed in Opsgenie by alice@example.com")
    assert sync.og_writes() == []


def test_a_pagerduty_acknowledgement_by_someone_else_after_ours_is_not_taken_for_our_echo(
    server_factory: Callable[..., Server], fakes: tuple[FakeOpsgenie, FakePagerDutyREST]
) -> None:
    """PagerDuty direction, where the webhook's agent names a user by id and alertbridge learns its own
    id from PagerDuty's answer to its acknowledge (`last_status_change_by`). PagerDuty's webhook for
    our acknowledgement runs late (V3 webhooks promise no order; a failed delivery is retried later);
    meanwhile Bob unacknowledges the incident and Jane Human acknowledges it again. Hers is not our
    echo and reaches Opsgenie; ours, when it comes, is."""
    sync = start(server_factory, fakes, ACKNOWLEDGE_IN_PAGERDUTY="true")
    opsgenie, pagerduty = fakes
    alert, incident_id = created_pair(sync)
    incident = pagerduty.incidents[incident_id]

    pagerduty._outbox.hold()
    opsgenie.user("acknowledge", alert)
    wait_until(
        lambda: [d for d in sync.deliveries() if d["action"] == "acknowledge" and d["status"] == "delivered"],
        15,
        "our acknowledgement delivered to PagerDuty",
    )
    sync.settle()
    assert incident.status == "acknowledged" and incident.changed_by == pagerduty.API_USER
    og_before = len(sync.og_writes())

    pagerduty.user_acts(incident_id, status="triggered", ahead=True)
    sync.settle()
    pagerduty.user_acts(incident_id, status="acknowledged", name="Jane Human", user_id="PJANE", ahead=True)
    jane_ack = pagerduty.webhooks_sent[-1]
    assert (jane_ack["event_type"], jane_ack["agent"]["id"]) == ("incident.acknowledged", "PJANE")
    hers = sync.routed(jane_ack["id"])
    assert hers["status"] == "routed", hers["trace"]
    why = hers["trace"][0]["why"]
    assert hers["trace"][0]["result"] == "not an echo"
    assert f"acknowledged pagerduty incident {incident_id}" in why and "'PBRIDGE'" in why and "Jane Human" in why
    sync.settle()
    path = f"/v2/alerts/{alert.id}"
    assert sync.og_writes()[og_before:] == [("POST", f"{path}/unacknowledge"), ("POST", f"{path}/acknowledge")]
    assert alert.acknowledged and alert.notes[-1] == ("alertbridge", "Acknowledged in PagerDuty by Jane Human")

    pagerduty._outbox.release()
    sync.settle()
    assert sync.og_writes()[og_before + 2 :] == []  # our own acknowledgement did not come round again
    ours = [e for e in sync.suppressed() if e["event"]["kind"] == "incident.acknowledged"]
    assert [e["event"]["actor"] for e in ours] == ["PBRIDGE"]
    assert "as 'PBRIDGE'" in ours[0]["trace"][0]["why"]
    assert pagerduty.validation_errors == [] and opsgenie.validation_errors == []


def test_pagerduty_down_while_opsgenie_changes_then_all_applied_in_order_once(
    server_factory: Callable[..., Server], fakes: tuple[FakeOpsgenie, FakePagerDutyREST]
) -> None:
    sync = start(server_factory, fakes)
    opsgenie, pagerduty = fakes
    pagerduty.down()
    alert = opsgenie.user_create("API latency", priority="P3")
    opsgenie.user("notes", alert, note="first")
    opsgenie.user("acknowledge", alert)
    opsgenie.user("notes", alert, note="second")
    wait_until(lambda: len(sync.events()) == 4, 15, "the four Opsgenie webhooks stored")

    def three_waiting() -> list[dict[str, object]] | None:
        waiting = [d for d in sync.deliveries() if d["status"] == "waiting"]
        return waiting if len(waiting) == 3 else None  # routed one by one: wait for all three

    wait_until(three_waiting, 15, "the two notes and the acknowledgement waiting for the link")
    shown = sync.server.cli("deliveries", "list").stdout
    assert "waiting" in shown
    wait_until(
        lambda: [d for d in sync.deliveries() if d["action"] == "create" and d["attempts"] >= 2],
        30,
        "a few failed attempts at the create",
    )
    pagerduty.up()
    sync.settle(timeout=60)

    (incident,) = pagerduty.incidents.values()
    assert incident.urgency == "low"
    assert incident.notes == [
        "alice@example.com in Opsgenie: first",
        "Acknowledged in Opsgenie by alice@example.com",
        "alice@example.com in Opsgenie: second",
    ]
    notes = ("POST", f"/incidents/{incident.id}/notes")
    assert sync.pd_writes() == [("POST", "/incidents"), notes, notes, notes]
    assert sync.og_writes() == []


def test_opsgenie_down_while_pagerduty_changes_then_all_applied_in_order_once(
    server_factory: Callable[..., Server], fakes: tuple[FakeOpsgenie, FakePagerDutyREST]
) -> None:
    sync = start(server_factory, fakes)
    opsgenie, pagerduty = fakes
    alert, incident_id = created_pair(sync)
    opsgenie.down()
    pagerduty.user_acts(incident_id, status="acknowledged")
    pagerduty.user_acts(incident_id, note="one")
    pagerduty.user_acts(incident_id, note="two")
    pagerduty.user_acts(incident_id, status="resolved")
    wait_until(
        lambda: any(d["attempts"] >= 1 and d["status"] == "pending" for d in sync.deliveries()),
        15,
        "retries while Opsgenie is down",
    )
    wait_until(
        lambda: any(d["attempts"] >= 2 and d["status"] == "pending" for d in sync.deliveries()),
        30,
        "a second failed attempt while Opsgenie is down",
    )
    opsgenie.up()
    sync.settle(timeout=60)

    path = f"/v2/alerts/{alert.id}"
    assert sync.og_writes() == [
        ("POST", f"{path}/acknowledge"),
        ("POST", f"{path}/notes"),
        ("POST", f"{path}/notes"),
        ("POST", f"{path}/close"),
    ]
    assert [n for _, n in alert.notes] == [
        "Acknowledged in PagerDuty by Bob",
        "Bob in PagerDuty: one",
        "Bob in PagerDuty: two",
        "Resolved in PagerDuty by Bob",
    ]
    assert alert.status == "closed"
    assert sync.pd_writes() == [("POST", "/incidents")]


def test_the_seeds_curl_commands(
    server_factory: Callable[..., Server], fakes: tuple[FakeOpsgenie, FakePagerDutyREST]
) -> None:
    """Seed 002's README examples, as written, with the credential the seed left out."""
    sync = start(server_factory, fakes, PAGERDUTY_USER="Someone Else")
    opsgenie, pagerduty = fakes
    opsgenie.webhook_url = None  # only the curl commands talk to alertbridge here
    pagerduty.webhook_url = None
    server = sync.server

    def ops(body: str) -> None:
        # The seed's curl, plus the header the Opsgenie integration is set to send.
        answer = server.post("/ops-webhook", content=body.encode(), headers={"Authorization": f"GenieKey {OG_KEY}"})
        assert answer.status_code == 200, answer.text

    integration = f'"integrationId":"{OG_INTEGRATION}"'
    ops('{"action":"Create","alert":{"alertId":"test-123","message":"Test alert"},' + integration + "}")
    sync.settle()
    (incident,) = pagerduty.incidents.values()
    assert (incident.title, incident.incident_key) == ("Test alert", "test-123")
    ops(
        '{"action":"AddNote","alert":{"alertId":"test-123","username":"test-user"},"note":"This is a test note",'
        + integration
        + "}"
    )
    ops('{"action":"Acknowledge","alert":{"alertId":"test-123","username":"test-user"},' + integration + "}")
    ops('{"action":"UnAcknowledge","alert":{"alertId":"test-123","username":"test-user"},' + integration + "}")
    sync.settle()
    assert incident.notes == [
        "test-user in Opsgenie: This is a test note",
        "Acknowledged in Opsgenie by test-user",
        "Unacknowledged in Opsgenie by test-user",
    ]
    # Without the credential, or with another key, or from another integration, nothing happens.
    create = b'{"action":"Create","alert":{"alertId":"x"}}'
    assert server.post("/ops-webhook", content=create).status_code == 401
    assert server.post("/ops-webhook", content=create, headers={"Authorization": "GenieKey other"}).status_code == 403
    # OPSGENIE_WEBHOOK_TOKEN is not set here, so an empty ?token= is no credential either.
    assert server.post("/ops-webhook?token=", content=create).status_code == 401
    ops('{"action":"Create","alert":{"alertId":"other-1","message":"Other"},"integrationId":"another"}')
    sync.settle()
    assert len(pagerduty.incidents) == 1

    def pd(event_id: str, event_type: str, status: str, extra: dict[str, Any] | None = None) -> None:
        event = {
            "id": event_id,
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": "2025-10-27T15:26:48.576Z",
            "agent": {"id": "PAGENT123", "type": "user_reference", "summary": "Test User"},
            "client": None,
            "data": {
                "id": "PDI123",
                "type": "incident",
                "status": status,
                "incident_key": "test-123",
                "title": "Test incident",
                "service": {"id": "PSERVICE123", "type": "service_reference", "summary": "Test Service"},
            },
            **(extra or {}),
        }
        body = json.dumps({"event": event}).encode()
        headers = {"x-pagerduty-signature": pagerduty_signature(body, PD_SECRET)}
        assert server.post("/pd-webhook", content=body, headers=headers).status_code == 200

    pd("01G3PQ97QLWWR8SGW2AT6K18HE", "incident.acknowledged", "acknowledged")
    pd("01G3PQ97QLWWR8SGW2AT6K18HF", "incident.unacknowledged", "triggered")
    pd(
        "01G3PQ97QLWWR8SGW2AT6K18HG",
        "incident.annotated",
        "acknowledged",
        {"note": {"id": "NOTE123", "content": "This is a test note from PagerDuty that should be synced to Opsgenie"}},
    )
    sync.settle()
    calls = [(r.path, r.query.get("identifierType"), r.json) for r in opsgenie.requests if r.method == "POST"]
    assert calls == [
        (
            "/v2/alerts/test-123/acknowledge",
            "id",
            {"user": "alertbridge", "source": "alertbridge", "note": "Acknowledged in PagerDuty by Test User"},
        ),
        (
            "/v2/alerts/test-123/unacknowledge",
            "id",
            {"user": "alertbridge", "source": "alertbridge", "note": "Unacknowledged in PagerDuty by Test User"},
        ),
        (
            "/v2/alerts/test-123/notes",
            "id",
            {
                "note": "Test User in PagerDuty: This is a test note from PagerDuty that should be synced to Opsgenie",
                "user": "alertbridge",
                "source": "alertbridge",
            },
        ),
    ]
    # PAGERDUTY_USER's own changes are never synced back.
    pd_body = {
        "event": {
            "id": "EVSELF",
            "event_type": "incident.acknowledged",
            "agent": {"id": "PX", "summary": "Someone Else"},
            "data": {"id": "PDI123", "type": "incident", "incident_key": "test-123"},
        }
    }
    raw = json.dumps(pd_body).encode()
    server.post("/pd-webhook", content=raw, headers={"x-pagerduty-signature": pagerduty_signature(raw, PD_SECRET)})
    sync.settle()
    assert len([r for r in opsgenie.requests if r.method == "POST"]) == 3
    (own,) = [e for e in sync.suppressed() if e["event"]["delivery_key"] == "EVSELF"]
    assert "ignore_actors" in own["trace"][0]["why"]


PD_TO_OPSGENIE = """
endpoints:
  - name: pagerduty
    source: pagerduty
    path: /pd-webhook
    secret: ${PAGERDUTY_WEBHOOK_SECRET}
  - name: opsgenie
    source: opsgenie
    path: /ops-webhook
    username: opsgenie
    password: ${OPSGENIE_WEBHOOK_TOKEN}
targets:
  - name: opsgenie
    type: opsgenie
    api_key: ${OPSGENIE_API_KEY}
    url: ${OPSGENIE_API_URL}
routes:
  - name: mirror
    match: { kind: incident.triggered }
    actions:
      - target: opsgenie
        action: create
        alias: "pd-{{ event.subject.id }}"
  - name: acknowledge
    match: { kind: incident.acknowledged }
    actions:
      - target: opsgenie
        action: acknowledge
  - name: close-by-alias
    match: { kind: incident.resolved }
    actions:
      - target: opsgenie
        action: close
        alert_id: ""
        alias: "pd-{{ event.subject.id }}"
        note: "resolved in PagerDuty"
"""


def test_an_alert_created_in_opsgenie_is_confirmed_then_linked(
    server_factory: Callable[..., Server], fakes: tuple[FakeOpsgenie, FakePagerDutyREST]
) -> None:
    """Opsgenie applies a create later: alertbridge asks until it is done, then links the alert's id."""
    opsgenie, pagerduty = fakes
    opsgenie.process_delay = 0.8  # the first confirm finds the request not processed yet
    env = {
        "PAGERDUTY_WEBHOOK_SECRET": PD_SECRET,
        "OPSGENIE_API_KEY": OG_KEY,
        "OPSGENIE_API_URL": opsgenie.url,
        "OPSGENIE_WEBHOOK_TOKEN": OG_TOKEN,
    }
    server = server_factory(PD_TO_OPSGENIE, env)
    pagerduty.webhook_url = f"{server.url}/pd-webhook"
    opsgenie.webhook_url = f"http://opsgenie:{OG_TOKEN}@127.0.0.1:{server.port}/ops-webhook"
    sync = Sync(server, opsgenie, pagerduty)
    pagerduty.add_incident("PQ1", "PSVC1", "Checkout errors")
    pagerduty._webhook("incident.triggered", pagerduty.incidents["PQ1"], {"id": "PBOB", "summary": "Bob"})
    sync.settle()

    (alert,) = opsgenie.alerts.values()
    assert (alert.message, alert.alias) == ("Checkout errors", "pd-PQ1")
    confirms = [r for r in opsgenie.requests if r.path.startswith("/v2/alerts/requests/")]
    assert len(confirms) >= 2  # asked again until Opsgenie had processed it
    (create, confirm) = sorted(
        (d for d in server.deliveries() if d["target"] == "opsgenie"), key=lambda d: d["created_at"]
    )
    assert (create["action"], confirm["action"], confirm["status"]) == ("create", "confirm", "delivered")
    assert confirm["result"] == {"alert_id": alert.id}
    # Opsgenie's Create webhook for our alert came back with basic auth, and was our echo.
    assert [e["event"]["kind"] for e in sync.suppressed()] == ["alert.created"]

    pagerduty.user_acts("PQ1", status="acknowledged")
    sync.settle()
    assert alert.acknowledged
    assert (f"/v2/alerts/{alert.id}/acknowledge") in [r.path for r in opsgenie.requests]

    # By alias: Opsgenie is told which kind of identifier it is given.
    pagerduty.user_acts("PQ1", status="resolved")
    sync.settle()
    assert alert.status == "closed"
    close = next(r for r in opsgenie.requests if r.path.endswith("/close"))
    assert (close.path, close.query) == ("/v2/alerts/pd-PQ1/close", {"identifierType": "alias"})
    assert opsgenie.validation_errors == []


def test_opsgenie_endpoint_credentials(server_factory: Callable[..., Server]) -> None:
    config = """
endpoints:
  - name: opsgenie
    source: opsgenie
    path: /ops-webhook
    token: [new-token, old-token]
"""
    server = server_factory(config)
    body = b'{"action":"CustomAction","alert":{"alertId":"a-1","message":"m"},"integrationId":"i"}'
    assert server.post("/ops-webhook", content=body).status_code == 401
    assert server.post("/ops-webhook?token=nope", content=body).status_code == 403
    assert server.post("/ops-webhook", content=body, headers={"x-webhook-token": "old-token"}).status_code == 200
    assert server.post("/ops-webhook?token=new-token", content=b'{"action":"x"}').status_code == 400
    (event,) = server.events()
    assert event["event"]["kind"] == "alert.custom_action"
    assert server.metric("alertbridge_requests_refused_total", endpoint="opsgenie", reason="bad_token") == 1
    assert "old-token" not in server.logs() and "nope" not in server.logs()


def test_a_missing_opsgenie_credential_names_the_header_to_send(server_factory: Callable[..., Server]) -> None:
    """The 401 is what someone setting up the Opsgenie integration reads: it says what to send."""
    create = b'{"action":"Create","alert":{"alertId":"x"}}'
    server = server_factory(EXAMPLES / "opsgenie-pagerduty.yaml", SEED_VARIABLES)
    refused = server.post("/ops-webhook", content=create)
    assert refused.status_code == 401
    error = refused.json()["error"]
    assert "Authorization: GenieKey <" in error and "custom header" in error, error
    assert "token" not in error.replace("GenieKey", ""), error  # no token is configured: none is offered
    assert OG_KEY not in error
    server.stop()

    with_token = server_factory(
        EXAMPLES / "opsgenie-pagerduty.yaml", {**SEED_VARIABLES, "OPSGENIE_WEBHOOK_TOKEN": "og-hook-token"}
    )
    error = with_token.post("/ops-webhook", content=create).json()["error"]
    assert "Authorization: GenieKey <" in error and "?token=" in error and "X-Webhook-Token" in error, error
    assert "og-hook-token" not in error and OG_KEY not in error
