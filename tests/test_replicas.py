"""Three replicas on one PostgreSQL database: one is killed mid-run, nothing acknowledged is lost,
nothing is paged twice, and its claims are taken over once their lease runs out."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from .backends import POSTGRES
from .conftest import Server, wait_until
from .fakes.pagerduty import FakePagerDutyEvents
from .test_delivery import EVENTS, config, enqueues
from .test_ingress import seed_env, ticket_event

pytestmark = pytest.mark.skipif(not POSTGRES, reason="replicas share a PostgreSQL database; SQLite serves one process")

TICKETS = int(os.environ.get("REPLICA_TEST_TICKETS", "2000"))
DELIVERY_LEASE = 4.0  # short, so the takeover happens in seconds; longer than any send here
ROUTING_LEASE = 2.0
ASSIGNEES = ["hossamhafez@luciq.ai", "bedourelborai@luciq.ai"]


@pytest.fixture
def pd() -> Iterator[FakePagerDutyEvents]:
    with FakePagerDutyEvents() as fake:
        yield fake


def replicas(server_factory: Callable[..., Server], pd: FakePagerDutyEvents, count: int) -> list[Server]:
    text = config(
        delivery=f"  lease: {DELIVERY_LEASE}s\n  concurrency: 16",
        retry="{backoff_base: 0.2, backoff_cap: 1}",
        # PagerDuty's own limit (120 a minute per key, per process) would make this test take minutes.
        target_extra="    rate_limit: {limit: 10000, per: 1}",
    )
    text += f"\nrouting:\n  lease: {ROUTING_LEASE}s\n"
    return [server_factory(text, seed_env(pd.url + "/v2/enqueue")) for _ in range(count)]


def rows(store: str, sql: str, *params: object) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(store) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def state(store: str, pd: FakePagerDutyEvents) -> str:
    """Where the work is, for a failure message."""
    events = rows(store, "SELECT status, count(*) FROM events GROUP BY 1")
    deliveries = rows(store, "SELECT status, count(*) FROM deliveries GROUP BY 1")
    return f"events {dict(events)}, deliveries {dict(deliveries)}, {len(pd.incidents)} incidents"


def victims_claims(store: str, victim: Server) -> dict[str, float]:
    """The deliveries the victim has in flight, with the end of their lease."""
    claimed = rows(
        store,
        "SELECT id, claimed_until FROM deliveries WHERE status = 'in_flight' AND starts_with(claim, %s)",
        victim.name + ":",
    )
    return {delivery_id: until for delivery_id, until in claimed}


class Sender:
    """Posts tickets spread over the replicas, as a load balancer would; a request a replica does not
    answer with a 2xx goes to the next one (senders retry). Remembers what was acknowledged."""

    def __init__(self, servers: list[Server]) -> None:
        self.urls = [s.url for s in servers]
        self.acked: set[str] = set()
        self.sent = 0
        self._lock = threading.Lock()
        self._local = threading.local()

    def _client(self) -> httpx.Client:
        if not hasattr(self._local, "client"):
            self._local.client = httpx.Client(timeout=10)
        return self._local.client  # type: ignore[no-any-return]

    def post(self, n: int) -> None:
        ticket = f"R{n:05d}"
        body = ticket_event(f"evt-{ticket}", ticket, ASSIGNEES[n % 2])
        for attempt in range(6):
            url = self.urls[(n + attempt) % len(self.urls)]
            try:
                answer = self._client().post(url + EVENTS, json=body)
            except httpx.TransportError:
                continue  # that replica is dead: the next one
            if answer.status_code == 200:
                with self._lock:
                    self.acked.add(ticket)
                    self.sent += 1
                return
            time.sleep(0.05)
        with self._lock:
            self.sent += 1


def test_three_replicas_one_killed_nothing_lost_nothing_paged_twice(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents
) -> None:
    servers = replicas(server_factory, pd, 3)
    victim = servers[2]
    store = victim.store
    pd.delay = 0.15  # each send takes a while, so the victim has deliveries in flight when it dies
    sender = Sender(servers)
    pool = ThreadPoolExecutor(8)
    work = pool.map(sender.post, range(TICKETS))
    try:
        # PagerDuty stumbles for a moment: some deliveries need a retry (the same key, sent again).
        wait_until(lambda: sender.sent >= TICKETS // 6, 60, "a sixth of the tickets to be answered")
        pd.behave(503, times=25)
        # Mid-run: a third of the tickets in, and the victim holding claims of its own.
        wait_until(lambda: sender.sent >= TICKETS // 3, 60, "a third of the tickets to be answered")
        wait_until(lambda: victims_claims(store, victim), 30, "the victim to be sending")
        victim.kill()
        killed_at = time.time()
        left = victims_claims(store, victim)
        assert left, "the victim held no claims when it died"
        list(work)  # the rest of the tickets, to the two replicas left
    finally:
        pool.shutdown()
    assert len(sender.acked) == TICKETS  # every ticket was acknowledged by some replica

    # Every acknowledged event is delivered: one incident per ticket.
    def all_paged() -> bool:
        return len({i.dedup_key for i in pd.incidents}) >= len(sender.acked)

    try:
        wait_until(all_paged, 90, "every acknowledged ticket to be paged")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {state(store, pd)}") from None
    assert {i.dedup_key for i in pd.incidents} == {f"thena-ticket-{t}" for t in sender.acked}
    assert len(pd.incidents) == len(sender.acked)  # one incident each: no key was ever new for a ticket
    assert pd.validation_errors == []

    # The victim's claims were taken over by the others, once their lease had run out.
    wait_until(
        lambda: rows(store, "SELECT count(*) FROM deliveries WHERE status <> 'delivered'")[0][0] == 0,
        30,
        "every delivery to be recorded as delivered",
    )
    taken_over = rows(
        store,
        "SELECT d.id, max(a.started_at) FROM deliveries d JOIN attempts a ON a.delivery_id = d.id"
        " WHERE d.id = ANY(%s) GROUP BY d.seq",
        list(left),
    )
    assert {r[0] for r in taken_over} == set(left)
    for delivery_id, last_attempt in taken_over:
        assert last_attempt >= left[delivery_id] - 0.5, "taken over before the victim's lease ended"
        assert last_attempt > killed_at

    # No dedup key was sent more often than alertbridge attempted it (a retry), plus once for a
    # send the victim had started when it died; and every send of a ticket carried the same key.
    sends = Counter(r.json["dedup_key"] for r in enqueues(pd))
    recorded = {
        key: (attempts, delivery_id in left)
        for key, attempts, delivery_id in rows(
            store,
            "SELECT d.fields->>'dedup_key', count(a.id), d.id FROM deliveries d"
            " LEFT JOIN attempts a ON a.delivery_id = d.id GROUP BY d.seq",
        )
    }
    assert set(sends) == set(recorded)
    for key, count in sends.items():
        attempts, interrupted = recorded[key]
        assert count <= attempts + (1 if interrupted else 0), f"{key} sent {count} times, attempted {attempts}"
    repeated = {key: n for key, n in sends.items() if n > 1}
    assert set(repeated) <= {key for key, (attempts, interrupted) in recorded.items() if attempts > 1 or interrupted}
    retried = [key for key, (attempts, _) in recorded.items() if attempts > 1]
    assert retried, "no delivery needed a retry: the 503s were not exercised"
    print(
        f"{TICKETS} tickets; the victim left {len(left)} claims, taken over; {len(retried)} deliveries"
        f" retried; {len(repeated)} keys sent more than once, {sum(sends.values())} sends in all"
    )

    # The survivors are still healthy; the events were each routed once.
    for server in servers[:2]:
        assert server.client.get("/readyz").status_code == 200
    assert rows(store, "SELECT count(*), count(DISTINCT delivery_key) FROM events")[0] == (TICKETS, TICKETS)
    assert rows(store, "SELECT count(*) FROM events WHERE status <> 'routed'")[0][0] == 0


def test_the_same_delivery_id_posted_to_two_replicas_at_once_is_stored_once(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents
) -> None:
    first, second = replicas(server_factory, pd, 2)
    rounds = 25
    answers: list[int] = []
    lock = threading.Lock()

    def post(server: Server, n: int, barrier: threading.Barrier) -> None:
        body = ticket_event(f"same-{n}", f"S{n}", ASSIGNEES[0])
        barrier.wait()
        status = server.post(EVENTS, body).status_code
        with lock:
            answers.append(status)

    for n in range(rounds):
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=post, args=(s, n, barrier)) for s in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert answers == [200] * (2 * rounds)  # both answered: the second copy is a duplicate of the first
    keys = rows(first.store, "SELECT delivery_key FROM events ORDER BY delivery_key")
    assert sorted(k[0] for k in keys) == sorted(f"same-{n}" for n in range(rounds))
    pd.wait_for(lambda: len(pd.incidents) == rounds, 30)
    time.sleep(1)
    assert Counter(r.json["dedup_key"] for r in enqueues(pd)) == Counter(f"thena-ticket-S{n}" for n in range(rounds))


def test_a_rate_limit_holds_for_all_replicas_together(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents
) -> None:
    limit, per = 4, 2.0
    text = config(delivery="  concurrency: 16", target_extra=f"    rate_limit: {{limit: {limit}, per: {per}s}}")
    servers = [server_factory(text, seed_env(pd.url + "/v2/enqueue")) for _ in range(2)]
    tickets = 12
    for n in range(tickets):  # every one to pd-a, spread over both replicas
        assert servers[n % 2].post(EVENTS, ticket_event(f"rate-{n}", f"R{n}", ASSIGNEES[0])).status_code == 200
    pd.wait_for(lambda: len(enqueues(pd)) >= tickets, 30)
    times = sorted(r.at for r in enqueues(pd))
    assert len(times) == tickets
    # Any `limit + 1` sends span at least the window (less a little for the send's own time): alone,
    # each replica would have sent `limit` per window, twice the limit together.
    spans = [times[i + limit] - times[i] for i in range(tickets - limit)]
    assert min(spans) >= per - 0.2, spans
