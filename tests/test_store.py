"""The store on a real database (SQLite file or PostgreSQL, as the suite runs): idempotency, group
commit, claims, ordering, leases, replay, and what changes when several replicas share it."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Awaitable
from pathlib import Path

import msgspec
import pytest

from alertbridge.events import Event, Expected
from alertbridge.store import Store, open_store
from alertbridge.store.base import Attempt, AttemptResult, Decided, Delivery, Episode, EpisodeStep, NewDelivery

from .backends import POSTGRES

pytestmark = pytest.mark.anyio

only_postgres = pytest.mark.skipif(
    not POSTGRES, reason="SQLite serves one process: there are no other replicas to claim from or to notify"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(store_url: str):  # type: ignore[no-untyped-def]
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def replica(store_url: str, store: Store):  # type: ignore[no-untyped-def]
    """A second store on the same database, as another replica (or process) has."""
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


def event(n: int, key: str | None = None) -> Event:
    return Event(
        id=f"EV{n:024d}",
        org="default",
        endpoint="e",
        source="thena",
        kind="ticket.created",
        received_at=float(n),
        delivery_key=key or f"d{n}",
    )


def delivery(
    n: int, event_id: str, *, target: str = "t", order: str | None = None, key: str | None = None, at: float = 0.0
) -> NewDelivery:
    return NewDelivery(
        id=f"DL{n:024d}",
        org="default",
        event_id=event_id,
        route="r",
        target=target,
        action="trigger",
        fields={"n": n},
        idempotency_key=key or f"k{n}",
        order_key=order,
        created_at=at,
    )


async def decide(
    store: Store, event_id: str, status: str, trace: list[dict], deliveries: list[NewDelivery], now: float
) -> list[str | None]:
    """One event's decision, recorded as a routing batch of one."""
    (recorded,) = await store.record_decisions([Decided(event_id, status, trace, deliveries)], now)
    assert recorded is not None
    return recorded


async def test_events_are_idempotent_on_their_delivery_key(store: Store) -> None:
    first = await store.add_events([event(1, "same")])
    again = await store.add_events([event(2, "same")])
    assert first[0].duplicate_of is None
    assert again[0].duplicate_of == event(1).id
    assert [e.id for e in await store.unrouted_events(10)] == [event(1).id]


async def test_a_large_commit_stores_each_delivery_key_once_across_statements(store: Store) -> None:
    """A group commit's events go in as few statements as the database takes: keys repeated across
    those statements, within one request and from an earlier commit are each stored once."""
    earlier = [event(n, f"key{n}") for n in range(0, 1500, 7)]
    await store.add_events(earlier)
    wanted = [event(10_000 + n, f"key{n % 1300}") for n in range(1600)]  # keys 0-299 come twice
    results = await store.add_events(wanted)
    first = {e.delivery_key: e.id for e in earlier}
    for e, stored in zip(wanted, results, strict=True):
        if e.delivery_key in first:
            assert stored.duplicate_of == first[e.delivery_key], e.delivery_key
        else:
            assert stored.duplicate_of is None, e.delivery_key
            first[e.delivery_key] = e.id
    assert len(first) == 1300 + len([n for n in range(1300, 1500, 7)])
    assert sorted(e.id for e in await store.unrouted_events(5000)) == sorted(first.values())


@pytest.mark.skipif(POSTGRES, reason="the limit on statement parameters is SQLite's")
async def test_sqlite_before_3_32_takes_a_large_commit_too(tmp_path: Path) -> None:
    """SQLite before 3.32 takes 999 parameters a statement (Debian 10, Ubuntu 20.04, RHEL 8)."""
    from alertbridge.store.sqlite import _connect, _event_values, _insert_events, _Job, migrate

    conn = _connect(str(tmp_path / "old.db"))
    migrate(conn)
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    loop = asyncio.get_running_loop()
    rows = [_event_values(event(n)) for n in range(400)]
    jobs = [
        _Job(None, loop.create_future(), loop, events=rows[:200]),
        _Job(None, loop.create_future(), loop, rows[200:]),
    ]
    conn.execute("BEGIN")
    results = _insert_events(conn, jobs, [0, 1])
    conn.execute("COMMIT")
    assert [len(r) for r in results] == [200, 200] and all(s.duplicate_of is None for r in results for s in r)
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 400
    conn.close()


@pytest.mark.skipif(POSTGRES, reason="SQLite's writer thread")
async def test_a_failed_insert_answers_every_request_of_the_commit(tmp_path: Path) -> None:
    """The events of a group commit go in together, so when they fail, each waiting request is told
    (and the writer goes on); before, two requests in a failed commit stopped the writer for good."""
    from alertbridge.store.sqlite import _connect, _event_values, _Job, _Writer, migrate

    path = str(tmp_path / "a.db")
    conn = _connect(path)
    migrate(conn)
    loop = asyncio.get_running_loop()
    good = [_event_values(event(1))]
    bad = [(row[0], None, *row[2:]) for row in [_event_values(event(2))]]  # no org: the database refuses it
    jobs = [_Job(None, loop.create_future(), loop, events=good), _Job(None, loop.create_future(), loop, events=bad)]
    _Writer(path)._commit(conn, jobs)
    await asyncio.gather(*(job.future for job in jobs), return_exceptions=True)
    assert all(isinstance(job.future.exception(), sqlite3.IntegrityError) for job in jobs)
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0 and not conn.in_transaction
    conn.close()


async def test_a_routing_batch_is_recorded_whole_with_keys_used_once(store: Store) -> None:
    await store.add_events([event(i) for i in range(1, 5)])
    await decide(store, event(1).id, "routed", [], [delivery(1, event(1).id, key="before")], 0)
    trace = [{"route": "r", "actions": [{"delivery": delivery(n, "").id} for n in (30, 31)]}]
    batch = [
        Decided(event(2).id, "routed", [], [delivery(20, event(2).id, key="new"), delivery(21, event(2).id)]),
        Decided(
            event(3).id,
            "routed",
            trace,
            [delivery(30, event(3).id, key="new"), delivery(31, event(3).id, key="before")],
        ),
        Decided(event(4).id, "unmatched", [{"route": "r", "matched": False}], []),
    ]
    results = await store.record_decisions(batch, 5)
    assert results == [[None, None], [delivery(20, "").id, delivery(1, "").id], []]
    assert await store.unrouted_events(10, 6) == []
    third = await store.get_event(event(3).id)
    assert third is not None and third.routed_at == 5
    assert [a["delivery"] for a in third.trace[0]["actions"]] == [delivery(20, "").id, delivery(1, "").id]
    unmatched = await store.get_event(event(4).id)
    assert unmatched is not None and unmatched.status == "unmatched"
    due = await store.claim_deliveries(10, 30, 10, {})
    assert [d.id for d in due] == [delivery(n, "").id for n in (1, 20, 21)]  # in the order asked for


async def test_concurrent_writes_share_commits(store: Store) -> None:
    commits_before, _ = store.commit_stats()  # type: ignore[attr-defined]
    results = await asyncio.gather(*(store.add_events([event(i)]) for i in range(300)))
    assert all(r[0].duplicate_of is None for r in results)
    commits, jobs = store.commit_stats()  # type: ignore[attr-defined]
    assert jobs >= 300
    assert commits - commits_before < 150  # group commit: many requests per disk flush
    assert len(await store.unrouted_events(1000)) == 300


async def test_delivery_keys_are_unique_and_routing_twice_adds_nothing(store: Store) -> None:
    await store.add_events([event(1), event(2)])
    assert await decide(store, event(1).id, "routed", [], [delivery(1, event(1).id, key="once")], 0) == [None]
    trace = [{"route": "r", "actions": [{"delivery": delivery(2, event(2).id).id}]}]
    existing = await decide(store, event(2).id, "routed", trace, [delivery(2, event(2).id, key="once")], 0)
    assert existing == [delivery(1, event(1).id).id]
    shown = await store.get_event(event(2).id)
    assert shown is not None and shown.trace is not None
    assert "already has the key once" in shown.trace[0]["actions"][0]["not_sent"]
    assert len(await store.list_deliveries()) == 1


async def test_an_order_key_holds_later_deliveries_until_the_earlier_is_done(store: Store) -> None:
    await store.add_events([event(1)])
    first, second = delivery(1, event(1).id, order="t:x", key="a"), delivery(2, event(1).id, order="t:x", key="b")
    other = delivery(3, event(1).id, order="t:y", key="c")
    await decide(store, event(1).id, "routed", [], [first, second, other], 0)
    claimed = await store.claim_deliveries(now=1, lease=1000, limit=10, capacity={})
    assert {d.id for d in claimed} == {first.id, other.id}
    one = next(d for d in claimed if d.id == first.id)
    await store.record_attempt(
        one, Attempt(one.id, 1, 1, 0.1, "retry", 503, "down"), AttemptResult("pending", 100, "down")
    )
    assert await store.claim_deliveries(now=2, lease=1000, limit=10, capacity={}) == []  # still held
    (again,) = await store.claim_deliveries(now=100, lease=1000, limit=10, capacity={})
    assert again.id == first.id and again.attempts == 1
    await store.record_attempt(
        again, Attempt(again.id, 2, 100, 0.1, "success", 202, "ok"), AttemptResult("delivered", 100, None)
    )
    (last,) = await store.claim_deliveries(now=100, lease=1000, limit=10, capacity={})
    assert last.id == second.id


async def test_attempts_finishing_together_are_recorded_together_and_one_bad_one_fails_alone(store: Store) -> None:
    await store.add_events([event(1)])
    await decide(store, event(1).id, "routed", [], [delivery(i, event(1).id) for i in range(20)], 0)
    claimed = await store.claim_deliveries(now=1, lease=100, limit=50, capacity={})
    ghost = dataclasses.replace(claimed[0], id="DL-never-made")  # its attempt breaks a foreign key

    def finish(d: Delivery, status: str) -> Awaitable[list[str]]:
        attempt = Attempt(d.id, 1, 2, 0.1, "success" if status == "delivered" else "retry", 202, status)
        return store.record_attempt(d, attempt, AttemptResult(status, 50, None))

    results = await asyncio.gather(
        *(finish(d, "delivered" if i % 2 else "pending") for i, d in enumerate(claimed)),
        finish(ghost, "delivered"),
        return_exceptions=True,
    )
    assert results[:-1] == [[]] * 20
    assert isinstance(results[-1], Exception)
    states = {d.id: (d.status, d.attempts) for d in await store.list_deliveries()}
    assert states == {d.id: ("delivered" if i % 2 else "pending", 1) for i, d in enumerate(claimed)}
    assert [len(await store.attempts(d.id)) for d in claimed] == [1] * 20
    assert len(await store.claim_deliveries(now=50, lease=100, limit=50, capacity={})) == 10


async def test_capacity_and_leases(store: Store) -> None:
    await store.add_events([event(1)])
    await decide(store, event(1).id, "routed", [], [delivery(i, event(1).id) for i in range(5)], 0)
    claimed = await store.claim_deliveries(now=1, lease=10, limit=10, capacity={"t": 2})
    assert len(claimed) == 2
    assert len(await store.claim_deliveries(now=2, lease=10, limit=10, capacity={"t": 0})) == 0
    # A dispatcher that died leaves its claims; they are due again when the lease runs out.
    rest = await store.claim_deliveries(now=2, lease=10, limit=10, capacity={})
    assert len(rest) == 3
    assert len(await store.claim_deliveries(now=12, lease=10, limit=10, capacity={})) == 5
    # An attempt recorded by a dispatcher whose claim was taken over does not overwrite the new owner's state.
    stale = claimed[0]
    await store.record_attempt(
        stale, Attempt(stale.id, 1, 12, 0.1, "success", 202, "late"), AttemptResult("delivered", 12, None)
    )
    current = await store.get_delivery(stale.id)
    assert current is not None and current.status == "in_flight"


async def test_replay_makes_dead_deliveries_due_with_a_fresh_budget(store: Store) -> None:
    await store.add_events([event(1)])
    await decide(store, event(1).id, "routed", [], [delivery(1, event(1).id)], 0)
    (d,) = await store.claim_deliveries(now=1, lease=10, limit=10, capacity={})
    await store.record_attempt(d, Attempt(d.id, 1, 1, 0.1, "permanent", 400, "bad"), AttemptResult("dead", 1, "bad"))
    assert await store.replay([event(1).id], now=50) == [d.id]
    replayed = await store.get_delivery(d.id)
    assert replayed is not None
    assert (replayed.status, replayed.attempts, replayed.budget_from, replayed.last_error) == ("pending", 0, 50, None)
    assert len(await store.attempts(d.id)) == 1  # history is kept


async def test_a_restart_releases_claims_left_in_flight(store_url: str) -> None:
    first = open_store(store_url)
    await first.open()
    await first.add_events([event(1)])
    await decide(first, event(1).id, "routed", [], [delivery(1, event(1).id)], 0)
    assert len(await first.claim_deliveries(now=1, lease=3600, limit=10, capacity={})) == 1
    await first.close()
    second = open_store(store_url)
    await second.open()
    if POSTGRES:  # the claim may be a live replica's: it stays until its lease ends (claimed at 1 for an hour)
        assert await second.release_claims(now=2) == 0
        assert await second.claim_deliveries(now=2, lease=60, limit=10, capacity={}) == []
        assert len(await second.claim_deliveries(now=3601, lease=60, limit=10, capacity={})) == 1
    else:  # one process: whatever is in flight was the last run's
        assert await second.release_claims(now=2) == 1
        assert len(await second.claim_deliveries(now=2, lease=60, limit=10, capacity={})) == 1
    await second.close()


async def test_migrate_applies_each_version_once(store: Store) -> None:
    assert await store.migrate() == []  # open applied them all
    fresh_versions = {version for version, _ in await store.migrate()}
    assert fresh_versions == set()


async def test_the_same_delivery_id_at_two_replicas_at_once_is_stored_once(store: Store, replica: Store) -> None:
    copies = [event(i, "same-delivery") for i in range(40)]
    results = await asyncio.gather(*(s.add_events([e]) for s, e in zip([store, replica] * 20, copies, strict=True)))
    stored = [r[0] for r in results]
    originals = [s for s in stored if s.duplicate_of is None]
    assert len(originals) == 1
    assert {s.duplicate_of for s in stored if s.duplicate_of} == {originals[0].event_id}
    assert len(await store.list_events(100)) == 1


async def test_two_replicas_claiming_at_once_share_out_the_deliveries(store: Store, replica: Store) -> None:
    await store.add_events([event(1)])
    await decide(store, event(1).id, "routed", [], [delivery(i, event(1).id) for i in range(60)], 0)
    ids: list[str] = []
    for _ in range(20):  # rounds of claims at the same moment, until nothing is left
        claims = await asyncio.gather(
            *(s.claim_deliveries(now=1, lease=60, limit=7, capacity={}) for s in [store, replica] * 3)
        )
        if not any(claims):
            break
        ids += [d.id for batch in claims for d in batch]
    assert len(ids) == len(set(ids)) == 60  # each delivery claimed by one of them, once


@only_postgres
async def test_an_event_being_routed_is_left_to_its_replica_until_the_lease_ends(store: Store, replica: Store) -> None:
    await store.add_events([event(1), event(2)])
    mine = await store.unrouted_events(10, now=100, lease=30)
    assert [e.id for e in mine] == [event(1).id, event(2).id]
    assert await replica.unrouted_events(10, now=110, lease=30) == []
    # The first replica died: after the lease, the other routes the events.
    taken = await replica.unrouted_events(10, now=131, lease=30)
    assert [e.id for e in taken] == [event(1).id, event(2).id]
    await decide(replica, event(1).id, "routed", [], [], 131)
    assert [e.id for e in await replica.unrouted_events(10, now=132, lease=30)] == [event(2).id]


@only_postgres
async def test_other_replicas_are_woken_by_notifications(store_url: str, store: Store) -> None:
    woken: list[str] = []
    listener = open_store(store_url)
    listener.subscribe(on_events=lambda: woken.append("events"), on_deliveries=lambda: woken.append("deliveries"))
    await listener.open()
    try:
        assert listener.listening.is_set()  # type: ignore[attr-defined]  # listening once open() returns
        await asyncio.sleep(0.3)
        assert woken == []  # the first connection missed nothing: start-up reads the store after it
        await store.add_events([event(1)])
        await decide(store, event(1).id, "routed", [], [delivery(1, event(1).id)], 0)
        for _ in range(100):
            if woken == ["events", "deliveries"]:
                break
            await asyncio.sleep(0.05)
        assert woken == ["events", "deliveries"]
        await listener.add_events([event(2)])  # its own commits do not wake itself
        await asyncio.sleep(0.3)
        assert woken == ["events", "deliveries"]

        # The listening connection is cut: on reconnecting, each subscriber is called once, for
        # whatever was notified while no one listened.
        woken.clear()
        await store._exec(  # type: ignore[attr-defined]
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN %%' AND pid <> pg_backend_pid()"
        )
        for _ in range(100):
            if woken == ["events", "deliveries"]:
                break
            await asyncio.sleep(0.05)
        assert woken == ["events", "deliveries"]
        assert listener.listening.is_set()  # type: ignore[attr-defined]
        await store.add_events([event(3)])  # and it listens again
        for _ in range(100):
            if woken == ["events", "deliveries", "events"]:
                break
            await asyncio.sleep(0.05)
        assert woken == ["events", "deliveries", "events"]
    finally:
        await listener.close()


@only_postgres
async def test_replicas_starting_together_migrate_once(store_url: str) -> None:
    from .backends import Database

    database = Database()
    try:
        stores = [open_store(database.url) for _ in range(3)]
        applied = await asyncio.gather(*(s.migrate() for s in stores))
        versions = sorted(v for done in applied for v, _ in done)
        assert versions == sorted({v for done in applied for v, _ in done})  # none twice
        assert versions[-1] >= 8
    finally:
        database.drop()


async def test_objects_made_through_the_api_are_kept_per_org_kind_and_name(store: Store) -> None:
    """The contract every backend keeps for save_object / objects / delete_object."""
    await store.save_object("acme", "target", "agent", {"name": "agent", "type": "inbox"}, 1.0, "ops@acme")
    await store.save_object("acme", "endpoint", "hook", {"name": "hook", "path": "/h"}, 2.0, None)
    await store.save_object("globex", "target", "agent", {"name": "agent", "type": "forward"}, 3.0, "x")
    # Saving again replaces the config, keeps when it was made.
    await store.save_object("acme", "target", "agent", {"name": "agent", "type": "slack"}, 4.0, "ops2@acme")
    targets = await store.objects("target")
    assert [(o.org, o.name, o.config["type"]) for o in targets] == [
        ("acme", "agent", "slack"),
        ("globex", "agent", "forward"),
    ]
    assert (targets[0].created_at, targets[0].updated_at, targets[0].updated_by) == (1.0, 4.0, "ops2@acme")
    assert [o.kind for o in await store.objects()] == ["target", "endpoint", "target"]
    assert await store.delete_object("acme", "target", "agent") is True
    assert await store.delete_object("acme", "target", "agent") is False
    assert [o.org for o in await store.objects("target")] == ["globex"]


@only_postgres
async def test_a_replica_with_a_stable_name_takes_back_its_own_claims_only(store_url: str) -> None:
    from alertbridge.store.postgres import PostgresStore

    first, sibling = PostgresStore(store_url, replica="replica-0"), PostgresStore(store_url, replica="replica-1")
    await first.open()
    await sibling.open()
    await first.add_events([event(1)])
    await decide(first, event(1).id, "routed", [], [delivery(i, event(1).id) for i in range(4)], 0)
    assert len(await first.claim_deliveries(now=1, lease=3600, limit=3, capacity={})) == 3
    assert len(await sibling.claim_deliveries(now=1, lease=3600, limit=3, capacity={})) == 1
    await first.close()  # as if killed: its claims stay
    again = PostgresStore(store_url, replica="replica-0")
    await again.open()
    try:
        assert await again.release_claims(now=2) == 3  # its own, from its previous run; not the sibling's
        mine = await again.claim_deliveries(now=2, lease=60, limit=10, capacity={})
        assert len(mine) == 3 and all(d.claim and d.claim.startswith("replica-0:") for d in mine)
    finally:
        await again.close()
        await sibling.close()


@only_postgres
async def test_both_backends_have_the_same_tables_and_columns(store: Store, store_url: str, tmp_path: Path) -> None:
    import sqlite3

    import psycopg

    lite = open_store(f"sqlite:///{tmp_path / 'same.db'}")
    await lite.migrate()
    with sqlite3.connect(tmp_path / "same.db") as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        on_sqlite = {
            t: {c[1] for c in conn.execute(f"PRAGMA table_info({t})")} for t in tables if not t.startswith("sqlite_")
        }
    with psycopg.connect(store_url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
        ).fetchall()
    on_postgres: dict[str, set[str]] = {}
    for table, column in columns:
        on_postgres.setdefault(table, set()).add(column)
    on_sqlite["schema_migrations"] = on_postgres["schema_migrations"] = set()  # applied_at: text there, a time here
    assert on_postgres == on_sqlite


async def test_a_nul_from_a_sender_is_stored_not_refused(store: Store) -> None:
    hostile = Event(
        id=f"EV{1:024d}",
        org="default",
        endpoint="e",
        source="thena",
        kind="ticket.created",
        received_at=1.0,
        delivery_key="d\x001",
        title="a\x00b",
    )
    (stored,) = await store.add_events([hostile])
    assert stored.duplicate_of is None
    (again,) = await store.add_events([msgspec.structs.replace(hostile, id=f"EV{2:024d}")])
    assert again.duplicate_of == hostile.id  # still idempotent on the same id
    row = await store.get_event(hostile.id)
    assert row is not None and row.event.title == "a\x00b"  # the event itself is kept as received
    assert await store.list_events(10, kind="ticket\x00created") == []


async def test_order_follows_the_events_even_when_a_later_events_deliveries_were_written_first(store: Store) -> None:
    """One replica's concurrent transactions (or two replicas) may record a later event's decision
    first; what is sent first for one object is still what happened first."""
    await store.add_events([event(1), event(2)])
    await decide(store, event(2).id, "routed", [], [delivery(20, event(2).id, order="alert:A")], 0)
    await decide(store, event(1).id, "routed", [], [delivery(10, event(1).id, order="alert:A")], 0)
    first = await store.claim_deliveries(now=1, lease=60, limit=10, capacity={})
    assert [d.id for d in first] == [delivery(10, event(1).id).id]
    done = AttemptResult("delivered", 0, None)
    await store.record_attempt(first[0], Attempt(first[0].id, 1, 1, 0.01, "success", 202, "ok"), done)
    second = await store.claim_deliveries(now=2, lease=60, limit=10, capacity={})
    assert [d.id for d in second] == [delivery(20, event(2).id).id]


@only_postgres
async def test_a_claim_walks_the_due_index_in_order_whatever_the_statistics(store: Store, store_url: str) -> None:
    """At a backlog of thousands the planner, on statistics that lag the burst, sorted every due row
    (each with its order check) before the limit: seconds per claim. The claim must stop at its limit."""
    import psycopg

    from alertbridge.store.postgres import _DUE, _IN_ORDER

    await store.add_events([event(i) for i in range(1, 301)])
    batch = [
        Decided(event(i).id, "routed", [], [delivery(i * 10 + n, event(i).id, order=f"o{i % 50}") for n in range(10)])
        for i in range(1, 301)
    ]
    await store.record_decisions(batch, 0)
    async with await psycopg.AsyncConnection.connect(store_url) as conn:
        for statistics in ("as left by the burst", "analysed"):
            if statistics == "analysed":
                await conn.execute("ANALYZE deliveries")
            async with conn.transaction():
                await conn.execute(_IN_ORDER)
                query = _DUE.replace("%(now)s", "1").replace("%(scan)s", "128")
                plan = "\n".join(row[0] for row in await (await conn.execute("EXPLAIN " + query)).fetchall())
            assert "deliveries_pending" in plan and "Sort" not in plan, (statistics, plan)
    claimed = await store.claim_deliveries(now=1, lease=100, limit=100, capacity={})
    assert [d.id for d in claimed] == [delivery(i * 10, "").id for i in range(1, 51)]  # each order key's head


@pytest.mark.skipif(POSTGRES, reason="the PostgreSQL claim has its own test above")
async def test_a_sqlite_claim_walks_the_due_index_in_order(store: Store, store_url: str) -> None:
    """Pending and lapsed claims in one statement (an OR) made SQLite read, check and sort every due row
    before the limit, so a claim cost more the larger the backlog. Each must stop at its limit."""
    import sqlite3

    from alertbridge.store.sqlite import _DUE, _LAPSED, path_of

    await store.add_events([event(i) for i in range(1, 301)])
    batch = [
        Decided(event(i).id, "routed", [], [delivery(i * 10 + n, event(i).id, order=f"o{i % 50}") for n in range(10)])
        for i in range(1, 301)
    ]
    await store.record_decisions(batch, 0)
    conn = sqlite3.connect(path_of(store_url))
    try:
        for query, index in ((_DUE, "deliveries_pending"), (_LAPSED, "deliveries_claimed")):
            plan = "\n".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + query, {"now": 1, "scan": 128}))
            assert f"USING INDEX {index}" in plan and "TEMP B-TREE" not in plan, plan
    finally:
        conn.close()
    claimed = await store.claim_deliveries(now=1, lease=100, limit=100, capacity={})
    assert [d.id for d in claimed] == [delivery(i * 10, "").id for i in range(1, 51)]  # each order key's head
    # Those claims lapse unrecorded (their dispatcher died): they are due again, before anything newer.
    again = await store.claim_deliveries(now=200, lease=100, limit=60, capacity={})
    assert [d.id for d in again][:50] == [d.id for d in claimed]


@only_postgres
async def test_a_rate_limit_holds_across_replicas(store: Store, replica: Store) -> None:
    await store.add_events([event(1)])
    await decide(store, event(1).id, "routed", [], [delivery(i, event(1).id) for i in range(12)], 0)
    limits = {"t": (3, 60.0)}
    # Each replica's own window is empty, so each alone would take three; together they take three.
    first, second = await asyncio.gather(
        store.claim_deliveries(now=1, lease=100, limit=10, capacity={"t": 3}, limits=limits),
        replica.claim_deliveries(now=1, lease=100, limit=10, capacity={"t": 3}, limits=limits),
    )
    assert len(first) + len(second) == 3
    for d in [*first, *second]:  # sent: they count until the window has passed, delivered or not
        await store.record_attempt(
            d, Attempt(d.id, 1, 1, 0.1, "success", 202, "ok"), AttemptResult("delivered", 1, None)
        )
    assert await replica.claim_deliveries(now=30, lease=100, limit=10, capacity={"t": 3}, limits=limits) == []
    later = await replica.claim_deliveries(now=61.5, lease=100, limit=10, capacity={"t": 3}, limits=limits)
    assert len(later) == 3
    # Claimed and not yet recorded counts too.
    assert await store.claim_deliveries(now=62, lease=100, limit=10, capacity={"t": 3}, limits=limits) == []


async def _expecting(store: Store, n: int, actor: str | None = None) -> tuple[Delivery, int]:
    """A delivery that is about to acknowledge PINC1, and the echo it expects (its id)."""
    await store.add_events([event(n)])
    await decide(store, event(n).id, "routed", [], [delivery(n, event(n).id)], 0)
    (sent,) = await store.claim_deliveries(now=1, lease=60, limit=1, capacity={})
    await store.expect_echoes(sent, [Expected("pagerduty", "incident", "PINC1", "acknowledged", actor=actor)], 1)
    rows = await store.open_echoes("default", [("pagerduty", "incident", "PINC1")], "acknowledged", 0)
    return sent, max(int(row["id"]) for row in rows)


async def test_two_decisions_naming_one_expected_echo_suppress_one_event(store: Store, replica: Store) -> None:
    """An expected echo absorbs one webhook. Two decisions that name it (two replicas that each read
    it open, or one batch) suppress one event; the other is not recorded and stays to be routed again."""
    _, echo_id = await _expecting(store, 1)
    await store.add_events([event(2), event(3)])
    suppressed = [{"result": "echo suppressed"}]
    first, second = await asyncio.gather(
        store.record_decisions([Decided(event(2).id, "suppressed", suppressed, [], echo_id)], 5),
        replica.record_decisions([Decided(event(3).id, "suppressed", suppressed, [], echo_id)], 5),
    )
    assert sorted([first[0] is None, second[0] is None]) == [False, True]
    rows = [await store.get_event(event(n).id) for n in (2, 3)]
    assert sorted(row.status for row in rows if row) == ["received", "suppressed"]
    assert await store.open_echoes("default", [("pagerduty", "incident", "PINC1")], "acknowledged", 0) == []
    left = [e.id for e in await replica.unrouted_events(10, 6)]
    assert left == [event(2).id if first[0] is None else event(3).id]  # its claim released: any replica routes it

    # In one batch the first decision takes it; the batch's other decisions are recorded as usual.
    _, again = await _expecting(store, 4)
    await store.add_events([event(5), event(6), event(7)])
    batch = [
        Decided(event(5).id, "suppressed", suppressed, [], again),
        Decided(event(6).id, "suppressed", suppressed, [], again),
        Decided(event(7).id, "routed", [], [delivery(7, event(7).id)]),
    ]
    results = await store.record_decisions(batch, 7)
    assert results == [[], None, [None]]
    statuses = [row.status for row in [await store.get_event(event(n).id) for n in (5, 6, 7)] if row]
    assert statuses == ["suppressed", "received", "routed"]


async def test_the_actor_a_target_reports_is_set_on_its_deliverys_open_echoes(store: Store) -> None:
    """PagerDuty's answer names the user we acted as; an actor known before the send is kept."""
    for n, before in ((1, None), (2, "alertbridge")):
        sent, echo_id = await _expecting(store, n, actor=before)
        done = AttemptResult("delivered", 2, None, None, actor="PBRIDGE")
        await store.record_attempt(sent, Attempt(sent.id, 1, 1, 0.1, "success", 200, "ok"), done)
        rows = await store.open_echoes("default", [("pagerduty", "incident", "PINC1")], "acknowledged", 0)
        assert [r["actor"] for r in rows if r["id"] == echo_id] == [before or "PBRIDGE"]


async def test_the_shared_statements_are_one_text_in_two_placeholder_styles() -> None:
    """PostgreSQL's statements are SQLite's, each `:name` as psycopg's `%(name)s`; `::type` casts stay."""
    import re

    from alertbridge.store import sql

    assert sql.pyformat("SELECT x::text FROM t WHERE a = :a AND b LIKE '5%'") == (
        "SELECT x::text FROM t WHERE a = %(a)s AND b LIKE '5%%'"
    )
    for field in dataclasses.fields(sql.Statements):
        named, pyformat = getattr(sql.SQLITE, field.name), getattr(sql.POSTGRES, field.name)
        if field.name != "param":
            assert re.sub(r"%\((\w+)\)s", r":\1", pyformat).replace("%%", "%") == named
            assert "%(" not in named


async def test_both_backends_give_users_and_integrations_in_the_same_order(store: Store) -> None:
    """Sign-in lists an email's orgs oldest first, integrations come by (org, kind), on either backend."""
    for org in ("zeta", "alpha", "mid"):
        assert await store.create_user(org, "Ops@Example.com", "hash", "admin", 1)
    assert [u["org"] for u in await store.find_user("ops@example.com")] == ["zeta", "alpha", "mid"]
    for org, kind in (("b", "pagerduty"), ("a", "slack"), ("a", "opsgenie")):
        await store.save_integration(org, kind, {"on": True}, 1, None)
    assert [(org, kind) for org, kind, _ in await store.integrations()] == [
        ("a", "opsgenie"),
        ("a", "slack"),
        ("b", "pagerduty"),
    ]


def moves(n: int, was: Episode, now: Episode, alert: str = "dedup:db-down") -> EpisodeStep:
    return EpisodeStep("default", alert, event(n).id, was, now)


async def test_an_alert_moves_through_its_episodes_only_from_where_the_router_read_it(store: Store) -> None:
    """An episode step is recorded with its event's decision, and only from the state it was decided
    on: a second decision made from the same reading (routing the same alert's event twice) is not
    recorded, its event stays to be routed again, and the alert is not moved twice."""
    alert = "dedup:db-down"
    assert await store.episode("default", alert) == Episode()
    await store.add_events([event(n) for n in range(1, 6)])
    opened = Episode(1, True)
    (first,) = await store.record_decisions(
        [Decided(event(1).id, "routed", [], [], None, moves(1, Episode(), opened))], 2
    )
    assert first == []
    assert await store.episode("default", alert) == opened
    again = moves(2, Episode(), opened)  # decided on the reading before the first was recorded
    assert await store.record_decisions(
        [Decided(event(2).id, "routed", [], [delivery(2, event(2).id)], None, again)], 3
    ) == [None]
    assert await store.episode("default", alert) == opened
    row = await store.get_event(event(2).id)
    assert row is not None and row.status == "received"
    assert await store.list_deliveries(event_id=event(2).id) == []

    closed, reopened = Episode(1, False), Episode(2, True)
    assert await store.record_decisions(
        [Decided(event(3).id, "routed", [], [], None, moves(3, opened, closed))], 4
    ) == [[]]
    assert await store.record_decisions(
        [Decided(event(4).id, "routed", [], [], None, moves(4, closed, reopened))], 5
    ) == [[]]
    assert await store.episode("default", alert) == reopened
    stale = moves(5, closed, reopened)  # a second router that read it closed: no third episode
    assert await store.record_decisions([Decided(event(5).id, "routed", [], [], None, stale)], 6) == [None]
    assert await store.episode("default", alert) == reopened
    assert await store.episode("other-org", alert) == Episode()
    assert await store.episode("default", "dedup:another") == Episode()


async def test_a_batchs_steps_of_one_alert_follow_from_each_other(store: Store) -> None:
    """In one batch, each step starts where the one before it left the alert; a step that is not
    recorded leaves the ones that followed from it unrecorded too, and the rest of the batch as usual."""
    await store.add_events([event(n) for n in range(1, 7)])
    opened, closed, reopened = Episode(1, True), Episode(1, False), Episode(2, True)
    batch = [
        Decided(event(1).id, "routed", [], [], None, moves(1, Episode(), opened)),
        Decided(event(2).id, "routed", [], [], None, moves(2, opened, closed)),
        Decided(event(3).id, "routed", [], [], None, moves(3, closed, reopened)),
    ]
    assert await store.record_decisions(batch, 2) == [[], [], []]
    assert await store.episode("default", "dedup:db-down") == reopened
    stale = [
        Decided(event(4).id, "routed", [], [], None, moves(4, opened, closed)),  # read before events 2 and 3's
        Decided(event(5).id, "routed", [], [], None, moves(5, closed, reopened)),  # follows from event 4's
        Decided(event(6).id, "routed", [], [delivery(6, event(6).id)], None, moves(6, Episode(), opened, "dedup:x")),
    ]
    assert await store.record_decisions(stale, 3) == [None, None, [None]]
    assert await store.episode("default", "dedup:db-down") == reopened
    assert await store.episode("default", "dedup:x") == opened
    statuses = [row.status for row in [await store.get_event(event(n).id) for n in (4, 5, 6)] if row]
    assert statuses == ["received", "received", "routed"]


async def test_two_replicas_opening_the_same_episode_at_once_open_it_once(store: Store, replica: Store) -> None:
    """Two routers that read the alert closed and each decided an event opens episode 2 (the same
    event routed twice, or two fires): one is recorded, the other is routed again."""
    await store.add_events([event(n) for n in range(1, 5)])
    opened, closed, reopened = Episode(1, True), Episode(1, False), Episode(2, True)
    await store.record_decisions([Decided(event(1).id, "routed", [], [], None, moves(1, Episode(), opened))], 1)
    await store.record_decisions([Decided(event(2).id, "routed", [], [], None, moves(2, opened, closed))], 2)
    first, second = await asyncio.gather(
        store.record_decisions(
            [Decided(event(3).id, "routed", [], [delivery(3, event(3).id)], None, moves(3, closed, reopened))], 3
        ),
        replica.record_decisions(
            [Decided(event(4).id, "routed", [], [delivery(4, event(4).id)], None, moves(4, closed, reopened))], 3
        ),
    )
    assert sorted([first[0] is None, second[0] is None]) == [False, True]
    assert await replica.episode("default", "dedup:db-down") == reopened
    assert len([d for d in await store.list_deliveries() if d.event_id in (event(3).id, event(4).id)]) == 1


async def test_a_decision_whose_episode_step_is_not_recorded_gives_back_the_echo_it_took(store: Store) -> None:
    """The echo and the episode step are recorded together or not at all: the expectation stays open
    for the event when it is routed again."""
    _, echo_id = await _expecting(store, 1)
    await store.add_events([event(2), event(3)])
    await store.record_decisions(
        [Decided(event(2).id, "routed", [], [], None, moves(2, Episode(), Episode(1, True)))], 2
    )
    suppressed = [{"result": "echo suppressed"}]
    lost = Decided(event(3).id, "suppressed", suppressed, [], echo_id, moves(3, Episode(), Episode(1, True)))
    assert await store.record_decisions([lost], 3) == [None]
    assert [
        int(r["id"])
        for r in await store.open_echoes("default", [("pagerduty", "incident", "PINC1")], "acknowledged", 0)
    ] == [echo_id]
    retried = Decided(event(3).id, "suppressed", suppressed, [], echo_id, moves(3, Episode(1, True), Episode(1, False)))
    assert await store.record_decisions([retried], 4) == [[]]
    assert await store.open_echoes("default", [("pagerduty", "incident", "PINC1")], "acknowledged", 0) == []


async def test_open_alerts_keep_their_labels_and_opening_and_redeliveries_route_again_when_due(store: Store) -> None:
    """An episode step keeps what inhibit rules read (labels) and when the episode opened; the open
    alerts are listed with them. A redelivery of an inhibited event is routed again at once, one of a
    routed event only once its `repeat_at` has come (a route's repeat_interval)."""
    await store.add_events([event(n) for n in range(1, 4)])
    labels = {"alertname": "ClusterDown", "cluster": "eu-1"}
    step = EpisodeStep("default", "dedup:down", event(1).id, Episode(), Episode(1, True), labels)
    other = EpisodeStep("default", "dedup:gone", event(3).id, Episode(), Episode(1, False), {"cluster": "us-1"})
    await store.record_decisions(
        [
            Decided(event(1).id, "routed", [], [], None, step, repeat_at=50.0),
            Decided(event(2).id, "inhibited", [{"result": "inhibited"}], []),
            Decided(event(3).id, "routed", [], [], None, other),
        ],
        7,
    )
    assert await store.episode("default", "dedup:down") == Episode(1, True)
    assert (await store.episode("default", "dedup:down")).opened_at == 7
    assert await store.open_alerts() == [
        {"org": "default", "alert": "dedup:down", "event_id": event(1).id, "labels": labels}
    ]
    repeat = EpisodeStep("default", "dedup:down", event(1).id, Episode(1, True), Episode(1, True), labels)
    await store.add_events([event(4)])
    await store.record_decisions([Decided(event(4).id, "routed", [], [], None, repeat)], 9)
    assert (await store.episode("default", "dedup:down")).opened_at == 7  # a repeat keeps the opening time

    def again(n: int, received_at: float) -> Event:
        return msgspec.structs.replace(event(n), id=f"EV{n + 100:024d}", received_at=received_at)

    async def status(n: int) -> str | None:
        row = await store.get_event(event(n).id)
        return row.status if row else None

    stored = await store.add_events([again(1, 49.0), again(2, 49.0)])
    assert [s.duplicate_of for s in stored] == [event(1).id, event(2).id]
    assert (await status(1), await status(2)) == ("routed", "received")
    await store.add_events([again(1, 50.0)])
    assert await status(1) == "received"
