"""The SQL both backends run, written once with named parameters (`:name`).

sqlite3 takes `:name` as it is; psycopg takes `%(name)s`, so `POSTGRES` is the same text converted
once, when this module is imported, never per call. A backend picks its `Statements` and uses
only those. The rows that come back are read by column name (a `sqlite3.Row` or psycopg's dict row),
and JSON columns through the backend's `decode` (text on SQLite, already decoded on PostgreSQL).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from alertbridge import events as ev
from alertbridge.store.base import ECHO_COLUMNS, NOT_A_REACTION, Delivery, Episode, EpisodeStep, EventRow, Ref

Row = Any  # a row read by column name: sqlite3.Row or psycopg's dict_row
Decode = Callable[[Any], Any]  # a JSON column's value as stored → Python

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def pyformat(sql: str) -> str:
    """`:name` → `%(name)s` (and a literal `%` → `%%`), for psycopg; `::type` casts stay."""
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))


# The order check of a claim, on the row `{row}`: it may go unless an earlier delivery with its order key
# is unfinished; earlier means of an earlier event, then made earlier (the router may write a later
# event's deliveries first).
IN_ORDER = (
    "({row}.order_key IS NULL OR NOT EXISTS ("
    "SELECT 1 FROM deliveries p WHERE p.order_key = {row}.order_key"
    " AND p.status IN ('pending', 'in_flight', 'waiting') AND (p.event_seq, p.seq) < ({row}.event_seq, {row}.seq)))"
)


@dataclass(frozen=True)
class Statements:
    """Every statement the two backends share, in one placeholder style (`param` formats one name)."""

    param: str = ":{}"

    # ---- events and deliveries as operators read them
    event_rows: str = "SELECT data, status, trace, routed_at FROM events"
    event_page: str = "SELECT seq, id, data, status, trace, routed_at FROM events"
    newest_first: str = " ORDER BY seq DESC LIMIT :limit"
    oldest_first: str = " ORDER BY seq LIMIT :limit"
    deliveries_of: str = "SELECT * FROM deliveries WHERE event_id = :event_id ORDER BY seq"
    delivery_rows: str = "SELECT * FROM deliveries"
    attempts: str = (
        "SELECT delivery_id, number, started_at, duration, outcome, status_code, message FROM attempts"
        " WHERE delivery_id = :delivery_id ORDER BY number, id"
    )
    replay: str = (
        "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = :now,"
        " budget_from = :now, last_error = NULL, updated_at = :now"
        f" WHERE (id = :item OR (event_id = :item AND {NOT_A_REACTION}))"
        "   AND status NOT IN ('in_flight', 'waiting')"
        "   AND (CAST(:org AS text) IS NULL OR org = :org) RETURNING id, seq"
    )

    # ---- the router
    consume_echo: str = "UPDATE echoes SET consumed_by = :event_id WHERE id = :id AND consumed_by IS NULL"
    open_echoes: str = (
        f"SELECT {ECHO_COLUMNS} FROM echoes"
        " WHERE org = :org AND system = :system AND type = :type AND object_id = :object_id"
        "   AND change = :change AND consumed_by IS NULL AND created_at >= :since ORDER BY id"
    )
    links_of: str = (
        "SELECT b_system AS s, b_type AS t, b_id AS i FROM links"
        " WHERE org = :org AND a_system = :system AND a_type = :type AND a_id = :id"
        " UNION SELECT a_system, a_type, a_id FROM links"
        " WHERE org = :org AND b_system = :system AND b_type = :type AND b_id = :id"
    )

    # An alert's episodes: read before routing, moved with the decision only from the state read.
    episode: str = "SELECT number, state, opened_at, event_id FROM episodes WHERE org = :org AND alert = :alert"
    episode_step: str = (
        "INSERT INTO episodes (org, alert, number, state, event_id, updated_at, labels, opened_at)"
        " VALUES (:org, :alert, :number, :state, :event_id, :now, :labels, :opened_at)"
        " ON CONFLICT (org, alert) DO UPDATE SET number = excluded.number, state = excluded.state,"
        " event_id = excluded.event_id, updated_at = excluded.updated_at,"
        " labels = COALESCE(excluded.labels, episodes.labels),"
        " opened_at = COALESCE(excluded.opened_at, episodes.opened_at)"
        " WHERE episodes.number = :was_number AND episodes.state = :was_state"
    )
    # The alerts that fire now, with what inhibit rules match them by.
    open_alerts: str = "SELECT org, alert, event_id, labels FROM episodes WHERE state = 'open' AND labels IS NOT NULL"
    # An echo a decision took, given back because the decision is not recorded after all.
    release_echo: str = "UPDATE echoes SET consumed_by = NULL WHERE id = :id AND consumed_by = :event_id"

    # ---- the dispatcher
    holder: str = "SELECT id FROM deliveries WHERE org = :org AND idempotency_key = :key"
    expect_echo: str = (
        "INSERT INTO echoes (org, system, type, object_id, change, fingerprint, actor, delivery_id, target,"
        " created_at) VALUES (:org, :system, :type, :object_id, :change, :fingerprint, :actor, :delivery_id,"
        " :target, :now)"
    )
    forget_echoes: str = "DELETE FROM echoes WHERE delivery_id = :delivery_id AND consumed_by IS NULL"
    link: str = (
        "INSERT INTO links (org, a_system, a_type, a_id, b_system, b_type, b_id, delivery_id, created_at)"
        " VALUES (:org, :a_system, :a_type, :a_id, :b_system, :b_type, :b_id, :delivery_id, :now)"
        " ON CONFLICT DO NOTHING"
    )
    waiting: str = "SELECT id, fields, order_key, waiting_for FROM deliveries WHERE org = :org AND status = 'waiting'"
    release: str = (
        "UPDATE deliveries SET status = 'pending', fields = :fields, order_key = :order_key, next_attempt_at = :now,"
        " budget_from = :now, updated_at = :now, waiting_for = NULL WHERE id = :id"
    )
    expiring: str = "SELECT id, target, waiting_for FROM deliveries WHERE status = 'waiting' AND created_at < :before"
    expire: str = "UPDATE deliveries SET status = 'dead', updated_at = :now, last_error = :error WHERE id = :id"

    # ---- teams
    upsert_team: str = (
        "INSERT INTO teams (org, name, token_hash, provisioned, created_at) VALUES (:org, :name, :token_hash, 1, :now)"
        " ON CONFLICT (org, name) DO UPDATE SET token_hash = excluded.token_hash, provisioned = 1"
    )
    forget_config_claims: str = "DELETE FROM identifiers WHERE origin = 'config'"
    owner: str = "SELECT team FROM identifiers WHERE org = :org AND kind = :kind AND value = :value"
    config_claim: str = (
        "INSERT INTO identifiers (org, kind, value, team, origin, created_at)"
        " VALUES (:org, :kind, :value, :team, 'config', :now)"
        " ON CONFLICT (org, kind, value) DO UPDATE SET team = excluded.team, origin = 'config'"
    )
    forget_api_claims: str = (
        "DELETE FROM identifiers WHERE org = :org AND team = :team AND kind = :kind AND origin = 'api'"
    )
    api_claim: str = (
        "INSERT INTO identifiers (org, kind, value, team, origin, created_at)"
        " VALUES (:org, :kind, :value, :team, 'api', :now) ON CONFLICT DO NOTHING"
    )
    team_by_token: str = "SELECT org, name FROM teams WHERE token_hash = :token_hash"
    claims_of: str = (
        "SELECT kind, value, origin FROM identifiers WHERE org = :org AND team = :team ORDER BY kind, value"
    )

    # ---- retention
    purge_attempts: str = (
        "DELETE FROM attempts WHERE id IN (SELECT id FROM attempts WHERE started_at < :before LIMIT :limit)"
    )

    # ---- API tokens, users, console sessions
    create_token: str = (
        "INSERT INTO api_tokens (org, name, role, token_hash, created_at, user_email)"
        " VALUES (:org, :name, :role, :token_hash, :now, :user_email)"
    )
    token_lookup: str = "SELECT org, role, name, user_email FROM api_tokens WHERE token_hash = :token_hash"
    create_user: str = (
        "INSERT INTO users (org, email, password_hash, role, created_at)"
        " VALUES (:org, :email, :password_hash, :role, :now) ON CONFLICT (org, email) DO NOTHING"
    )
    user: str = "SELECT id, org, email, role, password_hash FROM users WHERE org = :org AND email = :email"
    find_user: str = "SELECT org, email, role, password_hash FROM users WHERE email = :email ORDER BY id"
    create_session: str = (
        "INSERT INTO sessions (id_hash, org, email, role, csrf, expires_at)"
        " VALUES (:id_hash, :org, :email, :role, :csrf, :expires_at)"
    )
    session: str = "SELECT org, email, role, csrf FROM sessions WHERE id_hash = :id_hash AND expires_at > :now"
    end_session: str = "DELETE FROM sessions WHERE id_hash = :id_hash"

    # ---- integrations and objects made through the API
    save_integration: str = (
        "INSERT INTO integrations (org, kind, config, updated_at, updated_by) VALUES (:org, :kind, :config, :now, :by)"
        " ON CONFLICT (org, kind) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at,"
        " updated_by = excluded.updated_by"
    )
    integrations: str = "SELECT org, kind, config FROM integrations ORDER BY org, kind"
    save_object: str = (
        "INSERT INTO objects (org, kind, name, config, created_at, updated_at, updated_by)"
        " VALUES (:org, :kind, :name, :config, :now, :now, :by) ON CONFLICT (org, kind, name) DO UPDATE SET"
        " config = excluded.config, updated_at = excluded.updated_at, updated_by = excluded.updated_by"
    )
    objects: str = "SELECT org, kind, name, config, created_at, updated_at, updated_by FROM objects"
    objects_order: str = " ORDER BY created_at, name"
    delete_object: str = "DELETE FROM objects WHERE org = :org AND kind = :kind AND name = :name"

    # ---- silences and maintenance windows made through the API
    add_silence: str = (
        "INSERT INTO silences"
        " (id, org, matchers, starts_at, ends_at, created_by, comment, updated_at, recurrence, name)"
        " VALUES (:id, :org, :matchers, :starts_at, :ends_at, :created_by, :comment, :now, :recurrence, :name)"
    )
    silence_rows: str = (
        "SELECT id, org, matchers, starts_at, ends_at, created_by, comment, updated_at, recurrence, name FROM silences"
    )
    silences_order: str = " ORDER BY starts_at DESC, id LIMIT :limit"
    active_silences: str = (
        "SELECT id, org, matchers, starts_at, ends_at, created_by, comment, updated_at, recurrence, name"
        " FROM silences WHERE ends_at > :now AND starts_at <= :now ORDER BY starts_at, id"
    )
    # Expiring ends it now (and a silence that had not begun begins now too, as in Alertmanager).
    expire_silence: str = (
        "UPDATE silences SET ends_at = :now, updated_at = :now,"
        " starts_at = CASE WHEN starts_at > :now THEN :now ELSE starts_at END"
        " WHERE id = :id AND org = :org AND ends_at > :now"
    )

    # ---- the inbox
    notify_all: str = (
        "INSERT INTO notifications (org, user_id, key, title, body, link, data, event_id, created_at, updated_at)"
        " SELECT :org, id, :key, :title, :body, :link, :data, :event_id, :now, :now FROM users WHERE org = :org"
        " ON CONFLICT (org, user_id, key) DO UPDATE SET title = excluded.title, body = excluded.body,"
        " link = excluded.link, data = excluded.data, event_id = excluded.event_id,"
        " updated_at = excluded.updated_at, read_at = NULL"
    )
    notifications: str = (
        "SELECT n.id, n.key, n.title, n.body, n.link, n.data, n.event_id, n.created_at, n.updated_at,"
        " n.read_at FROM notifications n JOIN users u ON u.id = n.user_id"
        " WHERE n.org = :org AND u.email = :email"
    )
    unread_only: str = " AND n.read_at IS NULL"
    notifications_order: str = " ORDER BY n.updated_at DESC, n.id DESC LIMIT 200"
    mark_read: str = (
        "UPDATE notifications SET read_at = :now WHERE id = :id AND org = :org"
        " AND user_id = (SELECT id FROM users WHERE org = :org AND email = :email)"
    )
    create_incident: str = (
        "INSERT INTO incidents (org, key, data, created_by, created_at, updated_at)"
        " VALUES (:org, :key, :data, :created_by, :now, :now) ON CONFLICT DO NOTHING RETURNING id"
    )
    incident_data: str = "SELECT id, data FROM incidents WHERE org = :org AND key = :key"
    update_incident: str = "UPDATE incidents SET data = :data, updated_at = :now WHERE id = :id"
    incidents: str = "SELECT id, key, data, created_by, created_at, updated_at FROM incidents"
    incidents_order: str = " ORDER BY id DESC LIMIT 200"


SQLITE = Statements()
POSTGRES = replace(
    SQLITE,
    param="%({})s",
    **{f.name: pyformat(getattr(SQLITE, f.name)) for f in fields(Statements) if f.name != "param"},
)


def where(param: str, conditions: Sequence[tuple[str, str, Any]]) -> tuple[str, dict[str, Any]]:
    """A WHERE clause of `column op <name>` for each (column op, name, value) whose value is given."""
    used = [(test, name, value) for test, name, value in conditions if value is not None]
    if not used:
        return "", {}
    clause = " WHERE " + " AND ".join(f"{test} {param.format(name)}" for test, name, _ in used)
    return clause, {name: value for _, name, value in used}


def delivery(row: Row, decode: Decode) -> Delivery:
    """A delivery row (with the claim's `event_received_at` and `event_data` where it was joined)."""
    keys = row.keys()
    return Delivery(
        id=row["id"],
        org=row["org"],
        event_id=row["event_id"],
        route=row["route"],
        target=row["target"],
        action=row["action"],
        fields=decode(row["fields"]),
        idempotency_key=row["idempotency_key"],
        order_key=row["order_key"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"],
        budget_from=row["budget_from"],
        updated_at=row["updated_at"],
        last_error=row["last_error"],
        result=decode(row["result"]) if row["result"] else None,
        event_received_at=row["event_received_at"] if "event_received_at" in keys else None,
        claim=row["claim"],
        event=ev.decode(row["event_data"]) if "event_data" in keys and row["event_data"] is not None else None,
        waiting_for=decode(row["waiting_for"]) if row["waiting_for"] else None,
    )


def event_row(row: Row, decode: Decode) -> EventRow:
    return EventRow(
        event=ev.decode(row["data"]),
        status=row["status"],
        trace=decode(row["trace"]) if row["trace"] else None,
        routed_at=row["routed_at"],
    )


def episode(row: Row | None) -> Episode:
    """An alert's episode row (or none) as the router reads it."""
    return (
        Episode(row["number"], row["state"] == "open", row["opened_at"], event_id=row["event_id"]) if row else Episode()
    )


def episode_params(step: EpisodeStep, now: float) -> dict[str, Any]:
    """The parameters of `Statements.episode_step`: the step is taken only from `was`. A row never has
    number 0, so an alert the router saw without one is inserted only if still without one."""
    return {
        "org": step.org,
        "alert": step.alert,
        "number": step.now.number,
        "state": step.now.state,
        "event_id": step.event_id,
        "now": now,
        "was_number": step.was.number,
        "was_state": step.was.state,
        "labels": None if step.labels is None else json.dumps(dict(step.labels)),
        # An episode that opens now (a restart too: one open while another was) starts its
        # repeat_interval now; any other step keeps the time.
        "opened_at": now if step.now.open and (not step.was.open or step.now.number != step.was.number) else None,
    }


def link_params(org: str, a: Ref, b: Ref, delivery_id: str, now: float) -> dict[str, Any]:
    """The parameters of `Statements.link` for the pair (a, b)."""
    return {
        "org": org,
        "a_system": a[0],
        "a_type": a[1],
        "a_id": a[2],
        "b_system": b[0],
        "b_type": b[1],
        "b_id": b[2],
        "delivery_id": delivery_id,
        "now": now,
    }


def released_by(waiting_for: dict[str, Any], a: Ref, b: Ref) -> tuple[str, str] | None:
    """(marker, linked id) if the new link (a, b) is the one a waiting delivery wants, else None."""
    refs = {tuple(r) for r in waiting_for["refs"]}
    want = tuple(waiting_for["want"])
    found = b if a in refs and b[:2] == want else a if b in refs and a[:2] == want else None
    return None if found is None else (waiting_for["marker"], found[2])


def expired_why(waiting_for: dict[str, Any] | None, older_than: float) -> str:
    """The dead letter's reason for a delivery that waited too long for a link."""
    want = (waiting_for or {}).get("want", ["?", "?"])
    return f"no {want[0]} {want[1]} was linked within {older_than:g} s"
