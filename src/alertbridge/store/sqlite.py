"""The SQLite store: WAL, one writer thread, group commit.

Every write is a job for the single writer thread. The writer takes all the jobs waiting,
runs each in a savepoint, and commits them together: one disk flush serves every request
that arrived while the previous flush was under way, so durability does not cost a flush
per request. `synchronous=FULL` makes a commit survive power loss, not just a crash.

Reads use their own connections (WAL lets them run beside the writer).

SQLite serves one alertbridge process; for several replicas use PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from alertbridge import events as ev
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
from alertbridge.store.common import SQLStore
from alertbridge.store.migrations import summary

T = TypeVar("T")

# msgspec, not the json module: it encodes a delivery's fields and trace several times faster.
_encode = msgspec.json.Encoder().encode
_loads = msgspec.json.decode
Q = sql.SQLITE


def _dumps(value: Any) -> str:
    return _encode(value).decode()


def _from_json(value: Any) -> Any:
    return _loads(value)


def _replace_marker(fields: str, marker: str, found: str) -> str:
    """Put the linked id where the marker stands in a delivery's stored fields (JSON text); rows
    written by the json module have the marker's characters as \\u escapes."""
    for dumps in (_dumps, json.dumps):
        fields = fields.replace(dumps(marker)[1:-1], dumps(found)[1:-1])
    return fields


MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            org TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            source TEXT NOT NULL,
            kind TEXT NOT NULL,
            delivery_key TEXT NOT NULL,
            subject_id TEXT,
            received_at REAL NOT NULL,
            status TEXT NOT NULL,
            data BLOB NOT NULL,
            trace TEXT,
            routed_at REAL,
            UNIQUE (org, endpoint, delivery_key)
        );
        CREATE INDEX events_unrouted ON events (seq) WHERE status = 'received';
        CREATE TABLE deliveries (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            org TEXT NOT NULL,
            event_id TEXT NOT NULL REFERENCES events (id),
            route TEXT NOT NULL,
            target TEXT NOT NULL,
            action TEXT NOT NULL,
            fields TEXT NOT NULL,
            idempotency_key TEXT NOT NULL,
            order_key TEXT,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            claim TEXT,
            claimed_until REAL,
            created_at REAL NOT NULL,
            budget_from REAL NOT NULL,
            updated_at REAL NOT NULL,
            last_error TEXT,
            result TEXT,
            UNIQUE (org, idempotency_key)
        );
        CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
        CREATE INDEX deliveries_order ON deliveries (order_key, seq) WHERE order_key IS NOT NULL;
        CREATE INDEX deliveries_event ON deliveries (event_id);
        CREATE TABLE attempts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            delivery_id TEXT NOT NULL REFERENCES deliveries (id),
            number INTEGER NOT NULL,
            started_at REAL NOT NULL,
            duration REAL NOT NULL,
            outcome TEXT NOT NULL,
            status_code INTEGER,
            message TEXT NOT NULL
        );
        CREATE INDEX attempts_delivery ON attempts (delivery_id, number);
        """,
    ),
    (
        2,
        """
        ALTER TABLE deliveries ADD COLUMN waiting_for TEXT;
        CREATE INDEX deliveries_waiting ON deliveries (org, created_at) WHERE status = 'waiting';
        CREATE TABLE links (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            org TEXT NOT NULL,
            a_system TEXT NOT NULL, a_type TEXT NOT NULL, a_id TEXT NOT NULL,
            b_system TEXT NOT NULL, b_type TEXT NOT NULL, b_id TEXT NOT NULL,
            delivery_id TEXT,
            created_at REAL NOT NULL,
            UNIQUE (org, a_system, a_type, a_id, b_system, b_type, b_id)
        );
        CREATE INDEX links_a ON links (org, a_system, a_type, a_id);
        CREATE INDEX links_b ON links (org, b_system, b_type, b_id);
        CREATE TABLE echoes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            org TEXT NOT NULL,
            system TEXT NOT NULL, type TEXT NOT NULL, object_id TEXT NOT NULL,
            change TEXT NOT NULL,
            delivery_id TEXT NOT NULL,
            target TEXT NOT NULL,
            created_at REAL NOT NULL,
            consumed_by TEXT
        );
        CREATE INDEX echoes_open ON echoes (org, system, type, object_id, change) WHERE consumed_by IS NULL;
        CREATE INDEX echoes_delivery ON echoes (delivery_id);
        """,
    ),
    (
        3,
        """
        CREATE TABLE teams (
            org TEXT NOT NULL,
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            provisioned INTEGER NOT NULL DEFAULT 1,
            created_at REAL NOT NULL,
            PRIMARY KEY (org, name)
        );
        CREATE TABLE identifiers (
            org TEXT NOT NULL,
            kind TEXT NOT NULL,
            value TEXT NOT NULL,
            team TEXT NOT NULL,
            origin TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (org, kind, value)
        );
        CREATE INDEX identifiers_team ON identifiers (org, team);
        """,
    ),
    (
        4,
        """
        CREATE TABLE api_tokens (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            org TEXT NOT NULL,
            name TEXT NOT NULL,
            role TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL
        );
        CREATE INDEX events_org ON events (org, seq);
        CREATE INDEX deliveries_org ON deliveries (org, seq);
        """,
    ),
    (
        5,
        """
        ALTER TABLE api_tokens ADD COLUMN user_email TEXT;
        CREATE TABLE users (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            org TEXT NOT NULL,
            email TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL,
            created_at REAL NOT NULL,
            UNIQUE (org, email)
        );
        CREATE TABLE notifications (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            org TEXT NOT NULL,
            user_id INTEGER NOT NULL REFERENCES users (id),
            key TEXT NOT NULL,
            title TEXT NOT NULL,
            body TEXT,
            link TEXT,
            data TEXT NOT NULL,
            event_id TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            read_at REAL,
            UNIQUE (org, user_id, key)
        );
        CREATE INDEX notifications_user ON notifications (org, user_id, updated_at);
        CREATE TABLE incidents (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            org TEXT NOT NULL,
            key TEXT,
            data TEXT NOT NULL,
            created_by TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE UNIQUE INDEX incidents_key ON incidents (org, key) WHERE key IS NOT NULL;
        """,
    ),
    (
        6,
        """
        CREATE TABLE integrations (
            org TEXT NOT NULL,
            kind TEXT NOT NULL,
            config TEXT NOT NULL,
            updated_at REAL NOT NULL,
            updated_by TEXT,
            PRIMARY KEY (org, kind)
        );
        """,
    ),
    (
        7,
        """
        CREATE TABLE sessions (
            id_hash TEXT PRIMARY KEY,
            org TEXT NOT NULL,
            email TEXT NOT NULL,
            role TEXT NOT NULL,
            csrf TEXT NOT NULL,
            expires_at REAL NOT NULL
        );
        """,
    ),
    (
        8,
        # The router's claim on an event, as on PostgreSQL. One SQLite process has one router, so
        # nothing here writes them; they keep the two schemas the same.
        """
        ALTER TABLE events ADD COLUMN claim TEXT;
        ALTER TABLE events ADD COLUMN claimed_until REAL;
        CREATE INDEX deliveries_claimed ON deliveries (claimed_until) WHERE status = 'in_flight';
        """,
    ),
    (
        9,
        # Endpoints and targets made through the admin API (the file's are not stored).
        """
        CREATE TABLE objects (
            org TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            config TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            updated_by TEXT,
            PRIMARY KEY (org, kind, name)
        );
        """,
    ),
    (
        10,
        # A delivery's place in the send order is (its event's seq, its own seq): kept on the row, an
        # earlier unfinished delivery of the same order key is one index probe, not a join per row.
        """
        ALTER TABLE deliveries ADD COLUMN event_seq INTEGER;
        UPDATE deliveries SET event_seq = (SELECT seq FROM events WHERE events.id = deliveries.event_id);
        DROP INDEX deliveries_order;
        CREATE INDEX deliveries_unfinished ON deliveries (order_key, event_seq, seq)
            WHERE order_key IS NOT NULL AND status IN ('pending', 'in_flight', 'waiting');
        CREATE INDEX deliveries_pending ON deliveries (next_attempt_at, seq) WHERE status = 'pending';
        """,
    ),
    (
        11,
        # Sends per target in a rolling window, counted across replicas for a shared rate limit.
        """
        ALTER TABLE attempts ADD COLUMN target TEXT;
        UPDATE attempts SET target = (SELECT target FROM deliveries WHERE deliveries.id = attempts.delivery_id);
        CREATE INDEX attempts_sent ON attempts (target, started_at);
        """,
    ),
    (
        12,
        # What an expected echo must carry to be ours: a digest of the content we wrote (a note's
        # text) and the name we act under there, where the system's webhook reports them.
        """
        ALTER TABLE echoes ADD COLUMN fingerprint TEXT;
        ALTER TABLE echoes ADD COLUMN actor TEXT;
        """,
    ),
    (
        13,
        # Where each alert is in its episodes (fired, resolved, fired again): the latest episode's
        # number and whether it is open, and the event that last moved it.
        """
        CREATE TABLE episodes (
            org TEXT NOT NULL,
            alert TEXT NOT NULL,
            number INTEGER NOT NULL,
            state TEXT NOT NULL,
            event_id TEXT NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (org, alert)
        );
        """,
    ),
    (
        14,
        # Silences (Alertmanager's, by UUID) and maintenance windows made through the API (a
        # `recurrence`): the router reads the active ones for each batch it routes.
        """
        CREATE TABLE silences (
            id TEXT PRIMARY KEY,
            org TEXT NOT NULL,
            matchers TEXT NOT NULL,
            starts_at REAL NOT NULL,
            ends_at REAL NOT NULL,
            created_by TEXT NOT NULL,
            comment TEXT NOT NULL,
            updated_at REAL NOT NULL,
            recurrence TEXT,
            name TEXT
        );
        CREATE INDEX silences_ending ON silences (ends_at);
        """,
    ),
    (
        15,
        # Inhibition and repeats: what inhibit rules read of an open alert (its labels and the event
        # fields matchers read), when its open episode opened (a route's repeat_interval counts from
        # there), and from when a redelivered event is a repeat to route again (`repeat_at`).
        """
        ALTER TABLE episodes ADD COLUMN labels TEXT;
        ALTER TABLE episodes ADD COLUMN opened_at REAL;
        ALTER TABLE events ADD COLUMN repeat_at REAL;
        CREATE INDEX episodes_open ON episodes (org) WHERE state = 'open';
        """,
    ),
]


def path_of(url: str) -> str:
    """`sqlite:///./alertbridge.db` → `./alertbridge.db`; `sqlite:////abs/path.db` → `/abs/path.db`."""
    if not url.startswith("sqlite://"):
        raise ValueError(f"not a SQLite URL: {url}")
    rest = url[len("sqlite://") :]
    return rest[1:] if rest.startswith("/") else rest


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.row_factory = sqlite3.Row
    return conn


def migrate(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    """Apply the migrations this database has not seen; returns (version, summary) of each applied."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)")
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    applied = []
    for version, script in MIGRATIONS:
        if version in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, datetime('now'))", (version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append((version, summary(script)))
    return applied


@dataclass
class _Job:
    fn: Callable[[sqlite3.Connection], Any] | None  # a write of its own, in a savepoint
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    events: list[tuple] | None = None  # or event rows, inserted with every other job's in one statement


class _Writer(threading.Thread):
    """The one thread that writes. Jobs that wait while it flushes share the next commit."""

    MAX_BATCH = 512

    def __init__(self, path: str) -> None:
        super().__init__(name="alertbridge-sqlite-writer", daemon=True)
        self.path = path
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.commits = 0  # transactions committed; jobs / commits is the group-commit batch size
        self.jobs_done = 0

    def run(self) -> None:
        try:
            conn = _connect(self.path)
            migrate(conn)
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        while True:
            job = self.jobs.get()
            if job is None:
                break
            batch = [job]
            while len(batch) < self.MAX_BATCH:
                try:
                    more = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.jobs.put(None)
                    break
                batch.append(more)
            self._commit(conn, batch)
        conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        self.commits += 1
        self.jobs_done += len(batch)
        outcomes: list[tuple[Any, BaseException | None]] = [(None, None)] * len(batch)
        try:
            conn.execute("BEGIN IMMEDIATE")
            inserts = [i for i, job in enumerate(batch) if job.events is not None]
            if inserts:
                results = _savepoint(conn, lambda: _insert_events(conn, batch, inserts))
                if len(results) != len(inserts):  # the insert failed as a whole: each request is told so
                    results = results[:1] * len(inserts)
                for i, result in zip(inserts, results, strict=True):
                    outcomes[i] = result
            for i, job in enumerate(batch):
                if job.fn is not None:
                    fn = job.fn
                    outcomes[i] = _savepoint(conn, lambda fn=fn: [fn(conn)])[0]  # type: ignore[misc]
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = StoreUnavailable(f"the database did not take the write: {exc}")
            outcomes = [(None, failure)] * len(batch)
        # One wake-up per event loop for the whole batch, not one per job.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any, BaseException | None]]] = {}
        for job, (value, error) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(job.loop, []).append((job.future, value, error))
        for loop, settled in by_loop.items():
            loop.call_soon_threadsafe(_settle_all, settled)

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self.jobs.put(_Job(fn, future, loop))
        return future

    def submit_events(self, rows: list[tuple]) -> asyncio.Future[list[Stored]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Stored]] = loop.create_future()
        self.jobs.put(_Job(None, future, loop, events=rows))
        return future

    def stop(self) -> None:
        self.jobs.put(None)


def _settle_all(settled: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
    for future, value, error in settled:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


def _savepoint(conn: sqlite3.Connection, work: Callable[[], list[Any]]) -> list[tuple[Any, BaseException | None]]:
    """Run `work` so that its failure undoes only its own writes; results as (value, error) pairs."""
    conn.execute("SAVEPOINT job")
    try:
        values = work()
    except Exception as exc:
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        return [(None, exc)]
    conn.execute("RELEASE job")
    return [(v, None) for v in values] if isinstance(values, list) else [(values, None)]


RESEND = (
    "UPDATE events SET status = 'received'"
    " WHERE (status IN ('silenced', 'inhibited') OR (status = 'routed' AND repeat_at <= ?))"
)
_EVENT_COLUMNS = "id, org, endpoint, source, kind, delivery_key, subject_id, received_at, status, data"
_EVENT_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, 'received', ?)"


def _event_values(e: Event) -> tuple:
    """An event's values for `_EVENT_VALUES`, in its order."""
    return (
        e.id,
        e.org,
        e.endpoint,
        e.source,
        e.kind,
        e.delivery_key,
        e.subject.id if e.subject else None,
        e.received_at,
        ev.encode(e),
    )


# Rows per statement, at most; fewer where the SQLite library takes fewer parameters (999 before 3.32).
_EVENTS_PER_STATEMENT = 512


def _per_statement(conn: sqlite3.Connection, parameters_each: int, fixed: int = 0) -> int:
    """How many items of `parameters_each` parameters one statement can carry, with `fixed` others."""
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return max(1, min(_EVENTS_PER_STATEMENT, (limit - fixed) // parameters_each))


def _insert_events(conn: sqlite3.Connection, batch: list[_Job], indexes: list[int]) -> list[list[Stored]]:
    """Every waiting request's events in a few statements, not a statement per row (less Python in
    the writer thread, which shares the interpreter lock with the loop); redeliveries point at the
    first copy."""
    rows = [row for i in indexes for row in batch[i].events or []]
    first = _stored_ids(conn, rows)
    _unsilence(conn, list(first.values()), max((row[7] for row in rows), default=0.0))
    new_rows = []
    results: list[list[Stored]] = []
    for i in indexes:
        stored = []
        for row in batch[i].events or []:
            key = (row[1], row[2], row[5])
            if key in first:
                stored.append(Stored(row[0], first[key]))
            else:
                first[key] = row[0]
                new_rows.append(row)
                stored.append(Stored(row[0], None))
        results.append(stored)
    size = _per_statement(conn, _EVENT_VALUES.count("?"))
    for start in range(0, len(new_rows), size):
        chunk = new_rows[start : start + size]
        conn.execute(
            f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES {', '.join([_EVENT_VALUES] * len(chunk))}"
            " ON CONFLICT (org, endpoint, delivery_key) DO NOTHING",
            [value for row in chunk for value in row],
        )
    return results


def _unsilence(conn: sqlite3.Connection, event_ids: list[str], now: float) -> None:
    """A redelivered event that was silenced or inhibited is routed again (`RESEND`): a sender that
    repeats a firing alert (Alertmanager, each `repeat_interval`) pages once its silence has ended
    or its inhibiting alert resolved; so is one routed by a route with `repeat_interval` once its
    next interval has begun (`repeat_at`, at `now`: when the redelivery was received)."""
    size = _per_statement(conn, 1, fixed=1)
    for start in range(0, len(event_ids), size):
        chunk = event_ids[start : start + size]
        conn.execute(f"{RESEND} AND id IN ({', '.join('?' * len(chunk))})", [now, *chunk])


def _stored_ids(conn: sqlite3.Connection, rows: list[tuple]) -> dict[tuple[str, str, str], str]:
    """{(org, endpoint, delivery key): event id} of the rows' keys already stored, one query per endpoint."""
    keys_by_endpoint: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        keys_by_endpoint.setdefault((row[1], row[2]), set()).add(row[5])
    found: dict[tuple[str, str, str], str] = {}
    size = _per_statement(conn, 1, fixed=2)
    for (org, endpoint), keys in keys_by_endpoint.items():
        listed = sorted(keys)
        for start in range(0, len(listed), size):
            chunk = listed[start : start + size]
            for key, event_id in conn.execute(
                "SELECT delivery_key, id FROM events WHERE org = ? AND endpoint = ?"
                f" AND delivery_key IN ({', '.join('?' * len(chunk))})",
                [org, endpoint, *chunk],
            ):
                found[(org, endpoint, key)] = event_id
    return found


_INSERT_DELIVERY = (
    "INSERT INTO deliveries (id, org, event_id, route, target, action, fields, idempotency_key, order_key,"
    " status, attempts, next_attempt_at, created_at, budget_from, updated_at, waiting_for, event_seq)"
    " VALUES (:id, :org, :event_id, :route, :target, :action, :fields, :key, :order_key, :status, 0, :now, :now,"
    " :now, :now, :waiting_for, (SELECT seq FROM events WHERE id = :event_id))"
    " ON CONFLICT (org, idempotency_key) DO NOTHING"
)


def _insert_deliveries(conn: sqlite3.Connection, deliveries: Sequence[NewDelivery]) -> list[str | None]:
    """Insert new deliveries; for each, None, or the id of the delivery that already has its key."""
    existing: list[str | None] = []
    for d in deliveries:
        cursor = conn.execute(
            _INSERT_DELIVERY,
            {
                "id": d.id,
                "org": d.org,
                "event_id": d.event_id,
                "route": d.route,
                "target": d.target,
                "action": d.action,
                "fields": _dumps(d.fields),
                "key": d.idempotency_key,
                "order_key": d.order_key,
                "status": "waiting" if d.waiting_for else "pending",
                "now": d.created_at,
                "waiting_for": _dumps(d.waiting_for) if d.waiting_for else None,
            },
        )
        if cursor.rowcount:
            existing.append(None)
        else:
            row = conn.execute(Q.holder, {"org": d.org, "key": d.idempotency_key}).fetchone()
            existing.append(row[0])
    return existing


def _link(conn: sqlite3.Connection, org: str, a: Ref, b: Ref, delivery_id: str, now: float) -> list[str]:
    """Store the pair and release the deliveries that were waiting for it; returns their ids."""
    conn.execute(Q.link, sql.link_params(org, a, b, delivery_id, now))
    released = []
    for row in conn.execute(Q.waiting, {"org": org}).fetchall():
        found = sql.released_by(_loads(row["waiting_for"]), a, b)
        if found is None:
            continue
        marker, linked = found
        conn.execute(
            Q.release,
            {
                "fields": _replace_marker(row["fields"], marker, linked),
                "order_key": row["order_key"].replace(marker, linked) if row["order_key"] else None,
                "now": now,
                "id": row["id"],
            },
        )
        released.append(row["id"])
    return released


def _claimable(due: str, order: str, index: str) -> str:
    """(seq, target, next attempt) of deliveries that are `due`, walked in `order` along `index` so
    that a claim stops at its limit (`sql.IN_ORDER` holds back a delivery behind its order key).

    Both kinds of due in one statement (an OR) made SQLite read and sort every due row with its
    order check before the limit: a claim grew with the backlog, and a storm fed on itself."""
    return (
        f"SELECT d.seq, d.target, d.next_attempt_at FROM deliveries d INDEXED BY {index} WHERE {due}"
        f" AND {sql.IN_ORDER.format(row='d')} ORDER BY {order} LIMIT :scan"
    )


_DUE = _claimable(
    "d.status = 'pending' AND d.next_attempt_at <= :now", "d.next_attempt_at, d.seq", "deliveries_pending"
)
# In flight past its lease: the process died mid-send (or stalled), and the claim is taken again.
_LAPSED = _claimable(
    "d.status = 'in_flight' AND d.claimed_until <= :now", "d.claimed_until, d.seq", "deliveries_claimed"
)


class SQLiteStore(SQLStore):
    q = Q

    def __init__(self, url: str) -> None:
        self.path = path_of(url)
        self._writer: _Writer | None = None
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="alertbridge-sqlite-read")
        self._local = threading.local()

    # ---- how the shared methods (`SQLStore`) run here: reads on the readers' threads, writes in the writer

    _decode = staticmethod(_from_json)
    _encode = staticmethod(_dumps)

    async def _all(self, statement: str, params: Mapping[str, Any]) -> list[sqlite3.Row]:
        return await self._read(lambda conn: conn.execute(statement, params).fetchall())

    async def _one(self, statement: str, params: Mapping[str, Any]) -> sqlite3.Row | None:
        return await self._read(lambda conn: conn.execute(statement, params).fetchone())

    async def _exec(self, statement: str, params: Mapping[str, Any], notify: str | None = None) -> int:
        return await self._write(lambda conn: conn.execute(statement, params).rowcount)

    async def _exec_one(
        self, statement: str, params: Mapping[str, Any], notify: str | None = None
    ) -> sqlite3.Row | None:
        return await self._write(lambda conn: conn.execute(statement, params).fetchone())

    # ---- lifecycle

    def subscribe(
        self,
        on_events: Callable[[], None],
        on_deliveries: Callable[[], None],
        on_config: Callable[[], None] | None = None,
    ) -> None:
        """Nothing to do: one process writes this file, and it wakes its own router and dispatcher."""

    async def migrate(self) -> list[tuple[int, str]]:
        def run() -> list[tuple[int, str]]:
            conn = _connect(self.path)
            try:
                return migrate(conn)
            finally:
                conn.close()

        parent = Path(self.path).parent
        if not parent.exists():
            raise StoreUnavailable(f"the directory {parent} does not exist")
        try:
            return await asyncio.to_thread(run)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot migrate {self.path}: {exc}") from None

    async def open(self) -> None:
        parent = Path(self.path).parent
        if not parent.exists():
            raise StoreUnavailable(f"the directory {parent} does not exist")
        writer = _Writer(self.path)
        writer.start()
        await asyncio.to_thread(writer.ready.wait)
        if writer.error is not None:
            raise StoreUnavailable(f"cannot open {self.path}: {writer.error}")
        self._writer = writer

    async def open_existing(self) -> bool:
        """Readers only, on a file that exists and has the schema: sqlite3 would create a missing one."""
        if not Path(self.path).is_file():
            return False

        def read(conn: sqlite3.Connection) -> int | None:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'deliveries'").fetchone():
                return None
            return int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0])

        version = await self._read(read)
        if version is None:
            return False
        require_current(version, MIGRATIONS[-1][0], f"sqlite:///{self.path}")
        return True

    async def deliveries_with_keys(self, org: str, keys: Sequence[str]) -> dict[str, str]:
        def read(conn: sqlite3.Connection) -> dict[str, str]:
            found = {}
            for key in dict.fromkeys(keys):
                row = conn.execute(Q.holder, {"org": org, "key": key}).fetchone()
                if row:
                    found[key] = row[0]
            return found

        return await self._read(read)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.stop()
            await asyncio.to_thread(self._writer.join, 10)
            self._writer = None
        self._readers.shutdown(wait=False)

    def commit_stats(self) -> tuple[int, int]:
        """(transactions committed, write jobs done) since open: how well group commit batches."""
        return (self._writer.commits, self._writer.jobs_done) if self._writer else (0, 0)

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        if self._writer is None:
            raise StoreUnavailable("the store is not open")
        return self._writer.submit(fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = _connect(self.path)
            return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    # ---- ingress

    async def add_events(self, events: Sequence[Event]) -> list[Stored]:
        if self._writer is None:
            raise StoreUnavailable("the store is not open")
        return await self._writer.submit_events([_event_values(e) for e in events])

    # ---- router

    async def unrouted_events(self, limit: int, now: float | None = None, lease: float = 30.0) -> list[Event]:
        """The oldest events not yet routed. No claim is written: one process, one router."""
        rows = await self._read(
            lambda conn: conn.execute(
                "SELECT data FROM events WHERE status = 'received' ORDER BY seq LIMIT :limit", {"limit": limit}
            ).fetchall()
        )
        return [ev.decode(row[0]) for row in rows]

    async def record_decisions(self, decisions: Sequence[Decided], now: float) -> list[list[str | None] | None]:
        """One transaction in the writer thread. An expected echo is taken only while still open, so
        two decisions naming it suppress one event, and an episode step only from the state the router
        read; a decision that loses either is left unrouted, to be routed again."""

        def write(conn: sqlite3.Connection) -> list[list[str | None] | None]:
            results: list[list[str | None] | None] = []
            for decided in decisions:
                echo = {"event_id": decided.event_id, "id": decided.echo_id}
                if decided.echo_id is not None and not conn.execute(Q.consume_echo, echo).rowcount:
                    results.append(None)
                    continue
                step = decided.episode
                if step is not None and not conn.execute(Q.episode_step, sql.episode_params(step, now)).rowcount:
                    if decided.echo_id is not None:
                        conn.execute(Q.release_echo, echo)
                    results.append(None)
                    continue
                existing = _insert_deliveries(conn, decided.deliveries)
                trace = mark_done(decided.trace, decided.deliveries, existing)
                conn.execute(
                    "UPDATE events SET status = :status, trace = :trace, routed_at = :now, repeat_at = :repeat_at"
                    " WHERE id = :id AND status = 'received'",
                    {
                        "status": decided.status,
                        "trace": _dumps(trace),
                        "now": now,
                        "id": decided.event_id,
                        "repeat_at": decided.repeat_at,
                    },
                )
                results.append(existing)
            return results

        return await self._write(write)

    async def links_of(self, org: str, refs: Sequence[Ref]) -> list[Ref]:
        def read(conn: sqlite3.Connection) -> list[Ref]:
            found: list[Ref] = []
            for system, kind, object_id in refs:
                for row in conn.execute(Q.links_of, {"org": org, "system": system, "type": kind, "id": object_id}):
                    other = (row[0], row[1], row[2])
                    if other not in found and other not in refs:
                        found.append(other)
            return found

        return await self._read(read)

    async def open_echoes(self, org: str, refs: Sequence[Ref], change: str, since: float) -> list[dict[str, Any]]:
        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            for system, kind, object_id in refs:
                params = {"org": org, "system": system, "type": kind, "object_id": object_id}
                found += [
                    dict(row) for row in conn.execute(Q.open_echoes, {**params, "change": change, "since": since})
                ]
            return sorted(found, key=lambda row: int(row["id"]))

        return await self._read(read)

    async def find_teams(self, org: str, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str, str]]:
        """(kind, value, team) for each identifier of `pairs` that a team owns."""

        def read(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
            found = []
            for kind, value in pairs:
                row = conn.execute(Q.owner, {"org": org, "kind": kind, "value": value}).fetchone()
                if row:
                    found.append((kind, value, row[0]))
            return found

        return await self._read(read)

    # ---- dispatcher

    async def release_claims(self, now: float | None = None) -> int:
        """Every claim: this file has one process, so whatever is in flight is the last run's."""
        return await self._write(
            lambda conn: (
                conn.execute(
                    "UPDATE deliveries SET status = 'pending', claim = NULL, claimed_until = NULL"
                    " WHERE status = 'in_flight'"
                ).rowcount
            )
        )

    async def claim_deliveries(
        self,
        now: float,
        lease: float,
        limit: int,
        capacity: Mapping[str, int],
        limits: Mapping[str, tuple[int, float]] | None = None,
    ) -> list[Delivery]:
        """Due deliveries, at most `capacity[target]` for a rate-limited target, oldest first. (`limits`
        need not be counted here: this file has one process, whose own window `capacity` is.)

        A delivery waits while an earlier one with the same order key is unfinished, and an
        in-flight delivery whose lease has run out (its dispatcher died) is due again.
        """

        def claim(conn: sqlite3.Connection) -> list[Delivery]:
            params = {"now": now, "scan": max(limit * 4, 64)}
            due = conn.execute(_LAPSED, params).fetchall() + conn.execute(_DUE, params).fetchall()
            due.sort(key=lambda row: (row[2], row[0]))
            left = dict(capacity)
            chosen: list[int] = []
            for seq, target, _ in due:
                if len(chosen) >= limit:
                    break
                if target in left:
                    if left[target] <= 0:
                        continue
                    left[target] -= 1
                chosen.append(seq)
            if not chosen:
                return []
            marks = ", ".join("?" * len(chosen))
            conn.execute(
                f"UPDATE deliveries SET status = 'in_flight', claim = ?, claimed_until = ? WHERE seq IN ({marks})",
                [uuid.uuid4().hex, now + lease, *chosen],
            )
            # Only the chosen rows are read whole: the scan above may pass over many (a paced target's).
            rows = conn.execute(
                "SELECT d.*, e.received_at AS event_received_at, e.data AS event_data FROM deliveries d"
                f" JOIN events e ON e.id = d.event_id WHERE d.seq IN ({marks})",
                chosen,
            ).fetchall()
            by_seq = {row["seq"]: row for row in rows}
            return [sql.delivery(by_seq[seq], _loads) for seq in chosen]

        return await self._write(claim)

    async def record_attempt(
        self,
        delivery: Delivery,
        attempt: Attempt,
        result: AttemptResult,
        follow_ups: Sequence[NewDelivery] = (),
        links: Sequence[tuple[Ref, Ref]] = (),
    ) -> list[str]:
        def write(conn: sqlite3.Connection) -> list[str]:
            conn.execute(
                "INSERT INTO attempts (delivery_id, number, started_at, duration, outcome, status_code, message,"
                " target) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    attempt.delivery_id,
                    attempt.number,
                    attempt.started_at,
                    attempt.duration,
                    attempt.outcome,
                    attempt.status_code,
                    attempt.message,
                    delivery.target,
                ),
            )
            conn.execute(
                "UPDATE deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ?, last_error = ?,"
                " result = COALESCE(?, result), claim = NULL, claimed_until = NULL, updated_at = ?"
                " WHERE id = ? AND claim = ?",
                (
                    result.status,
                    result.next_attempt_at,
                    result.error,
                    _dumps(result.result) if result.result else None,
                    attempt.started_at + attempt.duration,
                    delivery.id,
                    delivery.claim,
                ),
            )
            _insert_deliveries(conn, follow_ups)
            if result.status != "delivered":  # the change was not made: its echo will not come
                conn.execute(Q.forget_echoes, {"delivery_id": delivery.id})
            elif result.actor:  # who the target says we acted as; an actor known before the send stays
                conn.execute(
                    "UPDATE echoes SET actor = ? WHERE delivery_id = ? AND consumed_by IS NULL AND actor IS NULL",
                    (result.actor, delivery.id),
                )
            released: list[str] = []
            for a, b in links:
                released += _link(conn, delivery.org, a, b, delivery.id, attempt.started_at + attempt.duration)
            return released

        return await self._write(write)

    async def expect_echoes(self, delivery: Delivery, echoes: Sequence[Expected], now: float) -> None:
        mine = {"org": delivery.org, "delivery_id": delivery.id, "target": delivery.target, "now": now}
        rows = [{**echo._asdict(), **mine} for echo in echoes]
        await self._write(lambda conn: conn.executemany(Q.expect_echo, rows))

    async def expire_waiting(self, now: float, older_than: float) -> list[tuple[str, str]]:
        """Dead-letter deliveries that waited for a link longer than `older_than` seconds: (id, target)."""

        def write(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = conn.execute(Q.expiring, {"before": now - older_than}).fetchall()
            for row in rows:
                why = sql.expired_why(_loads(row["waiting_for"]), older_than)
                conn.execute(Q.expire, {"now": now, "error": why, "id": row["id"]})
            return [(row["id"], row["target"]) for row in rows]

        return await self._write(write)

    # ---- teams

    async def provision_teams(
        self, teams: Sequence[tuple[str, str, str]], claims: Sequence[tuple[str, str, str, str]], now: float
    ) -> list[str]:
        """Make the configured teams and their claims current; returns claims of the API that lost to the file."""

        def write(conn: sqlite3.Connection) -> list[str]:
            for org, name, token_hash in teams:
                conn.execute(Q.upsert_team, {"org": org, "name": name, "token_hash": token_hash, "now": now})
            conn.execute(Q.forget_config_claims)
            overridden = []
            for org, kind, value, team in claims:
                params = {"org": org, "kind": kind, "value": value}
                row = conn.execute(Q.owner, params).fetchone()
                if row and row[0] != team:
                    overridden.append(f"{kind}={value} (claimed by {row[0]} through the API, given to {team})")
                conn.execute(Q.config_claim, {**params, "team": team, "now": now})
            return overridden

        return await self._write(write)

    async def set_claims(
        self, org: str, team: str, claims: Mapping[str, Sequence[str]], now: float
    ) -> list[tuple[str, str, str]]:
        """Replace the team's claims of the given kinds; or, if any is another team's, change nothing
        and return the conflicts as (kind, value, owner)."""

        def write(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
            conflicts = []
            for kind, values in claims.items():
                for value in values:
                    row = conn.execute(Q.owner, {"org": org, "kind": kind, "value": value}).fetchone()
                    if row and row[0] != team:
                        conflicts.append((kind, value, row[0]))
            if conflicts:
                return conflicts
            for kind, values in claims.items():
                conn.execute(Q.forget_api_claims, {"org": org, "team": team, "kind": kind})
                for value in values:
                    conn.execute(Q.api_claim, {"org": org, "kind": kind, "value": value, "team": team, "now": now})
            return []

        return await self._write(write)

    # ---- data lifecycle

    async def purge(self, events_before: float | None, attempts_before: float | None, limit: int) -> tuple[int, int]:
        """Delete at most `limit` finished events older than `events_before` (with their deliveries and
        attempts), and at most `limit` attempts older than `attempts_before`: (events, attempts) deleted."""

        def write(conn: sqlite3.Connection) -> tuple[int, int]:
            events = 0
            if events_before is not None:
                ids = [
                    row[0]
                    for row in conn.execute(
                        "SELECT id FROM events e WHERE received_at < ? AND status != 'received'"
                        " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id"
                        "   AND d.status IN ('pending', 'in_flight', 'waiting')) ORDER BY seq LIMIT ?",
                        (events_before, limit),
                    )
                ]
                for event_id in ids:
                    conn.execute(
                        "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = ?)",
                        (event_id,),
                    )
                    conn.execute("DELETE FROM deliveries WHERE event_id = ?", (event_id,))
                    conn.execute("UPDATE notifications SET event_id = NULL WHERE event_id = ?", (event_id,))
                    conn.execute("DELETE FROM events WHERE id = ?", (event_id,))
                events = len(ids)
            attempts = 0
            if attempts_before is not None:
                attempts = conn.execute(Q.purge_attempts, {"before": attempts_before, "limit": limit}).rowcount
            return events, attempts

        return await self._write(write)

    async def export_events(
        self, after_seq: int, limit: int, since: float | None = None, until: float | None = None, org: str | None = None
    ) -> list[tuple[int, EventRow, list[Delivery]]]:
        """A page of events in arrival order (after `after_seq`), each with its deliveries."""
        statement, params = self._export_page(after_seq, limit, since, until, org)

        def read(conn: sqlite3.Connection) -> list[tuple[int, EventRow, list[Delivery]]]:
            page = []
            for row in conn.execute(statement, params).fetchall():
                deliveries = conn.execute(Q.deliveries_of, {"event_id": row["id"]}).fetchall()
                page.append((row["seq"], sql.event_row(row, _loads), [sql.delivery(d, _loads) for d in deliveries]))
            return page

        return await self._read(read)

    # ---- operators

    async def replay(self, ids: Sequence[str], now: float, org: str | None = None) -> list[str]:
        """Make deliveries (or an event's work) pending again, due now, with a fresh budget."""

        def write(conn: sqlite3.Connection) -> list[str]:
            done = []
            for item in ids:
                rows = conn.execute(Q.replay, {"now": now, "item": item, "org": org}).fetchall()
                done += [row["id"] for row in sorted(rows, key=lambda r: r["seq"])]
            return done

        return await self._write(write)

    # ---- the inbox

    async def update_incident(self, org: str, key: str, changes: Mapping[str, Any], now: float) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            row = conn.execute(Q.incident_data, {"org": org, "key": key}).fetchone()
            if row is None:
                return False
            data = {**_loads(row["data"]), **dict(changes)}
            conn.execute(Q.update_incident, {"data": _dumps(data), "now": now, "id": row["id"]})
            return True

        return await self._write(write)
