"""End to end: Thena webhooks in, PagerDuty incidents out, with PagerDuty misbehaving and the server dying."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .conftest import EXAMPLES, Server, wait_until
from .fakes.pagerduty import FakePagerDutyEvents
from .test_ingress import TOKEN, seed_env, ticket_event

EVENTS = f"/thena/events?token={TOKEN}"


@pytest.fixture
def pd() -> Iterator[FakePagerDutyEvents]:
    with FakePagerDutyEvents() as fake:
        yield fake


def enqueues(pd: FakePagerDutyEvents) -> list[Any]:
    return [r for r in pd.requests if r.path.endswith("/enqueue")]


def config(*, delivery: str = "", target_extra: str = "", retry: str = "{backoff_base: 0.2, backoff_cap: 2}") -> str:
    """A small config in the seed's shape, with room for test-specific delivery and target settings."""
    return f"""
tables:
  assignee_group: {{"hossamhafez@luciq.ai": A, "bedourelborai@luciq.ai": B}}
  group_target: {{A: pd-a, B: pd-b}}
endpoints:
  - name: thena
    source: thena
    path: /thena/events
    token: ${{WEBHOOK_TOKEN}}
    labels:
      service_group: "{{{{ event.assignees | lookup('assignee_group', default='A') }}}}"
targets:
  - name: pd-a
    type: pagerduty_events
    url: ${{PD_EVENTS_URL}}
    routing_key: ${{PD_ROUTING_KEY_A}}
{target_extra}
  - name: pd-b
    type: pagerduty_events
    url: ${{PD_EVENTS_URL}}
    routing_key: ${{PD_ROUTING_KEY_B}}
{target_extra}
routes:
  - name: page
    match: {{kind: [ticket.created, ticket.updated]}}
    actions:
      - target: "{{{{ tables.group_target[labels.service_group] }}}}"
        action: trigger
        key: "ticket-{{{{ event.subject.id }}}}"
delivery:
  retry: {retry}
{delivery}
"""


def test_seed_tickets_page_the_owning_service_once(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents
) -> None:
    server = server_factory(
        EXAMPLES / "thena-pagerduty.yaml", seed_env(pd.url + "/v2/enqueue", DEFAULT_SERVICE_GROUP="A")
    )
    server.post(EVENTS, ticket_event("e-a", "TA", [{"email": "hossamhafez@luciq.ai"}]))
    server.post(EVENTS, ticket_event("e-b", "TB", {"email": "OmarAbdelsattar@luciq.ai", "name": "Omar"}))
    server.post(EVENTS, ticket_event("e-n", "TN", None, priorityName="Urgent"))
    server.post(EVENTS, ticket_event("e-s", "TS", "ibrahimsalem@luciq.ai"))
    pd.wait_for(lambda: len(pd.incidents) == 4)
    by_ticket = {i.dedup_key: i for i in pd.incidents}
    assert by_ticket["thena-ticket-TA"].routing_key == "routing-key-a"
    assert by_ticket["thena-ticket-TB"].routing_key == "routing-key-b"
    assert by_ticket["thena-ticket-TN"].routing_key == "routing-key-a"
    assert by_ticket["thena-ticket-TS"].routing_key == "routing-key-a"
    assert by_ticket["thena-ticket-TN"].severity == "critical"
    assert by_ticket["thena-ticket-TA"].severity == "error"
    assert by_ticket["thena-ticket-TA"].summary == "[Thena] Ticket TA"
    details = by_ticket["thena-ticket-TB"].payload["custom_details"]
    assert details["assignees"] == ["omarabdelsattar@luciq.ai"]
    assert details["labels"] == {"service_group": "B"}
    assert details["subject"]["id"] == "TB"
    assert pd.validation_errors == []  # every request matched PagerDuty's published schema
    # A ticket updated after its incident pages nobody again, and says so in its trace.
    server.post(EVENTS, ticket_event("e-a2", "TA", [{"email": "hossamhafez@luciq.ai"}], event_type="ticket:updated"))
    updated = wait_until(lambda: [r for r in server.events("routed") if r["event"]["kind"] == "ticket.updated"])
    action = updated[0]["trace"][0]["actions"][0]
    assert "already has the key thena-ticket-TA" in action["not_sent"]
    # Redelivery of a seen event changes nothing either.
    server.post(EVENTS, ticket_event("e-b", "TB", [{"email": "omarabdelsattar@luciq.ai"}]))
    # A new ticket after both is paged: by then anything they had made would have been sent too.
    server.post(EVENTS, ticket_event("e-m", "TM", [{"email": "hossamhafez@luciq.ai"}]))
    pd.wait_for(lambda: len(pd.incidents) == 5)
    assert [r.json["dedup_key"] for r in enqueues(pd)][4:] == ["thena-ticket-TM"]


def test_pagerduty_down_for_a_while_then_back_delivers_once(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents
) -> None:
    server = server_factory(config(), seed_env(pd.url + "/v2/enqueue"))
    pd.down()
    assert server.post(EVENTS, ticket_event("d-1", "D1", "hossamhafez@luciq.ai")).status_code == 200
    wait_until(lambda: any(d["attempts"] >= 2 for d in server.deliveries()), what="two failed attempts")
    (delivery,) = server.deliveries()
    assert delivery["status"] == "pending" and "could not reach pd-a" in delivery["last_error"]
    pd.up()
    pd.wait_for(lambda: len(pd.incidents) == 1, timeout=15)
    wait_until(lambda: server.deliveries("delivered"), what="the delivery to be marked delivered")
    assert len(enqueues(pd)) == 1


def test_429_with_retry_after_is_honoured(server_factory: Callable[..., Server], pd: FakePagerDutyEvents) -> None:
    server = server_factory(config(), seed_env(pd.url + "/v2/enqueue"))
    pd.behave(429, headers={"Retry-After": "2"}, body={"status": "throttled"}, times=1)
    server.post(EVENTS, ticket_event("r-1", "R1", "hossamhafez@luciq.ai"))
    pd.wait_for(lambda: len(pd.incidents) == 1, timeout=15)
    first, second = enqueues(pd)
    assert second.at - first.at >= 1.9  # well above the 0.2 s backoff the policy alone would give
    attempts = server.cli_json("deliveries", "show", server.deliveries()[0]["id"])["attempts"]
    assert [(a["outcome"], a["status_code"]) for a in attempts] == [("retry", 429), ("success", 202)]


def test_5xx_is_retried(server_factory: Callable[..., Server], pd: FakePagerDutyEvents) -> None:
    server = server_factory(config(), seed_env(pd.url + "/v2/enqueue"))
    pd.behave(503, times=2)
    server.post(EVENTS, ticket_event("f-1", "F1", "hossamhafez@luciq.ai"))
    pd.wait_for(lambda: len(pd.incidents) == 1, timeout=15)
    assert len(enqueues(pd)) == 3


def test_a_4xx_is_permanent_kept_visible_and_can_be_replayed(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents
) -> None:
    server = server_factory(config(), seed_env(pd.url + "/v2/enqueue"))
    pd.behave(
        400,
        body={
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": ["Service key is the wrong length"],
        },
        times=1,
    )
    server.post(EVENTS, ticket_event("p-1", "P1", "hossamhafez@luciq.ai"))
    (dead,) = wait_until(lambda: server.deliveries("dead"), what="a dead letter")
    assert dead["attempts"] == 1
    assert "Event object is invalid" in dead["last_error"] and "wrong length" in dead["last_error"]
    assert len(enqueues(pd)) == 1
    assert server.metric("alertbridge_delivery_attempts_total", target="pd-a", outcome="permanent") == 1
    assert server.metric("alertbridge_delivery_attempts_total", target="pd-a", outcome="dead") == 1
    out = server.cli("replay", dead["id"]).stdout
    assert "queued" in out
    pd.wait_for(lambda: len(pd.incidents) == 1)
    wait_until(lambda: server.deliveries("delivered"))


def test_dead_letter_after_max_attempts(server_factory: Callable[..., Server], pd: FakePagerDutyEvents) -> None:
    retry = "{max_attempts: 3, backoff_base: 0.1, backoff_cap: 0.2}"
    server = server_factory(config(retry=retry), seed_env(pd.url + "/v2/enqueue"))
    pd.behave(500, times=None)
    server.post(EVENTS, ticket_event("m-1", "M1", "hossamhafez@luciq.ai"))
    (dead,) = wait_until(lambda: server.deliveries("dead"), what="a dead letter")
    assert dead["attempts"] == 3 and "gave up after 3 attempts" in dead["last_error"]
    assert len(enqueues(pd)) == 3
    assert server.metric("alertbridge_delivery_attempts_total", target="pd-a", outcome="dead") == 1
    assert server.metric("alertbridge_delivery_attempts_total", target="pd-a", outcome="retry") == 3


def test_silent_pagerduty_times_out_and_the_retry_lands_once(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents
) -> None:
    server = server_factory(config(target_extra="    timeout: 1s"), seed_env(pd.url + "/v2/enqueue"))
    pd.hang()
    server.post(EVENTS, ticket_event("h-1", "H1", "hossamhafez@luciq.ai"))
    wait_until(
        lambda: any("no answer within 1 s" in (d["last_error"] or "") for d in server.deliveries()),
        what="a timed-out attempt",
    )
    pd.release()
    pd.wait_for(lambda: len(pd.incidents) == 1, timeout=15)
    assert len(pd.incidents) == 1


def test_a_storm_is_paced_to_the_targets_rate_limit(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents
) -> None:
    server = server_factory(
        config(target_extra="    rate_limit: {limit: 5, per: 2s}"), seed_env(pd.url + "/v2/enqueue")
    )
    for i in range(12):
        assert server.post(EVENTS, ticket_event(f"s-{i}", f"S{i}", "hossamhafez@luciq.ai")).status_code == 200
    pd.wait_for(lambda: len(pd.incidents) == 12, timeout=20)
    times = sorted(r.at for r in enqueues(pd))
    assert len(times) == 12  # nothing refused, nothing sent twice
    for i, start in enumerate(times):
        in_window = [t for t in times[i:] if t < start + 2.0 - 0.05]
        assert len(in_window) <= 5, f"{len(in_window)} sends within 2 s"
    assert times[-1] - times[0] >= 3.9  # 12 at 5 per 2 s cannot go faster (less clock jitter)


def test_sigkill_after_the_answer_and_before_the_delivery(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents
) -> None:
    paused = config(delivery="  paused: true")
    server = server_factory(paused, seed_env(pd.url + "/v2/enqueue"))
    answer = server.post(EVENTS, ticket_event("k-1", "K1", "bedourelborai@luciq.ai"))
    assert answer.status_code == 200
    server.kill()
    assert enqueues(pd) == []
    server.config.write_text(config())
    server.start()
    pd.wait_for(lambda: len(pd.incidents) == 1, timeout=15)
    assert pd.incidents[0].routing_key == "routing-key-b"
    # A later ticket is paged: by then a second send of the first would have come.
    server.post(EVENTS, ticket_event("k-m", "KM", "bedourelborai@luciq.ai"))
    pd.wait_for(lambda: len(pd.incidents) == 2, timeout=15)
    assert [r.json["dedup_key"] for r in enqueues(pd)] == ["thena-ticket-K1", "thena-ticket-KM"]


def test_told_to_stop_mid_send_it_lets_the_send_finish_and_never_sends_it_again(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents
) -> None:
    server = server_factory(config(), seed_env(pd.url + "/v2/enqueue"))
    pd.delay = 1.5  # PagerDuty answers, slowly
    server.post(EVENTS, ticket_event("k-3", "K3", "hossamhafez@luciq.ai"))
    pd.wait_for(lambda: len(enqueues(pd)) == 1)  # under way when the stop comes
    server.stop()  # SIGTERM, as a deploy or Ctrl-C sends
    assert server.process is not None and server.process.returncode == -signal.SIGTERM, server.logs()  # not killed
    pd.delay = 0
    server.start()
    (delivered,) = server.deliveries()
    assert delivered["status"] == "delivered" and delivered["attempts"] == 1
    # The restarted dispatcher has looked at the outbox once it has sent a later ticket.
    server.post(EVENTS, ticket_event("k-m", "KM", "hossamhafez@luciq.ai"))
    pd.wait_for(lambda: len(enqueues(pd)) == 2)
    assert [r.json["dedup_key"] for r in enqueues(pd)] == ["thena-ticket-K3", "thena-ticket-KM"]


def test_sigkill_in_the_middle_of_a_delivery(server_factory: Callable[..., Server], pd: FakePagerDutyEvents) -> None:
    server = server_factory(config(), seed_env(pd.url + "/v2/enqueue"))
    pd.hang()
    server.post(EVENTS, ticket_event("k-2", "K2", "hossamhafez@luciq.ai"))
    pd.wait_for(lambda: len(enqueues(pd)) == 1)  # the request reached PagerDuty; no answer yet
    server.kill()
    pd.release()
    server.start()
    pd.wait_for(lambda: len(pd.incidents) == 1, timeout=15)
    # A later ticket is paged: by then every send of the first has come.
    server.post(EVENTS, ticket_event("k-m", "KM", "hossamhafez@luciq.ai"))
    pd.wait_for(lambda: any(i.dedup_key == "thena-ticket-KM" for i in pd.incidents), timeout=15)
    # Sent again after the restart, and PagerDuty's dedup_key keeps it one incident.
    assert [i.dedup_key for i in pd.incidents] == ["thena-ticket-K2", "thena-ticket-KM"]
    assert {r.json["dedup_key"] for r in enqueues(pd)} == {"thena-ticket-K2", "thena-ticket-KM"}
