"""History: exported as JSON lines, and deleted by age in the background without touching what is
still to be sent."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from .conftest import Server, wait_until
from .fakes.pagerduty import FakePagerDutyEvents

CONFIG = """
endpoints:
  - { name: thena, source: thena, path: /thena, token: t }
targets:
  - name: pd
    type: pagerduty_events
    url: ${PD_URL}
    routing_key: ${PD_KEY}
    retry: { backoff_base: 0.2, backoff_cap: 0.5 }
routes:
  - name: page
    match: { kind: ticket.created }
    actions: [{ target: pd, action: trigger }]
retention:
  events: ${KEEP:-30d}
  attempts: ${KEEP:-30d}
  every: 0.5s
"""


def ticket(n: int) -> dict[str, object]:
    return {"eventId": f"e{n}", "eventType": "ticket:created", "payload": {"ticket": {"id": f"T{n}", "title": f"t{n}"}}}


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDutyEvents]:
    with FakePagerDutyEvents() as fake:
        yield fake


def test_export_is_json_lines_of_events_with_their_deliveries(
    server_factory: Callable[..., Server], pagerduty: FakePagerDutyEvents
) -> None:
    server = server_factory(CONFIG, {"PD_URL": f"{pagerduty.url}/v2/enqueue", "PD_KEY": "R" * 32})
    for n in range(3):
        assert server.post("/thena?token=t", ticket(n)).status_code == 200
    wait_until(lambda: len(server.deliveries("delivered")) == 3, 15, "delivered")
    result = server.cli("export")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["event"]["delivery_key"] for line in lines] == ["e0", "e1", "e2"]  # oldest first
    assert all(line["status"] == "routed" and line["deliveries"][0]["status"] == "delivered" for line in lines)
    assert lines[0]["trace"][0]["route"] == "page"
    assert "3 event(s) exported" in result.stderr
    assert server.cli("export", "--since", "1h").stdout.count("\n") == 3


def test_old_history_goes_but_not_what_is_still_to_send(
    server_factory: Callable[..., Server], pagerduty: FakePagerDutyEvents
) -> None:
    env = {"PD_URL": f"{pagerduty.url}/v2/enqueue", "PD_KEY": "R" * 32, "KEEP": "2s"}
    server = server_factory(CONFIG, env)
    assert server.post("/thena?token=t", ticket(1)).status_code == 200
    wait_until(lambda: server.deliveries("delivered"), 15, "delivered")
    pagerduty.down()
    assert server.post("/thena?token=t", ticket(2)).status_code == 200  # its delivery keeps failing
    wait_until(lambda: len(server.events()) == 1, 15, "the delivered event purged after 2 s")
    (kept,) = server.events()
    assert kept["event"]["delivery_key"] == "e2"  # still to be sent: kept however old
    (pending,) = server.deliveries()
    assert pending["status"] == "pending"
    pagerduty.up()
    # Watched at PagerDuty: once delivered, the event is old enough to go within 0.5 s, which can be
    # sooner than a `deliveries list` takes to look.
    pagerduty.wait_for(lambda: len(pagerduty.incidents) == 2, 15)
    wait_until(lambda: server.events() == [], 15, "then purged too")
    assert "retention" in server.logs()
