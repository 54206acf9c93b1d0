"""The store the suite runs against: SQLite (default) or the real PostgreSQL server.

`ALERTBRIDGE_TEST_BACKEND=postgres` runs every test on PostgreSQL at `ALERTBRIDGE_TEST_PG`
(default: 127.0.0.1:5432, trust auth, user `postgres`, else `root`). Each test gets a database of
its own with a random name, created here and dropped here: other people run tests against the
same server at the same time, so no name is fixed and no database this code did not create is
ever dropped.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

BACKEND = os.environ.get("ALERTBRIDGE_TEST_BACKEND", "sqlite").lower()
POSTGRES = BACKEND in ("postgres", "postgresql", "pg")
# A server-level URL (any database the user may connect to; new databases are made beside it).
CANDIDATES = (
    [os.environ["ALERTBRIDGE_TEST_PG"]]
    if os.environ.get("ALERTBRIDGE_TEST_PG")
    else [
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "postgresql://root@127.0.0.1:5432/postgres",
    ]
)


def _admin_url() -> str:
    """The first candidate URL that connects: the server-level connection that creates databases."""
    errors = []
    for url in filter(None, CANDIDATES):
        try:
            with psycopg.connect(url, connect_timeout=5):
                return url
        except psycopg.Error as exc:
            errors.append(f"{url}: {str(exc).strip()}")
    raise RuntimeError("PostgreSQL is not reachable for the tests:\n" + "\n".join(errors))


_admin: list[str] = []
_lock = threading.Lock()


def admin_url() -> str:
    with _lock:
        if not _admin:
            _admin.append(_admin_url())
        return _admin[0]


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


class Database:
    """A PostgreSQL database made for one test, dropped by `drop` (only this one)."""

    def __init__(self) -> None:
        self.name = f"alertbridge_test_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(admin_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.url = _with_database(admin_url(), self.name)

    def drop(self) -> None:
        with psycopg.connect(admin_url(), autocommit=True) as conn:
            # FORCE: a replica killed with SIGKILL may leave connections the server has not noticed yet.
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))


@contextlib.contextmanager
def store_url(workdir: Path) -> Iterator[str]:
    """The store URL for a test whose files live in `workdir`: a SQLite file there, or a fresh database."""
    if not POSTGRES:
        yield f"sqlite:///{workdir / 'alertbridge.db'}"
        return
    database = Database()
    try:
        yield database.url
    finally:
        database.drop()


def stored_bytes(url: str) -> bytes:
    """Everything the store holds, as bytes: to show that a secret is not in it."""
    if url.startswith("sqlite:"):
        path = Path(url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))
    chunks = []
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        for (table,) in tables:
            for row in conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))):
                for value in row:
                    chunks.append(value if isinstance(value, bytes) else str(value).encode())
    return b"\n".join(chunks)


@contextlib.contextmanager
def writes_blocked(url: str) -> Iterator[None]:
    """Another process holds the lock ingress needs: nothing can be stored until the block ends."""
    if url.startswith("sqlite:"):
        import sqlite3

        blocker = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            blocker.rollback()
            blocker.close()
        return
    with psycopg.connect(url) as conn:
        conn.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()
