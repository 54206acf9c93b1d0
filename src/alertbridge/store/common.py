"""`SQLStore`: the methods both backends run the same way, one statement each.

A backend gives the statements in its placeholder style (`sql.SQLITE`, `sql.POSTGRES`), how JSON goes
in and out, and four ways to run one statement in its own transaction: read many rows, read one,
write (rows changed), write and read back one row. `notify` names the channel that other replicas
are told on when the write commits; a backend that serves one process ignores it. What a backend
does its own way (its writer, its claims, its batches) stays in its module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from alertbridge.store import sql
from alertbridge.store.base import Attempt, Delivery, Episode, EventRow, SavedObject

CONFIG_CHANNEL = "alertbridge_config"  # endpoints, targets or integrations saved through the API


class SQLStore(ABC):
    q: sql.Statements

    @staticmethod
    @abstractmethod
    def _decode(value: Any) -> Any:
        """A JSON column's value as the driver returns it → Python."""

    @staticmethod
    @abstractmethod
    def _encode(value: Any) -> str:
        """Python → the JSON text a JSON column takes."""

    @abstractmethod
    async def _all(self, statement: str, params: Mapping[str, Any]) -> list[sql.Row]: ...

    @abstractmethod
    async def _one(self, statement: str, params: Mapping[str, Any]) -> sql.Row | None: ...

    @abstractmethod
    async def _exec(self, statement: str, params: Mapping[str, Any], notify: str | None = None) -> int: ...

    @abstractmethod
    async def _exec_one(
        self, statement: str, params: Mapping[str, Any], notify: str | None = None
    ) -> sql.Row | None: ...

    # ---- the router

    async def episode(self, org: str, alert: str) -> Episode:
        return sql.episode(await self._one(self.q.episode, {"org": org, "alert": alert}))

    async def open_alerts(self) -> list[dict[str, Any]]:
        rows = await self._all(self.q.open_alerts, {})
        return [{**dict(row), "labels": self._decode(row["labels"])} for row in rows]

    async def active_silences(self, now: float) -> list[dict[str, Any]]:
        return [self._silence(row) for row in await self._all(self.q.active_silences, {"now": now})]

    # ---- silences

    async def add_silence(self, silence: Mapping[str, Any], now: float) -> None:
        params = {
            **silence,
            "matchers": self._encode(silence["matchers"]),
            "recurrence": None if silence.get("recurrence") is None else self._encode(silence["recurrence"]),
            "name": silence.get("name"),
            "now": now,
        }
        await self._exec(self.q.add_silence, params)

    async def silences(self, org: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        clauses, params = sql.where(self.q.param, [("org =", "org", org)])
        rows = await self._all(self.q.silence_rows + clauses + self.q.silences_order, {**params, "limit": limit})
        return [self._silence(row) for row in rows]

    async def silence(self, silence_id: str, org: str | None = None) -> dict[str, Any] | None:
        clauses, params = sql.where(self.q.param, [("id =", "id", silence_id), ("org =", "org", org)])
        row = await self._one(self.q.silence_rows + clauses, params)
        return self._silence(row) if row else None

    async def expire_silence(self, org: str, silence_id: str, now: float) -> bool:
        return await self._exec(self.q.expire_silence, {"id": silence_id, "org": org, "now": now}) > 0

    def _silence(self, row: sql.Row) -> dict[str, Any]:
        found = dict(row)
        found["matchers"] = self._decode(found["matchers"])
        found["recurrence"] = None if found["recurrence"] is None else self._decode(found["recurrence"])
        return found

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
        clauses, params = sql.where(
            self.q.param,
            [
                ("org =", "org", org),
                ("status =", "status", status),
                ("source =", "source", source),
                ("kind =", "kind", kind),
                ("endpoint =", "endpoint", endpoint),
                ("received_at >=", "since", since),
                ("received_at <", "until", until),
            ],
        )
        rows = await self._all(self.q.event_rows + clauses + self.q.newest_first, {**params, "limit": limit})
        return [sql.event_row(row, self._decode) for row in rows]

    async def get_event(self, event_id: str, org: str | None = None) -> EventRow | None:
        clauses, params = sql.where(self.q.param, [("id =", "id", event_id), ("org =", "org", org)])
        row = await self._one(self.q.event_rows + clauses, params)
        return sql.event_row(row, self._decode) if row else None

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
        clauses, params = sql.where(
            self.q.param,
            [
                ("status =", "status", status),
                ("event_id =", "event_id", event_id),
                ("org =", "org", org),
                ("target =", "target", target),
                ("created_at >=", "since", since),
            ],
        )
        rows = await self._all(self.q.delivery_rows + clauses + self.q.newest_first, {**params, "limit": limit})
        return [sql.delivery(row, self._decode) for row in rows]

    async def get_delivery(self, delivery_id: str, org: str | None = None) -> Delivery | None:
        clauses, params = sql.where(self.q.param, [("id =", "id", delivery_id), ("org =", "org", org)])
        row = await self._one(self.q.delivery_rows + clauses, params)
        return sql.delivery(row, self._decode) if row else None

    async def attempts(self, delivery_id: str) -> list[Attempt]:
        rows = await self._all(self.q.attempts, {"delivery_id": delivery_id})
        return [Attempt(**dict(row)) for row in rows]

    def _export_page(
        self, after_seq: int, limit: int, since: float | None, until: float | None, org: str | None
    ) -> tuple[str, dict[str, Any]]:
        """`export_events`' statement and parameters, alike on both backends; each runs it (and reads
        the deliveries of each event) in its own kind of transaction."""
        clauses, params = sql.where(
            self.q.param,
            [
                ("seq >", "after", after_seq),
                ("received_at >=", "since", since),
                ("received_at <", "until", until),
                ("org =", "org", org),
            ],
        )
        return self.q.event_page + clauses + self.q.oldest_first, {**params, "limit": limit}

    # ---- teams

    async def team_by_token(self, token_hash: str) -> tuple[str, str] | None:
        row = await self._one(self.q.team_by_token, {"token_hash": token_hash})
        return (row["org"], row["name"]) if row else None

    async def claims_of(self, org: str, team: str) -> list[tuple[str, str, str]]:
        """(kind, value, origin) of every identifier the team owns."""
        rows = await self._all(self.q.claims_of, {"org": org, "team": team})
        return [(r["kind"], r["value"], r["origin"]) for r in rows]

    # ---- API tokens and users

    async def create_token(
        self, org: str, name: str, role: str, token_hash: str, now: float, user_email: str | None = None
    ) -> None:
        params = {"org": org, "name": name, "role": role, "token_hash": token_hash, "now": now}
        await self._exec(self.q.create_token, {**params, "user_email": user_email})

    async def token_lookup(self, token_hash: str) -> tuple[str, str, str, str | None] | None:
        """(org, role, name, user email or None) of an API token, by its hash."""
        row = await self._one(self.q.token_lookup, {"token_hash": token_hash})
        return (row["org"], row["role"], row["name"], row["user_email"]) if row else None

    async def create_user(self, org: str, email: str, password_hash: str, role: str, now: float) -> bool:
        """False if the org already has a user with that email."""
        params = {"org": org, "email": email.lower(), "password_hash": password_hash, "role": role, "now": now}
        return bool(await self._exec(self.q.create_user, params))

    async def user(self, org: str, email: str) -> dict[str, Any] | None:
        row = await self._one(self.q.user, {"org": org, "email": email.lower()})
        return dict(row) if row else None

    async def find_user(self, email: str) -> list[dict[str, Any]]:
        """Every org's user with this email, oldest first (sign-in asks for the org when there are several)."""
        return [dict(row) for row in await self._all(self.q.find_user, {"email": email.lower()})]

    # ---- console sessions

    async def create_session(self, id_hash: str, org: str, email: str, role: str, csrf: str, expires_at: float) -> None:
        params = {"id_hash": id_hash, "org": org, "email": email, "role": role, "csrf": csrf}
        await self._exec(self.q.create_session, {**params, "expires_at": expires_at})

    async def session(self, id_hash: str, now: float) -> dict[str, Any] | None:
        row = await self._one(self.q.session, {"id_hash": id_hash, "now": now})
        return dict(row) if row else None

    async def end_session(self, id_hash: str) -> None:
        await self._exec(self.q.end_session, {"id_hash": id_hash})

    # ---- integrations (settings changed through the API; secrets arrive here already encrypted)

    async def save_integration(
        self, org: str, kind: str, config: Mapping[str, Any], now: float, by: str | None
    ) -> None:
        params = {"org": org, "kind": kind, "config": self._encode(dict(config)), "now": now, "by": by}
        await self._exec(self.q.save_integration, params, notify=CONFIG_CHANNEL)

    async def integrations(self) -> list[tuple[str, str, dict[str, Any]]]:
        rows = await self._all(self.q.integrations, {})
        return [(r["org"], r["kind"], self._decode(r["config"])) for r in rows]

    # ---- endpoints and targets made through the API (secrets arrive here already sealed)

    async def save_object(
        self, org: str, kind: str, name: str, config: Mapping[str, Any], now: float, by: str | None
    ) -> None:
        params = {"org": org, "kind": kind, "name": name, "config": self._encode(dict(config)), "now": now, "by": by}
        await self._exec(self.q.save_object, params, notify=CONFIG_CHANNEL)

    async def objects(self, kind: str | None = None) -> list[SavedObject]:
        clauses, params = sql.where(self.q.param, [("kind =", "kind", kind)])
        rows = await self._all(self.q.objects + clauses + self.q.objects_order, params)
        return [
            SavedObject(
                r["org"],
                r["kind"],
                r["name"],
                self._decode(r["config"]),
                r["created_at"],
                r["updated_at"],
                r["updated_by"],
            )
            for r in rows
        ]

    async def delete_object(self, org: str, kind: str, name: str) -> bool:
        params = {"org": org, "kind": kind, "name": name}
        return await self._exec(self.q.delete_object, params, notify=CONFIG_CHANNEL) > 0

    # ---- the inbox

    async def notify_all(self, org: str, key: str, note: Mapping[str, Any], event_id: str | None, now: float) -> int:
        """A notification for every user of the org; one per key, updated (and unread again) by later events."""
        params = {"org": org, "key": key, "title": note["title"], "body": note.get("body"), "link": note.get("link")}
        data = self._encode(note.get("data") or {})
        return await self._exec(self.q.notify_all, {**params, "data": data, "event_id": event_id, "now": now})

    async def notifications(self, org: str, email: str, unread_only: bool = False) -> list[dict[str, Any]]:
        unread = self.q.unread_only if unread_only else ""
        statement = self.q.notifications + unread + self.q.notifications_order
        rows = await self._all(statement, {"org": org, "email": email.lower()})
        return [{**dict(row), "data": self._decode(row["data"])} for row in rows]

    async def mark_read(self, org: str, email: str, notification_id: int, now: float) -> bool:
        params = {"now": now, "id": notification_id, "org": org, "email": email.lower()}
        return bool(await self._exec(self.q.mark_read, params))

    async def create_incident(
        self, org: str, key: str | None, data: Mapping[str, Any], created_by: str | None, now: float
    ) -> dict[str, Any] | None:
        """None if an incident with that key exists already."""
        params = {"org": org, "key": key, "data": self._encode(dict(data)), "created_by": created_by, "now": now}
        row = await self._exec_one(self.q.create_incident, params)
        if row is None:
            return None
        return {"id": row["id"], "key": key, **dict(data), "created_by": created_by, "created_at": now}

    async def incidents(self, org: str, incident_id: int | None = None) -> list[dict[str, Any]]:
        clauses, params = sql.where(self.q.param, [("org =", "org", org), ("id =", "id", incident_id)])
        rows = await self._all(self.q.incidents + clauses + self.q.incidents_order, params)
        return [
            {**self._decode(r["data"]), "id": r["id"], "key": r["key"], "created_by": r["created_by"]}
            | {"created_at": r["created_at"], "updated_at": r["updated_at"]}
            for r in rows
        ]
