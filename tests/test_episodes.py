"""Alert episodes end to end: an alert that fires, resolves and fires again pages again, and its
resolve resolves that episode; repeats within an episode, redeliveries and Thena's once-per-ticket
send nothing new. Through the real server with PagerDuty's fake behind it, from the generic source
(episodes configured on the endpoint) and from Opsgenie's webhooks (as the fake Opsgenie sends them).
Then the same event routed twice, by two routers at once and by a server killed while recording its
decision: one episode."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from alertbridge import targets
from alertbridge.config import Config, ConfigError
from alertbridge.events import Event
from alertbridge.ids import new_id
from alertbridge.loading import load_config
from alertbridge.metrics import Metrics
from alertbridge.routing import compile_rules
from alertbridge.routing.router import Router
from alertbridge.store import Store, open_store
from alertbridge.store.base import Episode

from .backends import POSTGRES
from .conftest import Server, wait_until
from .fakes.opsgenie import FakeOpsgenie
from .fakes.pagerduty import FakePagerDutyEvents
from .test_ingress import TOKEN as THENA_TOKEN
from .test_ingress import ticket_event

PROBE_TOKEN = "probe-token-5d1e"
OG_TOKEN = "og-webhook-token-77a"
CHECK = "disk-db-1"

CONFIG = """
endpoints:
  - name: probes
    source: generic
    path: /probes
    token: ${PROBE_TOKEN}
    fields:
      kind: "join('.', ['probe', state])"
      delivery_key: "id"
      dedup_key: "check"
      title: "summary"
    episodes: {open: [probe.firing], close: [probe.resolved]}
  - name: opsgenie
    source: opsgenie
    path: /ops-webhook
    token: ${OG_TOKEN}
  - name: thena
    source: thena
    path: /thena/events
    token: ${WEBHOOK_TOKEN}
targets:
  - name: pd
    type: pagerduty_events
    url: ${PD_EVENTS_URL}
    routing_key: routing-key-a
routes:
  - name: fire
    match: {kind: [probe.firing, alert.created]}
    actions:
      - target: pd
        action: trigger
        key: "trigger-{{ event.dedup_key }}"
        summary: "{{ event.title }} (episode {{ event.episode }})"
  - name: resolve
    match: {kind: [probe.resolved, alert.closed]}
    actions:
      - target: pd
        action: resolve
        key: "resolve-{{ event.dedup_key }}"
  - name: ticket
    match: {kind: ticket.created}
    actions:
      - target: pd
        action: trigger
        key: "thena-ticket-{{ event.subject.id }}"
        dedup_key: "thena-ticket-{{ event.subject.id }}"
delivery:
  retry: {backoff_base: 0.2, backoff_cap: 1}
"""


@pytest.fixture
def pd() -> Iterator[FakePagerDutyEvents]:
    with FakePagerDutyEvents() as fake:
        yield fake


ENV = {"PROBE_TOKEN": PROBE_TOKEN, "OG_TOKEN": OG_TOKEN, "WEBHOOK_TOKEN": THENA_TOKEN}


def start(server_factory: Callable[..., Server], pd: FakePagerDutyEvents) -> Server:
    return server_factory(CONFIG, {**ENV, "PD_EVENTS_URL": pd.url + "/v2/enqueue"})


def sent(pd: FakePagerDutyEvents) -> list[tuple[str, str]]:
    """What PagerDuty was asked, in order: (action, dedup key)."""
    return [(r.json["event_action"], r.json["dedup_key"]) for r in pd.requests if r.path.endswith("/enqueue")]


def routed(server: Server, delivery_key: str) -> dict[str, Any]:
    """The event a webhook was stored as, once routed, with its trace."""
    (row,) = wait_until(
        lambda: [e for e in server.events() if e["event"]["delivery_key"] == delivery_key and e["routed_at"]],
        15,
        f"webhook {delivery_key} routed",
    )
    return dict(row)


def episode_step(row: dict[str, Any]) -> dict[str, Any]:
    (step,) = [s for s in row["trace"] if "episode" in s]
    return dict(step)


def not_sent(row: dict[str, Any]) -> list[str]:
    return [a.get("not_sent", "") for s in row["trace"] for a in s.get("actions", [])]


def probe(server: Server, delivery_id: str, state: str) -> Any:
    body = {"id": delivery_id, "check": CHECK, "state": state, "summary": "Disk full on db-1"}
    answer = server.post(f"/probes?token={PROBE_TOKEN}", body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_probe_that_fires_again_after_it_resolved_pages_again(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents
) -> None:
    server = start(server_factory, pd)
    trigger, resolve = ("trigger", CHECK), ("resolve", CHECK)

    probe(server, "p1", "firing")
    pd.wait_for(lambda: sent(pd) == [trigger])
    assert episode_step(routed(server, "p1"))["why"] == "probe.firing opens episode 1"
    # The same webhook again is stored once; the probe still firing is the same episode: nothing new.
    assert probe(server, "p1", "firing")["duplicate"] is True
    probe(server, "p2", "firing")
    repeat = routed(server, "p2")
    assert episode_step(repeat)["episode"] == 1 and "is open already" in episode_step(repeat)["why"]
    assert not_sent(repeat) == [f"delivery {server.deliveries()[0]['id']} already has the key trigger-{CHECK}"]

    probe(server, "p3", "resolved")
    pd.wait_for(lambda: sent(pd) == [trigger, resolve])
    probe(server, "p4", "resolved")  # resolved again: the episode is closed already, nothing new
    assert (
        episode_step(routed(server, "p4"))["why"]
        == "probe.resolved: episode 1 is closed already, so this belongs to it"
    )

    probe(server, "p5", "firing")
    pd.wait_for(lambda: sent(pd) == [trigger, resolve, trigger])
    again = routed(server, "p5")
    assert episode_step(again)["why"] == "probe.firing opens episode 2 (episode 1 was closed)"
    (action,) = again["trace"][0]["actions"]
    assert action["key"] == f"key:trigger-{CHECK}#episode-2"
    probe(server, "p6", "firing")
    probe(server, "p7", "resolved")
    pd.wait_for(lambda: sent(pd) == [trigger, resolve, trigger, resolve])
    assert "already has the key" in not_sent(routed(server, "p6"))[0]

    # Two incidents on PagerDuty, each resolved; templates read the episode.
    assert [(i.dedup_key, i.status) for i in pd.incidents] == [(CHECK, "resolved"), (CHECK, "resolved")]
    summaries = [r.json["payload"]["summary"] for r in pd.requests if r.json["event_action"] == "trigger"]
    assert summaries == ["Disk full on db-1 (episode 1)", "Disk full on db-1 (episode 2)"]
    assert sorted(d["idempotency_key"] for d in server.deliveries()) == [
        f"key:resolve-{CHECK}",
        f"key:resolve-{CHECK}#episode-2",
        f"key:trigger-{CHECK}",
        f"key:trigger-{CHECK}#episode-2",
    ]
    probe(server, "p8", "firing")  # and a third time
    pd.wait_for(lambda: len(sent(pd)) == 5 and len(pd.incidents) == 3)  # the fake notes a request, then acts
    assert sent(pd)[-1] == trigger


def test_an_opsgenie_alert_closed_and_created_again_with_its_alias_pages_again(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents
) -> None:
    """Opsgenie makes a new alert (a new id) when an alias that was closed fires again: the alias is
    the alert whose episodes count, so its create triggers again and its close resolves again."""
    server = start(server_factory, pd)
    with FakeOpsgenie() as opsgenie:
        opsgenie.webhook_url = f"{server.url}/ops-webhook"
        opsgenie.webhook_headers = {"X-Webhook-Token": OG_TOKEN}
        trigger, resolve = ("trigger", "db-down"), ("resolve", "db-down")

        first = opsgenie.user_create("Database down", alias="db-down")
        pd.wait_for(lambda: sent(pd) == [trigger])
        # Opsgenie sends the Create again (a retry), and someone acknowledges: the same episode.
        again = server.post(f"/ops-webhook?token={OG_TOKEN}", opsgenie.webhooks_sent[0])
        assert again.status_code == 200 and again.json()["duplicate"] is True
        opsgenie.user("acknowledge", first)
        acknowledged = routed(server, f"Acknowledge:{opsgenie.webhooks_sent[-1]['alertFlowContext']['requestId']}")
        assert acknowledged["status"] == "unmatched"
        assert episode_step(acknowledged)["why"] == "alert.acknowledged belongs to episode 1 (open)"

        opsgenie.user("close", first)
        pd.wait_for(lambda: sent(pd) == [trigger, resolve])
        second = opsgenie.user_create("Database down", alias="db-down")
        assert second.id != first.id
        pd.wait_for(lambda: sent(pd) == [trigger, resolve, trigger])
        created = routed(server, f"Create:{opsgenie.webhooks_sent[-1]['alertFlowContext']['requestId']}")
        assert episode_step(created) == {
            "result": "episode 2 of alert dedup:opsgenie:db-down",
            "why": "alert.created opens episode 2 (episode 1 was closed)",
            "episode": 2,
            "alert": "dedup:opsgenie:db-down",
        }
        opsgenie.user("close", second)
        pd.wait_for(lambda: sent(pd) == [trigger, resolve, trigger, resolve])
        assert [i.status for i in pd.incidents] == ["resolved", "resolved"]


def test_a_thena_ticket_created_twice_still_pages_once(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents
) -> None:
    """Thena's tickets have no episodes: `key:` stays one delivery per ticket, ever (seed 000)."""
    server = start(server_factory, pd)
    events = f"/thena/events?token={THENA_TOKEN}"
    assert server.post(events, ticket_event("t-1", "T1", "a@example.com")).status_code == 200
    pd.wait_for(lambda: sent(pd) == [("trigger", "thena-ticket-T1")])
    assert server.post(events, ticket_event("t-2", "T1", "a@example.com")).status_code == 200
    second = routed(server, "t-2")
    assert "already has the key thena-ticket-T1" in not_sent(second)[0]
    assert not [s for s in second["trace"] if "episode" in s] and second["event"]["episode"] is None
    # A later ticket pages: by then a second send of the first would have come.
    server.post(events, ticket_event("t-3", "T3", "a@example.com"))
    pd.wait_for(lambda: len(sent(pd)) == 2)
    assert sent(pd) == [("trigger", "thena-ticket-T1"), ("trigger", "thena-ticket-T3")]


# ---- the same event routed twice


def in_process(config: str) -> dict[str, Any]:
    """The file with its variables set, for routers made here (nothing is sent from them)."""
    for name, value in {**ENV, "PD_EVENTS_URL": "http://127.0.0.1:9/v2/enqueue"}.items():
        config = config.replace("${" + name + "}", value)
    return dict(yaml.safe_load(config))


ROUTER_CONFIG = in_process(CONFIG)


def fire_or_resolve(state: str) -> Event:
    return Event(
        id=new_id(time.time()),
        org="default",
        endpoint="probes",
        source="generic",
        kind=f"probe.{state}",
        received_at=time.time(),
        delivery_key=new_id(time.time()),
        dedup_key=CHECK,
    )


def router(store: Store, metrics: Metrics) -> Router:
    """A router as `alertbridge serve` builds one, whose claims lapse at once: another router may
    take the same events, as after a lease ran out while the first was still routing them."""
    config = Config.model_validate(ROUTER_CONFIG)
    return Router(
        store,
        compile_rules(config),
        targets.configure(config),
        metrics,
        on_deliveries=lambda: None,
        lease=0.0,
        episodes={e.name: e.episodes.effects() for e in config.endpoints if e.episodes is not None},
    )


def recorded(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("alertbridge_events_routed_total", {"status": "routed"}) or 0.0


class EpisodeWritesHeld:
    """Another transaction holds what a router records an episode step with (the episodes table on
    PostgreSQL, the database's write lock on SQLite): routers read the alert, decide, and wait."""

    def __init__(self, url: str, stores: Sequence[Any] = ()) -> None:
        self.url = url
        self.stores = stores  # SQLite: the stores whose writer is watched
        self.holder: Any = None
        self.taken: list[int] = []

    def __enter__(self) -> EpisodeWritesHeld:
        if POSTGRES:
            self.holder = psycopg.connect(self.url)
            self.holder.execute("LOCK TABLE episodes IN EXCLUSIVE MODE")
        else:
            self.holder = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            self.holder.execute("BEGIN IMMEDIATE")
            self.taken = [s.commit_stats()[1] for s in self.stores]
        return self

    def __exit__(self, *exc: object) -> None:
        self.holder.rollback()
        self.holder.close()

    def waiting(self) -> int:
        """How many writes wait: on PostgreSQL, the lock's queue; on SQLite, the writes the stores'
        writers have taken up (`commit_stats`) and cannot commit."""
        if POSTGRES:
            with psycopg.connect(self.url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE relation = 'episodes'::regclass AND NOT granted"
                ).fetchone()
            return int(row[0]) if row else 0
        return sum(s.commit_stats()[1] - n for s, n in zip(self.stores, self.taken, strict=True))

    async def until_waiting(self, count: int) -> None:
        deadline = time.monotonic() + 15
        while self.waiting() < count:
            assert time.monotonic() < deadline, f"timed out waiting for {count} router(s) to record"
            await asyncio.sleep(0.02)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_one_event_routed_by_two_routers_at_once_opens_one_episode(store_url: str) -> None:
    """Two routers take the same fire (after a resolve), as when a lease ran out under the first,
    and both read the alert closed and decide the fire opens episode 2 before either records it:
    one decision is recorded, the other finds the alert moved and is dropped (its event is routed
    already). One episode 2, one trigger; the next resolve resolves episode 2, not a third."""
    first, second = open_store(store_url), open_store(store_url)
    await first.open()
    await second.open()
    try:
        one, two = Metrics(), Metrics()
        a, b = router(first, one), router(second, two)
        for state in ("firing", "resolved"):
            await first.add_events([fire_or_resolve(state)])
            assert await a.route_pending() == 1
        assert await first.episode("default", f"dedup:probes:{CHECK}") == Episode(1, False)

        fire = fire_or_resolve("firing")
        await first.add_events([fire])
        with EpisodeWritesHeld(store_url, [first, second]) as held:
            routing_a = asyncio.create_task(a.route_pending())
            await held.until_waiting(1)
            routing_b = asyncio.create_task(b.route_pending())
            await held.until_waiting(2)
        assert [await routing_a, await routing_b] == [1, 1]  # both routed it
        assert recorded(one) - 2 + recorded(two) == 1  # one decision recorded
        assert await second.episode("default", f"dedup:probes:{CHECK}") == Episode(2, True)
        row = await first.get_event(fire.id)
        assert row is not None and row.status == "routed" and row.trace is not None
        assert row.trace[-1]["why"] == "probe.firing opens episode 2 (episode 1 was closed)"
        (made,) = await first.list_deliveries(event_id=fire.id)
        assert made.idempotency_key == f"key:trigger-{CHECK}#episode-2"

        resolve = fire_or_resolve("resolved")
        await second.add_events([resolve])
        assert await b.route_pending() == 1
        (made,) = await second.list_deliveries(event_id=resolve.id)
        assert made.idempotency_key == f"key:resolve-{CHECK}#episode-2"
        assert await first.episode("default", f"dedup:probes:{CHECK}") == Episode(2, False)
    finally:
        await first.close()
        await second.close()


@pytest.mark.skipif(
    not POSTGRES,
    reason="on SQLite ingress and the router write through one writer: holding the router's write back holds"
    " the fire's webhook too (the two-router test above holds the writer between decision and record)",
)
def test_killed_while_recording_a_decision_the_fire_opens_one_episode(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents, store_url: str
) -> None:
    """The server has read the alert, decided the fire opens episode 2, and is recording that when it
    is killed. Restarted, it routes the fire again: episode 2, not 3; one trigger."""
    server = start(server_factory, pd)
    probe(server, "p1", "firing")
    probe(server, "p2", "resolved")
    pd.wait_for(lambda: sent(pd) == [("trigger", CHECK), ("resolve", CHECK)])
    with EpisodeWritesHeld(store_url) as held:
        probe(server, "p3", "firing")
        wait_until(lambda: held.waiting() == 1, 15, "the router recording its decision")
        server.kill()
    assert [e["status"] for e in server.events() if e["event"]["delivery_key"] == "p3"] == ["received"]
    server.start()
    again = routed(server, "p3")
    assert episode_step(again)["why"] == "probe.firing opens episode 2 (episode 1 was closed)"
    probe(server, "p4", "resolved")
    pd.wait_for(lambda: len(sent(pd)) == 4)
    assert sent(pd) == [("trigger", CHECK), ("resolve", CHECK)] * 2
    assert episode_step(routed(server, "p4"))["why"] == "probe.resolved closes episode 2"


def test_a_kind_that_both_opens_and_closes_is_refused_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "alertbridge.yaml"
    path.write_text(
        "endpoints:\n"
        "  - name: probes\n"
        "    source: generic\n"
        "    path: /probes\n"
        "    token: abc\n"
        "    episodes:\n"
        "      open: [probe.firing, probe.flapping]\n"
        "      close: [probe.resolved, probe.flapping]\n"
        "  - name: more-probes\n"
        "    source: generic\n"
        "    path: /more-probes\n"
        "    token: abc\n"
        "    episodes: {open: [probe.firing], reopen: [probe.again]}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    shown = str(caught.value)
    assert f"{path}:6: endpoints[0].episodes: " in shown
    assert "a kind cannot both open and close an episode: probe.flapping" in shown
    assert f"{path}:13: endpoints[1].episodes.reopen: unknown field" in shown
