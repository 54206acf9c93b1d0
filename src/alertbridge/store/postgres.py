"""The PostgreSQL store: one database shared by any number of alertbridge replicas.

The replica model:

- **Ingress** commits before it answers. Requests that arrive while a commit is under way are
  inserted together in the next transaction (group commit), with `INSERT … ON CONFLICT DO NOTHING`
  on (org, endpoint, delivery_key): when two replicas receive the same delivery id at the same
  moment, the second insert waits for the first to commit, inserts nothing, and reads the first
  copy's id for `duplicate_of`.
- **Claims with leases.** The router and the dispatcher take work by writing a claim token and a
  `claimed_until` time on the rows they chose, chosen with `SELECT … FOR UPDATE SKIP LOCKED` so
  that replicas claiming at the same moment pass over each other's rows instead of waiting for
  them. A claim is only a lease: when it runs out (its replica died), the row is due again and
  another replica takes it over. A dispatcher whose lease ran out while it was still sending
  cannot overwrite the new owner's result (`record_attempt` checks the claim token), and a
  repeated send carries the same idempotency key (PagerDuty's `dedup_key`), so a takeover is safe.
  The lease must be longer than a target's timeout.
- **`release_claims()` at start-up releases expired claims, and the replica's own.** On SQLite the
  starting process is the only one, so everything in flight is its own leftover; here the claims
  may belong to live replicas, and a fresh process cannot tell its predecessor's claims from a
  sibling's. So by default only what has expired is released, which never takes work from a live
  replica; a dead replica's claims come back when their lease ends. A replica given a stable name
  (`ALERTBRIDGE_REPLICA`: a StatefulSet pod's name, a compose container's) writes it into every
  claim, and when it starts again it releases that name's claims at once, as SQLite does: they
  can only be its dead predecessor's. The name must be unique among live replicas; two live
  processes with one name would take each other's work (sent twice, with the same dedup key).
- **Wake-ups travel by LISTEN/NOTIFY.** A commit that stores events notifies `alertbridge_events`
  (routers wake) and one that writes due deliveries notifies `alertbridge_deliveries`
  (dispatchers wake), with this store's token as payload so a replica ignores its own. Each
  replica keeps one connection listening and hands the wake-ups to whoever `subscribe`d. Polling
  stays as the fallback: a lost notification (a listener reconnecting) delays work by at most the
  poll interval, it never loses it.
- **Migrations** are versioned in `schema_migrations` and applied under a session advisory lock,
  so replicas starting together apply each migration once.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg.abc import Buffer
from psycopg.rows import dict_row
from psycopg.types.string import StrDumperUnknown
from psycopg_pool import AsyncConnectionPool

from alertbridge import events as ev
from alertbridge import logs
from alertbridge.events import Event, Expected
from alertbridge.store import sql
from alertbridge.store.base import (
    Attempt,
    AttemptResult,
    Decided,
    Delivery,
    EventRow,
    NewDelivery,
    Ref,
    Stored,
    StoreUnavailable,
    mark_done,
    require_current,
)
from alertbridge.store.common import CONFIG_CHANNEL, SQLStore
from alertbridge.store.postgres_schema import MIGRATION_LOCK, MIGRATIONS, migrate
from alertbridge.store.urls import masked, scrub

T = TypeVar("T")
J = TypeVar("J")
Conn = psycopg.AsyncConnection[dict[str, Any]]

log = logs.get("alertbridge.store")
Q = sql.POSTGRES

EVENTS_CHANNEL = "alertbridge_events"
DELIVERIES_CHANNEL = "alertbridge_deliveries"
POOL_MAX = 8
INGRESS_BATCH = 512
TEAMS_LOCK = MIGRATION_LOCK + 1  # replicas provisioning teams and claims take turns
RATE_LOCK = 7_242  # with a target's name hashed: replicas claiming for one rate-limited target take turns
RETRIES = 3  # runs of a transaction PostgreSQL rolled back to break a deadlock


def _as_is(value: Any) -> Any:
    """A JSON column as psycopg returns it: already decoded."""
    return value


def _json_text(value: Any) -> str:
    """JSON for a json column: the json module's text, as every row here was written."""
    return json.dumps(value)


def _dumps(value: Any) -> str | None:
    return json.dumps(value) if value is not None else None


_INSERT_DELIVERIES = (
    "INSERT INTO deliveries (id, org, event_id, route, target, action, fields, idempotency_key, order_key,"
    " status, attempts, next_attempt_at, created_at, budget_from, updated_at, waiting_for, event_seq)"
    " SELECT id, org, event_id, route, target, action, fields, idempotency_key, order_key, status, 0,"
    "   created_at, created_at, created_at, created_at, waiting_for,"
    "   (SELECT seq FROM events WHERE events.id = t.event_id)"
    " FROM unnest("
    "   %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::json[], %s::text[],"
    "   %s::text[], %s::text[], %s::float8[], %s::json[]"
    " ) WITH ORDINALITY AS t (id, org, event_id, route, target, action, fields, idempotency_key, order_key,"
    "   status, created_at, waiting_for, n)"
    " ORDER BY n"  # seq follows the order asked for: a later action of one event is sent after
    " ON CONFLICT (org, idempotency_key) DO NOTHING RETURNING id"
)
_HOLDERS = (
    "SELECT d.org, d.idempotency_key, d.id FROM deliveries d"
    " JOIN unnest(%s::text[], %s::text[]) AS k (org, idempotency_key)"
    " ON d.org = k.org AND d.idempotency_key = k.idempotency_key"
)


async def _insert_deliveries(conn: Conn, deliveries: Sequence[NewDelivery]) -> list[str | None]:
    """Insert new deliveries in one statement; for each, None, or the id of the delivery that already
    has its key (stored before, or earlier in `deliveries`)."""
    if not deliveries:
        return []
    first: dict[tuple[str, str], NewDelivery] = {}
    for d in deliveries:
        first.setdefault((d.org, d.idempotency_key), d)
    rows = [
        (
            d.id,
            d.org,
            d.event_id,
            d.route,
            d.target,
            d.action,
            json.dumps(d.fields),
            d.idempotency_key,
            d.order_key,
            "waiting" if d.waiting_for else "pending",
            d.created_at,
            _dumps(d.waiting_for),
        )
        for d in first.values()
    ]
    cursor = await conn.execute(_INSERT_DELIVERIES, _columns(rows))
    inserted = {row["id"] for row in await cursor.fetchall()}
    holders = {key: d.id for key, d in first.items() if d.id in inserted}
    taken = [key for key in first if key not in holders]
    if taken:  # the key was used before (or by another replica just now): whose is it
        cursor = await conn.execute(_HOLDERS, _columns(taken))
        for row in await cursor.fetchall():
            holders[(row["org"], row["idempotency_key"])] = row["id"]
    return [None if d.id in inserted else holders.get((d.org, d.idempotency_key)) for d in deliveries]


_WAITING = Q.waiting + " FOR UPDATE"
_EXPIRING = Q.expiring + " FOR UPDATE SKIP LOCKED"
_INCIDENT_DATA = Q.incident_data + " FOR UPDATE"


async def _link(conn: Conn, org: str, a: Ref, b: Ref, delivery_id: str, now: float) -> list[str]:
    """Store the pair and release the deliveries that were waiting for it; returns their ids."""
    await conn.execute(Q.link, sql.link_params(org, a, b, delivery_id, now))
    cursor = await conn.execute(_WAITING, {"org": org})
    released = []
    for row in await cursor.fetchall():
        found = sql.released_by(row["waiting_for"], a, b)
        if found is None:
            continue
        marker, linked = found
        # The same textual replacement SQLite makes, on the same JSON text.
        fields = json.dumps(row["fields"]).replace(json.dumps(marker)[1:-1], json.dumps(linked)[1:-1])
        order_key = row["order_key"].replace(marker, linked) if row["order_key"] else None
        await conn.execute(Q.release, {"fields": fields, "order_key": order_key, "now": now, "id": row["id"]})
        released.append(row["id"])
    return released


class _NulSafeStr(StrDumperUnknown):
    """PostgreSQL text cannot hold NUL, which SQLite's can and senders may send (a delivery id, a
    title): it becomes U+FFFD instead of failing the write (and a lookup with it matches nothing).
    The event as received is kept whole in `data` (bytea); JSON columns carry NUL escaped."""

    def dump(self, obj: str) -> Buffer | None:
        return super().dump(_text(obj))


def _text(value: str) -> str:
    return value.replace("\x00", "\ufffd")


async def _configure(conn: Conn) -> None:
    conn.adapters.register_dumper(str, _NulSafeStr)


@dataclass
class _Waiting:
    rows: list[tuple[Any, ...]]
    future: asyncio.Future[list[Stored]]


@dataclass
class _Attempted:
    delivery: Delivery
    attempt: Attempt
    result: AttemptResult
    follow_ups: Sequence[NewDelivery]
    links: Sequence[tuple[Ref, Ref]]
    future: asyncio.Future[list[str]]


_INSERT_ATTEMPTS = (
    "INSERT INTO attempts (delivery_id, number, started_at, duration, outcome, status_code, message, target)"
    " SELECT * FROM unnest(%s::text[], %s::int[], %s::float8[], %s::float8[], %s::text[], %s::int[], %s::text[],"
    "   %s::text[])"
)
# Only while the claim is still ours: a dispatcher whose lease ran out does not overwrite the new owner.
_FINISH = (
    "UPDATE deliveries d SET status = t.status, attempts = d.attempts + 1, next_attempt_at = t.next_attempt_at,"
    " last_error = t.error, result = COALESCE(t.result, d.result), claim = NULL, claimed_until = NULL,"
    " updated_at = t.updated_at"
    " FROM unnest(%s::text[], %s::text[], %s::text[], %s::float8[], %s::text[], %s::json[], %s::float8[])"
    "   AS t (id, claim, status, next_attempt_at, error, result, updated_at)"
    " WHERE d.id = t.id AND d.claim = t.claim"
)
ATTEMPT_BATCH = 256

_INSERT_EVENTS = (
    "INSERT INTO events (id, org, endpoint, source, kind, delivery_key, subject_id, received_at, status, data)"
    " SELECT id, org, endpoint, source, kind, delivery_key, subject_id, received_at, 'received', data FROM unnest("
    "   %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::bytea[]"
    " ) AS t (id, org, endpoint, source, kind, delivery_key, subject_id, received_at, data)"
    " ON CONFLICT (org, endpoint, delivery_key) DO NOTHING RETURNING id"
)
_RESEND = (
    "UPDATE events SET status = 'received', claim = NULL, claimed_until = NULL"
    " WHERE id = ANY(%s) AND (status IN ('silenced', 'inhibited') OR (status = 'routed' AND repeat_at <= %s))"
)
_FIRST_COPIES = (
    "SELECT e.org, e.endpoint, e.delivery_key, e.id FROM events e"
    " JOIN unnest(%s::text[], %s::text[], %s::text[]) AS k (org, endpoint, delivery_key)"
    " ON e.org = k.org AND e.endpoint = k.endpoint AND e.delivery_key = k.delivery_key"
)


def _columns(rows: Iterable[Sequence[Any]]) -> list[list[Any]]:
    """Rows as the column arrays that `unnest(%s::…[], …)` takes: one round trip for any number."""
    return [list(column) for column in zip(*rows, strict=True)]


async def _take_batch(queue: asyncio.Queue[J], most: int) -> list[J]:
    """What waits in `queue`, at least one and at most `most`: a group commit's batch."""
    batch = [await queue.get()]
    while len(batch) < most and not queue.empty():
        batch.append(queue.get_nowait())
    return batch


def _settle(future: asyncio.Future[T], outcome: T | BaseException) -> None:
    """Hand a caller its result or error, unless it stopped waiting (cancelled)."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _claimable(due: str, order: str) -> str:
    """Deliveries that are `due`, in `order`, locked for the claim; rows another replica is claiming are
    skipped. `sql.IN_ORDER` holds back a delivery behind its order key (replicas may write a later
    event's deliveries first)."""
    return (
        "SELECT d.*, e.received_at AS event_received_at, e.data AS event_data FROM deliveries d"
        " JOIN events e ON e.id = d.event_id WHERE d.seq IN ("
        f"  SELECT c.seq FROM deliveries c WHERE {due} AND {sql.IN_ORDER.format(row='c')}"
        f"  ORDER BY {order} LIMIT %(scan)s FOR UPDATE SKIP LOCKED)"
    )


# Sends a target had in a window from every replica: attempts started, and claims not yet recorded.
_SENT = (
    "SELECT (SELECT count(*) FROM attempts WHERE target = %(target)s AND started_at > %(since)s)"
    " + (SELECT count(*) FROM deliveries WHERE status = 'in_flight' AND target = %(target)s"
    "    AND claimed_until > %(now)s) AS sent"
)
_IN_ORDER = "SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off"  # for this transaction only
_DUE = _claimable("c.status = 'pending' AND c.next_attempt_at <= %(now)s", "c.next_attempt_at, c.seq")
# In flight past its lease: its replica died mid-send (or stalled); another takes it over.
_LAPSED = _claimable("c.status = 'in_flight' AND c.claimed_until <= %(now)s", "c.claimed_until, c.seq")


async def _schema_version(conn: psycopg.AsyncConnection[Any]) -> int | None:
    """The database's alertbridge schema version; None where alertbridge has made none of its tables
    (an empty database, or another application's that has a `schema_migrations` of its own)."""
    cursor = await conn.execute(
        "SELECT to_regclass('deliveries') IS NOT NULL AND to_regclass('schema_migrations') IS NOT NULL"
    )
    row = await cursor.fetchone()
    if not (row and row[0]):
        return None
    cursor = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


class PostgresStore(SQLStore):
    q = Q

    def __init__(self, url: str, replica: str | None = None) -> None:
        self.url = url
        # Claims start with the replica's stable name (if it has one) so that it can release its own.
        self.prefix = f"{replica}:" if replica else ""
        self.token = self.prefix + uuid.uuid4().hex  # this process in its event claims and notifications
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._queue: asyncio.Queue[_Waiting] | None = None
        self._attempts: asyncio.Queue[_Attempted] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._on_events: Callable[[], None] | None = None
        self._on_deliveries: Callable[[], None] | None = None
        self._on_config: Callable[[], None] | None = None
        self.commits = 0  # ingress transactions; jobs / commits is the group-commit batch size
        self.jobs_done = 0
        self.listening = asyncio.Event()
        self._listener: psycopg.AsyncConnection[Any] | None = None  # the connection that LISTENs

    def __repr__(self) -> str:
        return f"PostgresStore({masked(self.url)})"

    _decode = staticmethod(_as_is)
    _encode = staticmethod(_json_text)

    # ---- lifecycle

    def subscribe(
        self,
        on_events: Callable[[], None],
        on_deliveries: Callable[[], None],
        on_config: Callable[[], None] | None = None,
    ) -> None:
        """Be told when another replica stored events, wrote due deliveries or saved configuration
        through the API (LISTEN/NOTIFY)."""
        self._on_events, self._on_deliveries, self._on_config = on_events, on_deliveries, on_config

    async def has_schema(self) -> bool:
        """Whether alertbridge has migrated this database: the CLI's readers must not turn an empty
        database (the wrong name in the URL) into an empty store and report "0 events"."""
        return await self._schema_version() is not None

    async def _schema_version(self) -> int | None:
        """The database's alertbridge schema version, over one connection of its own: a database
        that is not there fails at once instead of after a pool's wait."""
        try:
            async with await psycopg.AsyncConnection.connect(self.url, connect_timeout=10) as conn:
                return await _schema_version(conn)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot reach {masked(self.url)}: {scrub(str(exc), self.url)}") from None

    async def migrate(self) -> list[tuple[int, str]]:
        try:
            async with await psycopg.AsyncConnection.connect(self.url, connect_timeout=10) as conn:
                return await migrate(conn)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot migrate {masked(self.url)}: {scrub(str(exc), self.url)}") from None

    async def open(self) -> None:
        await self.migrate()
        self._pool = await self._open_pool(POOL_MAX, "alertbridge")
        self._queue = asyncio.Queue()
        self._tasks.append(asyncio.create_task(self._ingress_writer(), name="pg-ingress"))
        self._attempts = asyncio.Queue()
        self._tasks.append(asyncio.create_task(self._attempt_writer(), name="pg-attempts"))
        if any(c is not None for c in (self._on_events, self._on_deliveries, self._on_config)):
            # Listening before open() returns, so before start-up reads what is stored (saved objects,
            # integrations, events): a change committed after that read is notified, none falls between.
            try:
                await self._connect_listener()
            except Exception as exc:  # the listener's loop tries again, and catches up when it is back
                log.warning("listen_lost", error=scrub(str(exc), self.url), note="polling until it is back")
            self._tasks.append(asyncio.create_task(self._listen(), name="pg-listen"))

    async def open_existing(self) -> bool:
        """A small pool and nothing else: no migration, no writers, no listener."""
        version = await self._schema_version()
        if version is None:
            return False
        require_current(version, MIGRATIONS[-1][0], self.url)
        self._pool = await self._open_pool(2, "alertbridge-read")
        return True

    async def _open_pool(self, max_size: int, name: str) -> AsyncConnectionPool[Conn]:
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=max_size,
            kwargs={"autocommit": True, "row_factory": dict_row},
            configure=_configure,
            open=False,
            name=name,
        )
        try:
            await pool.open(wait=True, timeout=15)
        except Exception as exc:
            await pool.close()
            raise StoreUnavailable(f"cannot open {masked(self.url)}: {scrub(str(exc), self.url)}") from None
        return pool

    async def deliveries_with_keys(self, org: str, keys: Sequence[str]) -> dict[str, str]:
        rows = await self._all(
            "SELECT idempotency_key, id FROM deliveries WHERE org = %s AND idempotency_key = ANY(%s)", (org, list(keys))
        )
        return {row["idempotency_key"]: row["id"] for row in rows}

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._listener is not None:  # (a listener task cancelled before it ran has not closed it)
            await self._listener.close()
            self._listener = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def commit_stats(self) -> tuple[int, int]:
        """(ingress transactions committed, ingress requests served) since open."""
        return self.commits, self.jobs_done

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1"))

    async def _run(self, work: Callable[[Conn], Awaitable[T]]) -> T:
        """`work` on a pooled connection, in one transaction; a database that is down is StoreUnavailable.

        A transaction PostgreSQL rolled back to break a deadlock (two replicas' writes taking the
        same rows in other orders) is run again: `work` is only ever a transaction's body.
        """
        if self._pool is None:
            raise StoreUnavailable("the store is not open")
        for attempt in range(RETRIES):
            try:
                async with self._pool.connection() as conn, conn.transaction():
                    return await work(conn)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                if attempt == RETRIES - 1:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
            except psycopg.OperationalError as exc:
                raise StoreUnavailable(f"the database did not answer: {scrub(str(exc), self.url)}") from None
        raise AssertionError("unreachable")

    async def _all(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
        async def read(conn: Conn) -> list[dict[str, Any]]:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

        return await self._run(read)

    async def _one(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> dict[str, Any] | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _exec(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = (), notify: str | None = None) -> int:
        """One statement in its own transaction; `notify` names a channel told when it commits."""

        async def write(conn: Conn) -> int:
            cursor = await conn.execute(sql, params)
            if notify is not None:
                await self._notify(conn, notify)
            return cursor.rowcount

        return await self._run(write)

    async def _exec_one(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = (), notify: str | None = None
    ) -> dict[str, Any] | None:
        """One statement that returns a row (`RETURNING`), in its own transaction."""

        async def write(conn: Conn) -> dict[str, Any] | None:
            cursor = await conn.execute(sql, params)
            row = await cursor.fetchone()
            if notify is not None:
                await self._notify(conn, notify)
            return row

        return await self._run(write)

    async def _notify(self, conn: Conn, channel: str) -> None:
        """Delivered when (and only if) the transaction commits; several in one transaction fold into one."""
        await conn.execute("SELECT pg_notify(%s, %s)", (channel, self.token))

    async def _connect_listener(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=10)
        try:
            for channel in (EVENTS_CHANNEL, DELIVERIES_CHANNEL, CONFIG_CHANNEL):
                await conn.execute(f"LISTEN {channel}")
        except BaseException:
            await conn.close()
            raise
        self._listener = conn
        self.listening.set()
        return conn

    async def _listen(self) -> None:
        """One connection per replica that LISTENs and wakes the router or dispatcher; reconnects.

        The first connection is made by open(), before start-up reads the store: nothing it could
        have been told is missed, so no one is called for it (start-up loads what is saved, the
        router and dispatcher look at the store as they start). Every later one (a reconnect, or the
        first if open() could not make it) calls each subscriber once, for whatever was notified
        while no one listened."""
        channels = {
            EVENTS_CHANNEL: self._on_events,
            DELIVERIES_CHANNEL: self._on_deliveries,
            CONFIG_CHANNEL: self._on_config,
        }
        while True:
            try:
                conn = self._listener
                if conn is None:
                    conn = await self._connect_listener()
                    for callback in channels.values():  # whatever was notified while no one listened
                        if callback is not None:
                            callback()
                async for note in conn.notifies():
                    callback = channels.get(note.channel)
                    if callback is not None and note.payload != self.token:
                        callback()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # polling covers the gap while we reconnect
                self.listening.clear()
                log.warning("listen_lost", error=scrub(str(exc), self.url), note="polling until it is back")
                if self._listener is not None:
                    await self._listener.close()
                    self._listener = None
                await asyncio.sleep(1.0)

    # ---- ingress

    async def add_events(self, events: Sequence[Event]) -> list[Stored]:
        if self._queue is None:
            raise StoreUnavailable("the store is not open")
        rows = [
            (
                e.id,
                _text(e.org),
                _text(e.endpoint),
                _text(e.source),
                _text(e.kind),
                _text(e.delivery_key),  # as stored, so that a redelivery is found by the same key
                _text(e.subject.id) if e.subject else None,
                e.received_at,
                ev.encode(e),
            )
            for e in events
        ]
        future: asyncio.Future[list[Stored]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Waiting(rows, future))
        return await future

    async def _ingress_writer(self) -> None:
        """Takes every request waiting and commits their events in one transaction (group commit)."""
        assert self._queue is not None
        while True:
            batch = await _take_batch(self._queue, INGRESS_BATCH)
            try:
                results = await self._run(lambda conn: self._insert(conn, batch))  # noqa: B023
            except Exception as exc:
                failure = StoreUnavailable(f"the database did not take the write: {scrub(str(exc), self.url)}")
                for waiting in batch:
                    _settle(waiting.future, failure)
                continue
            self.commits += 1
            self.jobs_done += len(batch)
            for waiting, stored in zip(batch, results, strict=True):
                _settle(waiting.future, stored)

    async def _insert(self, conn: Conn, batch: list[_Waiting]) -> list[list[Stored]]:
        """Every waiting request's events in one statement; redeliveries point at the first copy."""
        new_rows: list[tuple[Any, ...]] = []
        seen: dict[tuple[str, str, str], str] = {}
        for waiting in batch:
            for row in waiting.rows:
                key = (row[1], row[2], row[5])
                if key not in seen:
                    seen[key] = row[0]
                    new_rows.append(row)
        inserted: set[str] = set()
        resent = 0
        if new_rows:
            cursor = await conn.execute(_INSERT_EVENTS, _columns(new_rows))
            inserted = {row["id"] for row in await cursor.fetchall()}
        lost = [row for row in new_rows if row[0] not in inserted]
        if lost:  # the key was stored before (or by another replica just now): find the first copy
            cursor = await conn.execute(_FIRST_COPIES, _columns((r[1], r[2], r[5]) for r in lost))
            for copy in await cursor.fetchall():
                seen[(copy["org"], copy["endpoint"], copy["delivery_key"])] = copy["id"]
            if any(seen[(r[1], r[2], r[5])] == r[0] for r in lost):  # cannot happen; never claim it stored
                raise StoreUnavailable("an event was neither stored nor found stored")
            # A redelivered event that was silenced or inhibited is routed again: a sender that repeats
            # a firing alert (Alertmanager, each `repeat_interval`) pages once its silence has ended or
            # its inhibiting alert resolved; so is one whose route's repeat_interval has come round.
            received = max(r[7] for r in lost)
            cursor = await conn.execute(_RESEND, ([seen[(r[1], r[2], r[5])] for r in lost], received))
            resent = cursor.rowcount
        if inserted or resent:
            await self._notify(conn, EVENTS_CHANNEL)
        results = []
        for waiting in batch:
            stored = []
            for row in waiting.rows:
                first = seen[(row[1], row[2], row[5])]
                stored.append(Stored(row[0], None if first == row[0] and row[0] in inserted else first))
            results.append(stored)
        return results

    # ---- router

    async def unrouted_events(self, limit: int, now: float | None = None, lease: float = 30.0) -> list[Event]:
        """Claims up to `limit` events to route, oldest first, for `lease` seconds: events another
        replica is routing are skipped, and this replica's own claims (a failed write) are retaken."""
        at = time.time() if now is None else now
        rows = await self._all(
            "UPDATE events SET claim = %(token)s, claimed_until = %(until)s WHERE seq IN ("
            "  SELECT seq FROM events WHERE status = 'received'"
            "    AND (claimed_until IS NULL OR claimed_until <= %(now)s OR claim = %(token)s"
            "      OR (%(prefix)s <> '' AND starts_with(claim, %(prefix)s)))"
            "  ORDER BY seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
            " RETURNING seq, data",
            {"token": self.token, "prefix": self.prefix, "until": at + lease, "now": at, "limit": limit},
        )
        rows.sort(key=lambda row: row["seq"])
        return [ev.decode(row["data"]) for row in rows]

    async def record_decisions(self, decisions: Sequence[Decided], now: float) -> list[list[str | None] | None]:
        """A routing batch in one transaction of a few statements, whatever its size: per-event
        transactions made the round trips, not the database, the router's limit.

        An expected echo absorbs one webhook, and two replicas may have matched two webhooks to the
        same one, each having read it open. Each takes it only if it is still open, in this
        transaction: the rows are locked in id order (no deadlock between two batches) and, under
        READ COMMITTED, a row another transaction consumed meanwhile is re-read after its commit and
        no longer matches. A decision whose expectation was taken is not recorded: its event is left
        to be routed again, when the expectations still open (another of the same change, or none)
        decide it. That is simpler than locking the rows from the router's read to this write, which
        would hold a transaction open across the whole routing of a batch. An alert's episode step is
        taken the same way: only from the state the router read, else the event is routed again."""

        async def write(conn: Conn) -> list[list[str | None] | None]:
            wanted: dict[int, str] = {}  # expectation -> the first decision of the batch to name it
            lost: set[str] = set()
            for d in decisions:
                if d.echo_id is not None:
                    if d.echo_id in wanted:
                        lost.add(d.event_id)
                    else:
                        wanted[d.echo_id] = d.event_id
            if wanted:
                cursor = await conn.execute(
                    "WITH still_open AS (SELECT id FROM echoes WHERE id = ANY(%s) AND consumed_by IS NULL"
                    "  ORDER BY id FOR UPDATE)"
                    " UPDATE echoes SET consumed_by = t.event_id"
                    " FROM unnest(%s::bigint[], %s::text[]) AS t (id, event_id), still_open"
                    " WHERE echoes.id = t.id AND still_open.id = t.id RETURNING echoes.id",
                    (list(wanted), *_columns(wanted.items())),
                )
                taken = {row["id"] for row in await cursor.fetchall()}
                lost |= {event_id for echo_id, event_id in wanted.items() if echo_id not in taken}
            for d in decisions:  # in order: a batch's steps of one alert follow from each other
                if d.episode is None or d.event_id in lost:
                    continue
                cursor = await conn.execute(Q.episode_step, sql.episode_params(d.episode, now))
                if not cursor.rowcount:  # the alert moved since the router read it
                    lost.add(d.event_id)
                    if d.echo_id is not None:
                        await conn.execute(Q.release_echo, {"id": d.echo_id, "event_id": d.event_id})
            kept = [d for d in decisions if d.event_id not in lost]
            flat = await _insert_deliveries(conn, [n for d in kept for n in d.deliveries])
            recorded: dict[str, list[str | None]] = {}
            at = 0
            for d in kept:
                recorded[d.event_id] = flat[at : at + len(d.deliveries)]
                at += len(d.deliveries)
            traces = [json.dumps(mark_done(d.trace, d.deliveries, recorded[d.event_id])) for d in kept]
            await conn.execute(
                "UPDATE events SET status = t.status, trace = t.trace, routed_at = %s, claim = NULL,"
                " claimed_until = NULL, repeat_at = t.repeat_at"
                " FROM unnest(%s::text[], %s::text[], %s::json[], %s::float8[]) AS t (id, status, trace, repeat_at)"
                " WHERE events.id = t.id AND events.status = 'received'",
                (now, [d.event_id for d in kept], [d.status for d in kept], traces, [d.repeat_at for d in kept]),
            )
            if lost:  # any replica may route them again, at once
                await conn.execute(
                    "UPDATE events SET claim = NULL, claimed_until = NULL WHERE id = ANY(%s) AND status = 'received'",
                    (list(lost),),
                )
                await self._notify(conn, EVENTS_CHANNEL)
            if any(x is None for x in flat):
                await self._notify(conn, DELIVERIES_CHANNEL)
            return [recorded.get(d.event_id) for d in decisions]

        return await self._run(write)

    # ---- dispatcher

    async def release_claims(self, now: float | None = None) -> int:
        """Claims whose lease has run out, and this replica's own if it has a stable name; never a live
        sibling's (module docstring)."""
        return await self._exec(
            "UPDATE deliveries SET status = 'pending', claim = NULL, claimed_until = NULL"
            " WHERE status = 'in_flight'"
            "   AND (claimed_until <= %(now)s OR (%(prefix)s <> '' AND starts_with(claim, %(prefix)s)))",
            {"now": time.time() if now is None else now, "prefix": self.prefix},
        )

    async def claim_deliveries(
        self,
        now: float,
        lease: float,
        limit: int,
        capacity: Mapping[str, int],
        limits: Mapping[str, tuple[int, float]] | None = None,
    ) -> list[Delivery]:
        """Due deliveries, at most `capacity[target]` for a rate-limited target, oldest first.

        A delivery waits while an earlier one with the same order key is unfinished, and an
        in-flight delivery whose lease has run out (its replica died) is due again. Rows another
        replica is claiming at this moment are skipped, not waited for.

        A target in `limits` takes no more than its limit from all replicas together: the sends
        every replica started in the window (attempts, and claims still in flight) are counted
        under a lock per target, so two replicas claiming at once cannot both take the last slot.
        """

        async def claim(conn: Conn) -> list[Delivery]:
            # Walk the due index in order and stop at the limit. Without this the planner, on
            # statistics that lag a burst (a fresh database, a storm), sorts every due row, each with
            # its order check, before the limit: seconds per claim at a backlog of thousands.
            await conn.execute(_IN_ORDER)
            params = {"now": now, "scan": max(limit * 4, 64)}
            cursor = await conn.execute(_LAPSED, params)
            rows = await cursor.fetchall()
            cursor = await conn.execute(_DUE, params)
            rows += await cursor.fetchall()
            rows.sort(key=lambda row: (row["next_attempt_at"], row["seq"]))
            left = dict(capacity)
            shared = limits or {}
            for target in sorted({row["target"] for row in rows} & shared.keys()):
                sends, per = shared[target]
                await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (RATE_LOCK, target))
                cursor = await conn.execute(_SENT, {"target": target, "since": now - per, "now": now})
                sent = (await cursor.fetchone() or {"sent": 0})["sent"]
                left[target] = min(left.get(target, sends), sends - sent)
            chosen: list[dict[str, Any]] = []
            for row in rows:
                if len(chosen) >= limit:
                    break
                target = row["target"]
                if target in left:
                    if left[target] <= 0:
                        continue
                    left[target] -= 1
                chosen.append(row)
            if not chosen:
                return []
            token = self.prefix + uuid.uuid4().hex
            await conn.execute(
                "UPDATE deliveries SET status = 'in_flight', claim = %s, claimed_until = %s WHERE id = ANY(%s)",
                (token, now + lease, [row["id"] for row in chosen]),
            )
            return [
                Delivery(**{**sql.delivery(row, _as_is).__dict__, "status": "in_flight", "claim": token})
                for row in chosen
            ]

        return await self._run(claim)

    async def record_attempt(
        self,
        delivery: Delivery,
        attempt: Attempt,
        result: AttemptResult,
        follow_ups: Sequence[NewDelivery] = (),
        links: Sequence[tuple[Ref, Ref]] = (),
    ) -> list[str]:
        """Recorded with every other attempt that finished meanwhile, in one transaction (group
        commit, as ingress does): a transaction per attempt made the round trips the limit."""
        if self._attempts is None:
            raise StoreUnavailable("the store is not open")
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._attempts.put_nowait(_Attempted(delivery, attempt, result, follow_ups, links, future))
        return await future

    async def _attempt_writer(self) -> None:
        assert self._attempts is not None
        while True:
            batch = await _take_batch(self._attempts, ATTEMPT_BATCH)
            try:
                results = await self._run(lambda conn: self._record_attempts(conn, batch))  # noqa: B023
            except Exception as exc:
                if len(batch) == 1 or isinstance(exc, StoreUnavailable):  # down: one by one would only wait longer
                    for item in batch:
                        _settle(item.future, exc)
                else:  # one attempt's failure must not fail the others: each in a transaction of its own
                    for item in batch:
                        await self._settle_one(item)
                continue
            for item, released in zip(batch, results, strict=True):
                _settle(item.future, released)

    async def _settle_one(self, item: _Attempted) -> None:
        try:
            released = await self._run(lambda conn: self._record_attempts(conn, [item]))
        except Exception as exc:
            _settle(item.future, exc)
        else:
            _settle(item.future, released[0])

    async def _record_attempts(self, conn: Conn, batch: Sequence[_Attempted]) -> list[list[str]]:
        """Each attempt, its delivery's new state, the follow-ups; returns, per attempt, the deliveries
        that its links released."""
        attempts = [
            (a.delivery_id, a.number, a.started_at, a.duration, a.outcome, a.status_code, a.message, d.target)
            for a, d in ((item.attempt, item.delivery) for item in batch)
        ]
        await conn.execute(_INSERT_ATTEMPTS, _columns(attempts))
        finished = [
            (
                item.delivery.id,
                item.delivery.claim,
                item.result.status,
                item.result.next_attempt_at,
                item.result.error,
                json.dumps(item.result.result) if item.result.result else None,
                item.attempt.started_at + item.attempt.duration,
            )
            for item in batch
        ]
        await conn.execute(_FINISH, _columns(finished))
        created = await _insert_deliveries(conn, [f for item in batch for f in item.follow_ups])
        unsent = [item.delivery.id for item in batch if item.result.status != "delivered"]
        if unsent:  # the change was not made: its echo will not come
            await conn.execute("DELETE FROM echoes WHERE delivery_id = ANY(%s) AND consumed_by IS NULL", (unsent,))
        acted = [(i.delivery.id, i.result.actor) for i in batch if i.result.status == "delivered" and i.result.actor]
        if acted:  # who the target says we acted as; an actor known before the send stays
            await conn.execute(
                "UPDATE echoes SET actor = t.actor FROM unnest(%s::text[], %s::text[]) AS t (delivery_id, actor)"
                " WHERE echoes.delivery_id = t.delivery_id AND echoes.consumed_by IS NULL AND echoes.actor IS NULL",
                _columns(acted),
            )
        results: list[list[str]] = []
        for item in batch:
            released: list[str] = []
            at = item.attempt.started_at + item.attempt.duration
            for a, b in item.links:
                released += await _link(conn, item.delivery.org, a, b, item.delivery.id, at)
            results.append(released)
        if any(results) or any(x is None for x in created):
            await self._notify(conn, DELIVERIES_CHANNEL)
        return results

    async def expect_echoes(self, delivery: Delivery, echoes: Sequence[Expected], now: float) -> None:
        mine = {"org": delivery.org, "delivery_id": delivery.id, "target": delivery.target, "now": now}

        async def write(conn: Conn) -> None:
            async with conn.cursor() as cursor:
                await cursor.executemany(Q.expect_echo, [{**echo._asdict(), **mine} for echo in echoes])

        await self._run(write)

    async def open_echoes(self, org: str, refs: Sequence[Ref], change: str, since: float) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for system, kind, object_id in refs:
            params = {"org": org, "system": system, "type": kind, "object_id": object_id}
            found += await self._all(Q.open_echoes, {**params, "change": change, "since": since})
        return sorted(found, key=lambda row: int(row["id"]))

    async def links_of(self, org: str, refs: Sequence[Ref]) -> list[Ref]:
        found: list[Ref] = []
        for system, kind, object_id in refs:
            for row in await self._all(Q.links_of, {"org": org, "system": system, "type": kind, "id": object_id}):
                other = (row["s"], row["t"], row["i"])
                if other not in found and other not in refs:
                    found.append(other)
        return found

    async def expire_waiting(self, now: float, older_than: float) -> list[tuple[str, str]]:
        """Dead-letter deliveries that waited for a link longer than `older_than` seconds: (id, target)."""

        async def write(conn: Conn) -> list[tuple[str, str]]:
            cursor = await conn.execute(_EXPIRING, {"before": now - older_than})
            rows = await cursor.fetchall()
            for row in rows:
                why = sql.expired_why(row["waiting_for"], older_than)
                await conn.execute(Q.expire, {"now": now, "error": why, "id": row["id"]})
            return [(row["id"], row["target"]) for row in rows]

        return await self._run(write)

    # ---- teams

    async def provision_teams(
        self, teams: Sequence[tuple[str, str, str]], claims: Sequence[tuple[str, str, str, str]], now: float
    ) -> list[str]:
        """Make the configured teams and their claims current; returns claims of the API that lost to the file."""

        async def write(conn: Conn) -> list[str]:
            # Replicas starting together provision the same file: one at a time.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (TEAMS_LOCK,))
            for org, name, token_hash in teams:
                await conn.execute(Q.upsert_team, {"org": org, "name": name, "token_hash": token_hash, "now": now})
            await conn.execute(Q.forget_config_claims)
            overridden = []
            for org, kind, value, team in claims:
                params = {"org": org, "kind": kind, "value": value}
                cursor = await conn.execute(Q.owner, params)
                row = await cursor.fetchone()
                if row and row["team"] != team:
                    overridden.append(f"{kind}={value} (claimed by {row['team']} through the API, given to {team})")
                await conn.execute(Q.config_claim, {**params, "team": team, "now": now})
            return overridden

        return await self._run(write)

    async def set_claims(
        self, org: str, team: str, claims: Mapping[str, Sequence[str]], now: float
    ) -> list[tuple[str, str, str]]:
        """Replace the team's claims of the given kinds; or, if any is another team's, change nothing
        and return the conflicts as (kind, value, owner)."""

        async def write(conn: Conn) -> list[tuple[str, str, str]]:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (TEAMS_LOCK,))
            conflicts = []
            for kind, values in claims.items():
                for value in values:
                    cursor = await conn.execute(Q.owner, {"org": org, "kind": kind, "value": value})
                    row = await cursor.fetchone()
                    if row and row["team"] != team:
                        conflicts.append((kind, value, row["team"]))
            if conflicts:
                return conflicts
            for kind, values in claims.items():
                await conn.execute(Q.forget_api_claims, {"org": org, "team": team, "kind": kind})
                for value in values:
                    await conn.execute(
                        Q.api_claim, {"org": org, "kind": kind, "value": value, "team": team, "now": now}
                    )
            return []

        return await self._run(write)

    async def find_teams(self, org: str, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str, str]]:
        """(kind, value, team) for each identifier of `pairs` that a team owns."""
        found = []
        for kind, value in pairs:
            row = await self._one(Q.owner, {"org": org, "kind": kind, "value": value})
            if row:
                found.append((kind, value, row["team"]))
        return found

    # ---- data lifecycle

    async def purge(self, events_before: float | None, attempts_before: float | None, limit: int) -> tuple[int, int]:
        """Delete at most `limit` finished events older than `events_before` (with their deliveries and
        attempts), and at most `limit` attempts older than `attempts_before`: (events, attempts) deleted."""

        async def write(conn: Conn) -> tuple[int, int]:
            events = 0
            if events_before is not None:
                cursor = await conn.execute(
                    "SELECT id FROM events e WHERE received_at < %s AND status != 'received'"
                    " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id"
                    "   AND d.status IN ('pending', 'in_flight', 'waiting')) ORDER BY seq LIMIT %s"
                    " FOR UPDATE SKIP LOCKED",
                    (events_before, limit),
                )
                ids = [row["id"] for row in await cursor.fetchall()]
                if ids:
                    await conn.execute(
                        "DELETE FROM attempts WHERE delivery_id IN"
                        " (SELECT id FROM deliveries WHERE event_id = ANY(%s))",
                        (ids,),
                    )
                    await conn.execute("DELETE FROM deliveries WHERE event_id = ANY(%s)", (ids,))
                    await conn.execute("UPDATE notifications SET event_id = NULL WHERE event_id = ANY(%s)", (ids,))
                    await conn.execute("DELETE FROM events WHERE id = ANY(%s)", (ids,))
                events = len(ids)
            attempts = 0
            if attempts_before is not None:
                cursor = await conn.execute(Q.purge_attempts, {"before": attempts_before, "limit": limit})
                attempts = cursor.rowcount
            return events, attempts

        return await self._run(write)

    async def export_events(
        self, after_seq: int, limit: int, since: float | None = None, until: float | None = None, org: str | None = None
    ) -> list[tuple[int, EventRow, list[Delivery]]]:
        """A page of events in arrival order (after `after_seq`), each with its deliveries."""
        statement, params = self._export_page(after_seq, limit, since, until, org)

        async def read(conn: Conn) -> list[tuple[int, EventRow, list[Delivery]]]:
            cursor = await conn.execute(statement, params)
            page = []
            for row in await cursor.fetchall():
                found = await conn.execute(Q.deliveries_of, {"event_id": row["id"]})
                deliveries = [sql.delivery(d, self._decode) for d in await found.fetchall()]
                page.append((row["seq"], sql.event_row(row, self._decode), deliveries))
            return page

        return await self._run(read)

    # ---- operators

    async def replay(self, ids: Sequence[str], now: float, org: str | None = None) -> list[str]:
        """Make deliveries (or an event's work) pending again, due now, with a fresh budget."""

        async def write(conn: Conn) -> list[str]:
            done = []
            for item in ids:
                cursor = await conn.execute(Q.replay, {"now": now, "item": item, "org": org})
                done += [row["id"] for row in sorted(await cursor.fetchall(), key=lambda r: r["seq"])]
            if done:
                await self._notify(conn, DELIVERIES_CHANNEL)
            return done

        return await self._run(write)

    # ---- the inbox

    async def update_incident(self, org: str, key: str, changes: Mapping[str, Any], now: float) -> bool:
        async def write(conn: Conn) -> bool:
            cursor = await conn.execute(_INCIDENT_DATA, {"org": org, "key": key})
            row = await cursor.fetchone()
            if row is None:
                return False
            data = {**row["data"], **dict(changes)}
            await conn.execute(Q.update_incident, {"data": json.dumps(data), "now": now, "id": row["id"]})
            return True

        return await self._run(write)
