"""The PostgreSQL schema: the same tables as SQLite's (store/sqlite.py), version for version, with
PostgreSQL's types (bytea for the event, json for JSON text, kept as written; double precision for
times; identity columns), applied under an advisory lock so that replicas starting together do not race."""

from __future__ import annotations

from typing import Any

import psycopg

from alertbridge.store.migrations import summary

MIGRATION_LOCK = 0x616C657274  # pg_advisory_lock key: "alert"

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE events (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text NOT NULL UNIQUE,
            org text NOT NULL,
            endpoint text NOT NULL,
            source text NOT NULL,
            kind text NOT NULL,
            delivery_key text NOT NULL,
            subject_id text,
            received_at double precision NOT NULL,
            status text NOT NULL,
            data bytea NOT NULL,
            trace json,
            routed_at double precision,
            UNIQUE (org, endpoint, delivery_key)
        );
        CREATE INDEX events_unrouted ON events (seq) WHERE status = 'received';
        CREATE TABLE deliveries (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text NOT NULL UNIQUE,
            org text NOT NULL,
            event_id text NOT NULL REFERENCES events (id),
            route text NOT NULL,
            target text NOT NULL,
            action text NOT NULL,
            fields json NOT NULL,
            idempotency_key text NOT NULL,
            order_key text,
            status text NOT NULL,
            attempts integer NOT NULL DEFAULT 0,
            next_attempt_at double precision NOT NULL,
            claim text,
            claimed_until double precision,
            created_at double precision NOT NULL,
            budget_from double precision NOT NULL,
            updated_at double precision NOT NULL,
            last_error text,
            result json,
            UNIQUE (org, idempotency_key)
        );
        CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
        CREATE INDEX deliveries_order ON deliveries (order_key, seq) WHERE order_key IS NOT NULL;
        CREATE INDEX deliveries_event ON deliveries (event_id);
        CREATE TABLE attempts (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            delivery_id text NOT NULL REFERENCES deliveries (id),
            number integer NOT NULL,
            started_at double precision NOT NULL,
            duration double precision NOT NULL,
            outcome text NOT NULL,
            status_code integer,
            message text NOT NULL
        );
        CREATE INDEX attempts_delivery ON attempts (delivery_id, number);
        """,
    ),
    (
        2,
        """
        ALTER TABLE deliveries ADD COLUMN waiting_for json;
        CREATE INDEX deliveries_waiting ON deliveries (org, created_at) WHERE status = 'waiting';
        CREATE TABLE links (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            org text NOT NULL,
            a_system text NOT NULL, a_type text NOT NULL, a_id text NOT NULL,
            b_system text NOT NULL, b_type text NOT NULL, b_id text NOT NULL,
            delivery_id text,
            created_at double precision NOT NULL,
            UNIQUE (org, a_system, a_type, a_id, b_system, b_type, b_id)
        );
        CREATE INDEX links_a ON links (org, a_system, a_type, a_id);
        CREATE INDEX links_b ON links (org, b_system, b_type, b_id);
        CREATE TABLE echoes (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            org text NOT NULL,
            system text NOT NULL, type text NOT NULL, object_id text NOT NULL,
            change text NOT NULL,
            delivery_id text NOT NULL,
            target text NOT NULL,
            created_at double precision NOT NULL,
            consumed_by text
        );
        CREATE INDEX echoes_open ON echoes (org, system, type, object_id, change) WHERE consumed_by IS NULL;
        CREATE INDEX echoes_delivery ON echoes (delivery_id);
        """,
    ),
    (
        3,
        """
        CREATE TABLE teams (
            org text NOT NULL,
            name text NOT NULL,
            token_hash text NOT NULL UNIQUE,
            provisioned integer NOT NULL DEFAULT 1,
            created_at double precision NOT NULL,
            PRIMARY KEY (org, name)
        );
        CREATE TABLE identifiers (
            org text NOT NULL,
            kind text NOT NULL,
            value text NOT NULL,
            team text NOT NULL,
            origin text NOT NULL,
            created_at double precision NOT NULL,
            PRIMARY KEY (org, kind, value)
        );
        CREATE INDEX identifiers_team ON identifiers (org, team);
        """,
    ),
    (
        4,
        """
        CREATE TABLE api_tokens (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            org text NOT NULL,
            name text NOT NULL,
            role text NOT NULL,
            token_hash text NOT NULL UNIQUE,
            created_at double precision NOT NULL
        );
        CREATE INDEX events_org ON events (org, seq);
        CREATE INDEX deliveries_org ON deliveries (org, seq);
        """,
    ),
    (
        5,
        """
        ALTER TABLE api_tokens ADD COLUMN user_email text;
        CREATE TABLE users (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            org text NOT NULL,
            email text NOT NULL,
            password_hash text NOT NULL,
            role text NOT NULL,
            created_at double precision NOT NULL,
            UNIQUE (org, email)
        );
        CREATE TABLE notifications (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            org text NOT NULL,
            user_id bigint NOT NULL REFERENCES users (id),
            key text NOT NULL,
            title text NOT NULL,
            body text,
            link text,
            data json NOT NULL,
            event_id text,
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL,
            read_at double precision,
            UNIQUE (org, user_id, key)
        );
        CREATE INDEX notifications_user ON notifications (org, user_id, updated_at);
        CREATE TABLE incidents (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            org text NOT NULL,
            key text,
            data json NOT NULL,
            created_by text,
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL
        );
        CREATE UNIQUE INDEX incidents_key ON incidents (org, key) WHERE key IS NOT NULL;
        """,
    ),
    (
        6,
        """
        CREATE TABLE integrations (
            org text NOT NULL,
            kind text NOT NULL,
            config json NOT NULL,
            updated_at double precision NOT NULL,
            updated_by text,
            PRIMARY KEY (org, kind)
        );
        """,
    ),
    (
        7,
        """
        CREATE TABLE sessions (
            id_hash text PRIMARY KEY,
            org text NOT NULL,
            email text NOT NULL,
            role text NOT NULL,
            csrf text NOT NULL,
            expires_at double precision NOT NULL
        );
        """,
    ),
    (
        8,
        """
        ALTER TABLE events ADD COLUMN claim text;
        ALTER TABLE events ADD COLUMN claimed_until double precision;
        CREATE INDEX deliveries_claimed ON deliveries (claimed_until) WHERE status = 'in_flight';
        """,
    ),
    (
        9,
        # Endpoints and targets made through the admin API (the file's are not stored).
        """
        CREATE TABLE objects (
            org text NOT NULL,
            kind text NOT NULL,
            name text NOT NULL,
            config json NOT NULL,
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL,
            updated_by text,
            PRIMARY KEY (org, kind, name)
        );
        """,
    ),
    (
        10,
        # A delivery's place in the send order is (its event's seq, its own seq): kept on the row, an
        # earlier unfinished delivery of the same order key is one index probe, not a join per row.
        """
        ALTER TABLE deliveries ADD COLUMN event_seq bigint;
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
        ALTER TABLE attempts ADD COLUMN target text;
        UPDATE attempts SET target = (SELECT target FROM deliveries WHERE deliveries.id = attempts.delivery_id);
        CREATE INDEX attempts_sent ON attempts (target, started_at);
        """,
    ),
    (
        12,
        # What an expected echo must carry to be ours: a digest of the content we wrote (a note's
        # text) and the name we act under there, where the system's webhook reports them.
        """
        ALTER TABLE echoes ADD COLUMN fingerprint text;
        ALTER TABLE echoes ADD COLUMN actor text;
        """,
    ),
    (
        13,
        # Where each alert is in its episodes (fired, resolved, fired again): the latest episode's
        # number and whether it is open, and the event that last moved it.
        """
        CREATE TABLE episodes (
            org text NOT NULL,
            alert text NOT NULL,
            number integer NOT NULL,
            state text NOT NULL,
            event_id text NOT NULL,
            updated_at double precision NOT NULL,
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
            id text PRIMARY KEY,
            org text NOT NULL,
            matchers json NOT NULL,
            starts_at double precision NOT NULL,
            ends_at double precision NOT NULL,
            created_by text NOT NULL,
            comment text NOT NULL,
            updated_at double precision NOT NULL,
            recurrence json,
            name text
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
        ALTER TABLE episodes ADD COLUMN labels json;
        ALTER TABLE episodes ADD COLUMN opened_at double precision;
        ALTER TABLE events ADD COLUMN repeat_at double precision;
        CREATE INDEX episodes_open ON episodes (org) WHERE state = 'open';
        """,
    ),
]


async def migrate(conn: psycopg.AsyncConnection[Any]) -> list[tuple[int, str]]:
    """Apply the migrations this database has not seen, one transaction each, under an advisory
    lock held for the whole run so that replicas starting together do not race; returns
    (version, summary) of each one applied."""
    await conn.set_autocommit(True)
    await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cursor = await conn.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in await cursor.fetchall()}
        applied = []
        for version, sql in MIGRATIONS:
            if version in done:
                continue
            async with conn.transaction():
                for statement in sql.split(";"):
                    if statement.strip():
                        await conn.execute(statement)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied.append((version, summary(sql)))
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
