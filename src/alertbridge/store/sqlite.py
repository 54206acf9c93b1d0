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
from alertbridge.store.base import (
    ECHO_COLUMNS,
    NOT_A_REACTION,
    Attempt,
    AttemptResult,
    Decided,
    Delivery,
    EventRow,
    NewDelivery,
    Ref,
    SavedObject,
    Stored,
    StoreUnavailable,
    mark_done,
    require_current,
)
from alertbridge.store.migrations import summary

T = TypeVar("T")

# msgspec, not the json module: it encodes a delivery's fields and trace several times faster.
_encode = msgspec.json.Encoder().encode
_loads = msgspec.json.decode


def _dumps(value: Any) -> str:
    return _encode(value).decode()


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
    for version, sql in MIGRATIONS:
        if version in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, datetime('now'))", (version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append((version, summary(sql)))
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
    first = _stored_ids(conn, [row for i in indexes for row in batch[i].events or []])
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


def _delivery(row: sqlite3.Row) -> Delivery:
    keys = row.keys()
    return Delivery(
        id=row["id"],
        org=row["org"],
        event_id=row["event_id"],
        route=row["route"],
        target=row["target"],
        action=row["action"],
        fields=_loads(row["fields"]),
        idempotency_key=row["idempotency_key"],
        order_key=row["order_key"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"],
        budget_from=row["budget_from"],
        updated_at=row["updated_at"],
        last_error=row["last_error"],
        result=_loads(row["result"]) if row["result"] else None,
        event_received_at=row["event_received_at"] if "event_received_at" in keys else None,
        claim=row["claim"],
        event=ev.decode(row["event_data"]) if "event_data" in keys else None,
        waiting_for=_loads(row["waiting_for"]) if row["waiting_for"] else None,
    )


def _event_row(row: sqlite3.Row) -> EventRow:
    return EventRow(
        event=ev.decode(row["data"]),
        status=row["status"],
        trace=_loads(row["trace"]) if row["trace"] else None,
        routed_at=row["routed_at"],
    )


def _insert_deliveries(conn: sqlite3.Connection, deliveries: Sequence[NewDelivery]) -> list[str | None]:
    """Insert new deliveries; for each, None, or the id of the delivery that already has its key."""
    existing: list[str | None] = []
    for d in deliveries:
        cursor = conn.execute(
            "INSERT INTO deliveries (id, org, event_id, route, target, action, fields, idempotency_key, order_key,"
            " status, attempts, next_attempt_at, created_at, budget_from, updated_at, waiting_for, event_seq)"
            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11, ?11, ?11, ?11, ?12,"
            " (SELECT seq FROM events WHERE id = ?3))"
            " ON CONFLICT (org, idempotency_key) DO NOTHING",
            (
                d.id,
                d.org,
                d.event_id,
                d.route,
                d.target,
                d.action,
                _dumps(d.fields),
                d.idempotency_key,
                d.order_key,
                "waiting" if d.waiting_for else "pending",
                d.created_at,
                _dumps(d.waiting_for) if d.waiting_for else None,
            ),
        )
        if cursor.rowcount:
            existing.append(None)
        else:
            row = conn.execute(
                "SELECT id FROM deliveries WHERE org = ? AND idempotency_key = ?", (d.org, d.idempotency_key)
            ).fetchone()
            existing.append(row[0])
    return existing


def _filters(pairs: Sequence[tuple[str, Any]]) -> tuple[str, list[Any]]:
    """A WHERE clause from (condition, value) pairs whose value is given."""
    used = [(clause, value) for clause, value in pairs if value is not None]
    if not used:
        return "", []
    return " WHERE " + " AND ".join(clause for clause, _ in used), [value for _, value in used]


def _link(conn: sqlite3.Connection, org: str, a: Ref, b: Ref, delivery_id: str, now: float) -> list[str]:
    """Store the pair and release the deliveries that were waiting for it; returns their ids."""
    conn.execute(
        "INSERT INTO links (org, a_system, a_type, a_id, b_system, b_type, b_id, delivery_id, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (org, *a, *b, delivery_id, now),
    )
    released = []
    for row in conn.execute(
        "SELECT id, fields, order_key, waiting_for FROM deliveries WHERE org = ? AND status = 'waiting'", (org,)
    ).fetchall():
        waiting = _loads(row["waiting_for"])
        refs = {tuple(r) for r in waiting["refs"]}
        want = tuple(waiting["want"])
        found = b if a in refs and b[:2] == want else a if b in refs and a[:2] == want else None
        if found is None:
            continue
        marker = waiting["marker"]
        conn.execute(
            "UPDATE deliveries SET status = 'pending', fields = ?, order_key = ?, next_attempt_at = ?,"
            " budget_from = ?, updated_at = ?, waiting_for = NULL WHERE id = ?",
            (
                _replace_marker(row["fields"], marker, found[2]),
                row["order_key"].replace(marker, found[2]) if row["order_key"] else None,
                now,
                now,
                now,
                row["id"],
            ),
        )
        released.append(row["id"])
    return released


def _claimable(due: str, order: str, index: str) -> str:
    """(seq, target, next attempt) of deliveries that are `due`, walked in `order` along `index` so
    that a claim stops at its limit.

    Both kinds of due in one statement (an OR) made SQLite read and sort every due row with its
    order check before the limit: a claim grew with the backlog, and a storm fed on itself.

    One waits while an earlier delivery with its order key is unfinished; earlier means of an
    earlier event, then made earlier (the router may write a later event's deliveries first)."""
    return (
        f"SELECT d.seq, d.target, d.next_attempt_at FROM deliveries d INDEXED BY {index} WHERE {due}"
        "   AND (d.order_key IS NULL OR NOT EXISTS ("
        "     SELECT 1 FROM deliveries p WHERE p.order_key = d.order_key"
        "       AND p.status IN ('pending', 'in_flight', 'waiting') AND (p.event_seq, p.seq) < (d.event_seq, d.seq)))"
        f" ORDER BY {order} LIMIT :scan"
    )


_DUE = _claimable(
    "d.status = 'pending' AND d.next_attempt_at <= :now", "d.next_attempt_at, d.seq", "deliveries_pending"
)
# In flight past its lease: the process died mid-send (or stalled), and the claim is taken again.
_LAPSED = _claimable(
    "d.status = 'in_flight' AND d.claimed_until <= :now", "d.claimed_until, d.seq", "deliveries_claimed"
)


class SQLiteStore:
    def __init__(self, url: str) -> None:
        self.path = path_of(url)
        self._writer: _Writer | None = None
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="alertbridge-sqlite-read")
        self._local = threading.local()

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
                row = conn.execute(
                    "SELECT id FROM deliveries WHERE org = ? AND idempotency_key = ?", (org, key)
                ).fetchone()
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
                "SELECT data FROM events WHERE status = 'received' ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        )
        return [ev.decode(row[0]) for row in rows]

    async def record_decisions(self, decisions: Sequence[Decided], now: float) -> list[list[str | None] | None]:
        """One transaction in the writer thread. An expected echo is taken only while still open, so
        two decisions naming it suppress one event; the other is left unrouted, to be routed again."""

        def write(conn: sqlite3.Connection) -> list[list[str | None] | None]:
            results: list[list[str | None] | None] = []
            for decided in decisions:
                if decided.echo_id is not None:
                    taken = conn.execute(
                        "UPDATE echoes SET consumed_by = ? WHERE id = ? AND consumed_by IS NULL",
                        (decided.event_id, decided.echo_id),
                    ).rowcount
                    if not taken:
                        results.append(None)
                        continue
                existing = _insert_deliveries(conn, decided.deliveries)
                trace = mark_done(decided.trace, decided.deliveries, existing)
                conn.execute(
                    "UPDATE events SET status = ?, trace = ?, routed_at = ? WHERE id = ? AND status = 'received'",
                    (decided.status, _dumps(trace), now, decided.event_id),
                )
                results.append(existing)
            return results

        return await self._write(write)

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
            return [_delivery(by_seq[seq]) for seq in chosen]

        return await self._write(claim)

    async def defer(self, delivery_id: str, claim: str, until: float) -> None:
        await self._write(
            lambda conn: conn.execute(
                "UPDATE deliveries SET status = 'pending', claim = NULL, claimed_until = NULL, next_attempt_at = ?"
                " WHERE id = ? AND claim = ?",
                (until, delivery_id, claim),
            )
        )

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
                conn.execute("DELETE FROM echoes WHERE delivery_id = ? AND consumed_by IS NULL", (delivery.id,))
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
        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO echoes"
                " (org, system, type, object_id, change, fingerprint, actor, delivery_id, target, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(delivery.org, *echo, delivery.id, delivery.target, now) for echo in echoes],
            )

        await self._write(write)

    async def open_echoes(self, org: str, refs: Sequence[Ref], change: str, since: float) -> list[dict[str, Any]]:
        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            for system, kind, object_id in refs:
                found += [
                    dict(row)
                    for row in conn.execute(
                        f"SELECT {ECHO_COLUMNS} FROM echoes"
                        " WHERE org = ? AND system = ? AND type = ? AND object_id = ? AND change = ?"
                        "   AND consumed_by IS NULL AND created_at >= ? ORDER BY id",
                        (org, system, kind, object_id, change, since),
                    )
                ]
            return sorted(found, key=lambda row: int(row["id"]))

        return await self._read(read)

    async def links_of(self, org: str, refs: Sequence[Ref]) -> list[Ref]:
        def read(conn: sqlite3.Connection) -> list[Ref]:
            found: list[Ref] = []
            for ref in refs:
                for row in conn.execute(
                    "SELECT b_system, b_type, b_id FROM links"
                    " WHERE org = ? AND a_system = ? AND a_type = ? AND a_id = ?"
                    " UNION SELECT a_system, a_type, a_id FROM links"
                    " WHERE org = ? AND b_system = ? AND b_type = ? AND b_id = ?",
                    (org, *ref, org, *ref),
                ):
                    other = (row[0], row[1], row[2])
                    if other not in found and other not in refs:
                        found.append(other)
            return found

        return await self._read(read)

    # ---- API tokens and users

    async def create_token(
        self, org: str, name: str, role: str, token_hash: str, now: float, user_email: str | None = None
    ) -> None:
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO api_tokens (org, name, role, token_hash, created_at, user_email)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (org, name, role, token_hash, now, user_email),
            )
        )

    async def token_lookup(self, token_hash: str) -> tuple[str, str, str, str | None] | None:
        """(org, role, name, user email or None) of an API token, by its hash."""
        row = await self._read(
            lambda conn: conn.execute(
                "SELECT org, role, name, user_email FROM api_tokens WHERE token_hash = ?", (token_hash,)
            ).fetchone()
        )
        return (row[0], row[1], row[2], row[3]) if row else None

    async def create_user(self, org: str, email: str, password_hash: str, role: str, now: float) -> bool:
        """False if the org already has a user with that email."""

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT INTO users (org, email, password_hash, role, created_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (org, email) DO NOTHING",
                (org, email.lower(), password_hash, role, now),
            )
            return bool(cursor.rowcount)

        return await self._write(write)

    async def user(self, org: str, email: str) -> dict[str, Any] | None:
        row = await self._read(
            lambda conn: conn.execute(
                "SELECT id, org, email, role, password_hash FROM users WHERE org = ? AND email = ?",
                (org, email.lower()),
            ).fetchone()
        )
        return dict(row) if row else None

    # ---- console sessions

    async def create_session(self, id_hash: str, org: str, email: str, role: str, csrf: str, expires_at: float) -> None:
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO sessions (id_hash, org, email, role, csrf, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                (id_hash, org, email, role, csrf, expires_at),
            )
        )

    async def session(self, id_hash: str, now: float) -> dict[str, Any] | None:
        row = await self._read(
            lambda conn: conn.execute(
                "SELECT org, email, role, csrf FROM sessions WHERE id_hash = ? AND expires_at > ?", (id_hash, now)
            ).fetchone()
        )
        return dict(row) if row else None

    async def end_session(self, id_hash: str) -> None:
        await self._write(lambda conn: conn.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,)))

    async def users_of(self, org: str) -> list[dict[str, Any]]:
        rows = await self._read(
            lambda conn: conn.execute("SELECT email, role FROM users WHERE org = ? ORDER BY email", (org,)).fetchall()
        )
        return [dict(r) for r in rows]

    async def find_user(self, email: str) -> list[dict[str, Any]]:
        """Every org's user with this email (sign-in asks for the org when there are several)."""
        rows = await self._read(
            lambda conn: conn.execute(
                "SELECT org, email, role, password_hash FROM users WHERE email = ?", (email.lower(),)
            ).fetchall()
        )
        return [dict(r) for r in rows]

    # ---- integrations (settings changed through the API; secrets arrive here already encrypted)

    async def save_integration(
        self, org: str, kind: str, config: Mapping[str, Any], now: float, by: str | None
    ) -> None:
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO integrations (org, kind, config, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (org, kind) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at,"
                " updated_by = excluded.updated_by",
                (org, kind, _dumps(dict(config)), now, by),
            )
        )

    async def integrations(self) -> list[tuple[str, str, dict[str, Any]]]:
        rows = await self._read(lambda conn: conn.execute("SELECT org, kind, config FROM integrations").fetchall())
        return [(r[0], r[1], _loads(r[2])) for r in rows]

    # ---- endpoints and targets made through the API (secrets arrive here already sealed)

    async def save_object(
        self, org: str, kind: str, name: str, config: Mapping[str, Any], now: float, by: str | None
    ) -> None:
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO objects (org, kind, name, config, created_at, updated_at, updated_by)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (org, kind, name) DO UPDATE SET config = excluded.config,"
                " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                (org, kind, name, _dumps(dict(config)), now, now, by),
            )
        )

    async def objects(self, kind: str | None = None) -> list[SavedObject]:
        where, args = _filters([("kind = ?", kind)])
        rows = await self._read(
            lambda conn: conn.execute(
                "SELECT org, kind, name, config, created_at, updated_at, updated_by FROM objects"
                f"{where} ORDER BY created_at, name",
                args,
            ).fetchall()
        )
        return [SavedObject(r[0], r[1], r[2], _loads(r[3]), r[4], r[5], r[6]) for r in rows]

    async def delete_object(self, org: str, kind: str, name: str) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            done = conn.execute("DELETE FROM objects WHERE org = ? AND kind = ? AND name = ?", (org, kind, name))
            return done.rowcount > 0

        return await self._write(write)

    # ---- the inbox

    async def notify_all(self, org: str, key: str, note: Mapping[str, Any], event_id: str | None, now: float) -> int:
        """A notification for every user of the org; one per key, updated (and unread again) by later events."""

        def write(conn: sqlite3.Connection) -> int:
            users = [row[0] for row in conn.execute("SELECT id FROM users WHERE org = ?", (org,))]
            for user_id in users:
                conn.execute(
                    "INSERT INTO notifications (org, user_id, key, title, body, link, data, event_id, created_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (org, user_id, key) DO UPDATE SET title = excluded.title, body = excluded.body,"
                    " link = excluded.link, data = excluded.data, event_id = excluded.event_id,"
                    " updated_at = excluded.updated_at, read_at = NULL",
                    (
                        org,
                        user_id,
                        key,
                        note["title"],
                        note.get("body"),
                        note.get("link"),
                        _dumps(note.get("data") or {}),
                        event_id,
                        now,
                        now,
                    ),
                )
            return len(users)

        return await self._write(write)

    async def notifications(self, org: str, email: str, unread_only: bool = False) -> list[dict[str, Any]]:
        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            sql = (
                "SELECT n.id, n.key, n.title, n.body, n.link, n.data, n.event_id, n.created_at, n.updated_at,"
                " n.read_at FROM notifications n JOIN users u ON u.id = n.user_id"
                " WHERE n.org = ? AND u.email = ?"
            )
            if unread_only:
                sql += " AND n.read_at IS NULL"
            rows = conn.execute(sql + " ORDER BY n.updated_at DESC LIMIT 200", (org, email.lower())).fetchall()
            return [{**dict(row), "data": _loads(row["data"])} for row in rows]

        return await self._read(read)

    async def mark_read(self, org: str, email: str, notification_id: int, now: float) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE notifications SET read_at = ? WHERE id = ? AND org = ?"
                " AND user_id = (SELECT id FROM users WHERE org = ? AND email = ?)",
                (now, notification_id, org, org, email.lower()),
            )
            return bool(cursor.rowcount)

        return await self._write(write)

    async def create_incident(
        self, org: str, key: str | None, data: Mapping[str, Any], created_by: str | None, now: float
    ) -> dict[str, Any] | None:
        """None if an incident with that key exists already."""

        def write(conn: sqlite3.Connection) -> dict[str, Any] | None:
            cursor = conn.execute(
                "INSERT INTO incidents (org, key, data, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (org, key, _dumps(dict(data)), created_by, now, now),
            )
            if not cursor.rowcount:
                return None
            return {"id": cursor.lastrowid, "key": key, **dict(data), "created_by": created_by, "created_at": now}

        return await self._write(write)

    async def update_incident(self, org: str, key: str, changes: Mapping[str, Any], now: float) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT id, data FROM incidents WHERE org = ? AND key = ?", (org, key)).fetchone()
            if row is None:
                return False
            data = {**_loads(row["data"]), **dict(changes)}
            conn.execute("UPDATE incidents SET data = ?, updated_at = ? WHERE id = ?", (_dumps(data), now, row["id"]))
            return True

        return await self._write(write)

    async def incidents(self, org: str, incident_id: int | None = None) -> list[dict[str, Any]]:
        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            clauses, params = _filters([("org = ?", org), ("id = ?", incident_id)])
            rows = conn.execute(
                f"SELECT id, key, data, created_by, created_at, updated_at FROM incidents{clauses}"
                " ORDER BY id DESC LIMIT 200",
                params,
            ).fetchall()
            return [
                {**_loads(r["data"]), "id": r["id"], "key": r["key"], "created_by": r["created_by"]}
                | {"created_at": r["created_at"], "updated_at": r["updated_at"]}
                for r in rows
            ]

        return await self._read(read)

    # ---- teams

    async def provision_teams(
        self, teams: Sequence[tuple[str, str, str]], claims: Sequence[tuple[str, str, str, str]], now: float
    ) -> list[str]:
        """Make the configured teams and their claims current; returns claims of the API that lost to the file."""

        def write(conn: sqlite3.Connection) -> list[str]:
            for org, name, token_hash in teams:
                conn.execute(
                    "INSERT INTO teams (org, name, token_hash, provisioned, created_at) VALUES (?, ?, ?, 1, ?)"
                    " ON CONFLICT (org, name) DO UPDATE SET token_hash = excluded.token_hash, provisioned = 1",
                    (org, name, token_hash, now),
                )
            conn.execute("DELETE FROM identifiers WHERE origin = 'config'")
            overridden = []
            for org, kind, value, team in claims:
                row = conn.execute(
                    "SELECT team FROM identifiers WHERE org = ? AND kind = ? AND value = ?", (org, kind, value)
                ).fetchone()
                if row and row[0] != team:
                    overridden.append(f"{kind}={value} (claimed by {row[0]} through the API, given to {team})")
                conn.execute(
                    "INSERT INTO identifiers (org, kind, value, team, origin, created_at)"
                    " VALUES (?, ?, ?, ?, 'config', ?)"
                    " ON CONFLICT (org, kind, value) DO UPDATE SET team = excluded.team, origin = 'config'",
                    (org, kind, value, team, now),
                )
            return overridden

        return await self._write(write)

    async def team_by_token(self, token_hash: str) -> tuple[str, str] | None:
        row = await self._read(
            lambda conn: conn.execute("SELECT org, name FROM teams WHERE token_hash = ?", (token_hash,)).fetchone()
        )
        return (row[0], row[1]) if row else None

    async def claims_of(self, org: str, team: str) -> list[tuple[str, str, str]]:
        """(kind, value, origin) of every identifier the team owns."""
        rows = await self._read(
            lambda conn: conn.execute(
                "SELECT kind, value, origin FROM identifiers WHERE org = ? AND team = ? ORDER BY kind, value",
                (org, team),
            ).fetchall()
        )
        return [(r[0], r[1], r[2]) for r in rows]

    async def set_claims(
        self, org: str, team: str, claims: Mapping[str, Sequence[str]], now: float
    ) -> list[tuple[str, str, str]]:
        """Replace the team's claims of the given kinds; or, if any is another team's, change nothing
        and return the conflicts as (kind, value, owner)."""

        def write(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
            conflicts = []
            for kind, values in claims.items():
                for value in values:
                    row = conn.execute(
                        "SELECT team FROM identifiers WHERE org = ? AND kind = ? AND value = ?", (org, kind, value)
                    ).fetchone()
                    if row and row[0] != team:
                        conflicts.append((kind, value, row[0]))
            if conflicts:
                return conflicts
            for kind, values in claims.items():
                conn.execute(
                    "DELETE FROM identifiers WHERE org = ? AND team = ? AND kind = ? AND origin = 'api'",
                    (org, team, kind),
                )
                for value in values:
                    conn.execute(
                        "INSERT INTO identifiers (org, kind, value, team, origin, created_at)"
                        " VALUES (?, ?, ?, ?, 'api', ?) ON CONFLICT DO NOTHING",
                        (org, kind, value, team, now),
                    )
            return []

        return await self._write(write)

    async def find_teams(self, org: str, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str, str]]:
        """(kind, value, team) for each identifier of `pairs` that a team owns."""

        def read(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
            found = []
            for kind, value in pairs:
                row = conn.execute(
                    "SELECT team FROM identifiers WHERE org = ? AND kind = ? AND value = ?", (org, kind, value)
                ).fetchone()
                if row:
                    found.append((kind, value, row[0]))
            return found

        return await self._read(read)

    async def expire_waiting(self, now: float, older_than: float) -> list[tuple[str, str]]:
        """Dead-letter deliveries that waited for a link longer than `older_than` seconds: (id, target)."""

        def write(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = conn.execute(
                "SELECT id, target, waiting_for FROM deliveries WHERE status = 'waiting' AND created_at < ?",
                (now - older_than,),
            ).fetchall()
            for row in rows:
                want = _loads(row["waiting_for"]).get("want", ["?", "?"])
                conn.execute(
                    "UPDATE deliveries SET status = 'dead', updated_at = ?, last_error = ? WHERE id = ?",
                    (now, f"no {want[0]} {want[1]} was linked within {older_than:g} s", row["id"]),
                )
            return [(row["id"], row["target"]) for row in rows]

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
                attempts = conn.execute(
                    "DELETE FROM attempts WHERE id IN (SELECT id FROM attempts WHERE started_at < ? LIMIT ?)",
                    (attempts_before, limit),
                ).rowcount
            return events, attempts

        return await self._write(write)

    async def export_events(
        self, after_seq: int, limit: int, since: float | None = None, until: float | None = None, org: str | None = None
    ) -> list[tuple[int, EventRow, list[Delivery]]]:
        """A page of events in arrival order (after `after_seq`), each with its deliveries."""

        def read(conn: sqlite3.Connection) -> list[tuple[int, EventRow, list[Delivery]]]:
            clauses, params = _filters(
                [("seq > ?", after_seq), ("received_at >= ?", since), ("received_at < ?", until), ("org = ?", org)]
            )
            rows = conn.execute(
                f"SELECT seq, id, data, status, trace, routed_at FROM events{clauses} ORDER BY seq LIMIT ?",
                [*params, limit],
            ).fetchall()
            page = []
            for row in rows:
                deliveries = conn.execute(
                    "SELECT * FROM deliveries WHERE event_id = ? ORDER BY seq", (row["id"],)
                ).fetchall()
                page.append((row["seq"], _event_row(row), [_delivery(d) for d in deliveries]))
            return page

        return await self._read(read)

    async def next_due(self) -> float | None:
        row = await self._read(
            lambda conn: conn.execute("SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending'").fetchone()
        )
        return row[0] if row else None

    # ---- operators

    async def list_events(
        self,
        limit: int = 50,
        status: str | None = None,
        *,
        org: str | None = None,
        source: str | None = None,
        kind: str | None = None,
        endpoint: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[EventRow]:
        clauses, params = _filters(
            [
                ("org = ?", org),
                ("status = ?", status),
                ("source = ?", source),
                ("kind = ?", kind),
                ("endpoint = ?", endpoint),
                ("received_at >= ?", since),
                ("received_at < ?", until),
            ]
        )
        sql = f"SELECT data, status, trace, routed_at FROM events{clauses} ORDER BY seq DESC LIMIT ?"
        rows = await self._read(lambda conn: conn.execute(sql, [*params, limit]).fetchall())
        return [_event_row(row) for row in rows]

    async def get_event(self, event_id: str, org: str | None = None) -> EventRow | None:
        clauses, params = _filters([("id = ?", event_id), ("org = ?", org)])
        sql = f"SELECT data, status, trace, routed_at FROM events{clauses}"
        row = await self._read(lambda conn: conn.execute(sql, params).fetchone())
        return _event_row(row) if row else None

    async def list_deliveries(
        self,
        limit: int = 50,
        status: str | None = None,
        event_id: str | None = None,
        *,
        org: str | None = None,
        target: str | None = None,
        since: float | None = None,
    ) -> list[Delivery]:
        clauses, params = _filters(
            [
                ("status = ?", status),
                ("event_id = ?", event_id),
                ("org = ?", org),
                ("target = ?", target),
                ("created_at >= ?", since),
            ]
        )
        sql = f"SELECT * FROM deliveries{clauses} ORDER BY seq DESC LIMIT ?"
        rows = await self._read(lambda conn: conn.execute(sql, [*params, limit]).fetchall())
        return [_delivery(row) for row in rows]

    async def get_delivery(self, delivery_id: str, org: str | None = None) -> Delivery | None:
        clauses, params = _filters([("id = ?", delivery_id), ("org = ?", org)])
        row = await self._read(lambda conn: conn.execute(f"SELECT * FROM deliveries{clauses}", params).fetchone())
        return _delivery(row) if row else None

    async def attempts(self, delivery_id: str) -> list[Attempt]:
        rows = await self._read(
            lambda conn: conn.execute(
                "SELECT delivery_id, number, started_at, duration, outcome, status_code, message FROM attempts"
                " WHERE delivery_id = ? ORDER BY number, id",
                (delivery_id,),
            ).fetchall()
        )
        return [Attempt(*tuple(row)) for row in rows]

    async def replay(self, ids: Sequence[str], now: float, org: str | None = None) -> list[str]:
        """Make deliveries (or an event's work) pending again, due now, with a fresh budget."""

        def write(conn: sqlite3.Connection) -> list[str]:
            done = []
            for item in ids:
                rows = conn.execute(
                    "SELECT id FROM deliveries"
                    f" WHERE (id = ? OR (event_id = ? AND {NOT_A_REACTION})) AND status NOT IN ('in_flight', 'waiting')"
                    "   AND (? IS NULL OR org = ?)",
                    (item, item, org, org),
                ).fetchall()
                for row in rows:
                    conn.execute(
                        "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?,"
                        " budget_from = ?, last_error = NULL, updated_at = ? WHERE id = ?",
                        (now, now, now, row[0]),
                    )
                    done.append(row[0])
            return done

        return await self._write(write)

    async def counts(self) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            result = {f"events_{s}": n for s, n in conn.execute("SELECT status, COUNT(*) FROM events GROUP BY 1")}
            result.update(
                {f"deliveries_{s}": n for s, n in conn.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY 1")}
            )
            return result

        return await self._read(read)
