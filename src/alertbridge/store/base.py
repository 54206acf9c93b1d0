"""The storage interface, implemented by SQLite (one process) and PostgreSQL (many replicas).

Statuses:
- event: `received` (durable, not yet routed) → `routed` | `unmatched` | `failed` | `suppressed` |
  `silenced` | `inhibited` (a redelivery of a silenced or inhibited event makes it `received` again:
  routed anew, it pages if its silence has ended or its inhibiting alert resolved)
- delivery: `pending` → `in_flight` (claimed by a dispatcher until its lease ends) →
  `delivered` | `pending` again (retry) | `dead` (gave up; `replay` makes it pending)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from alertbridge.events import Event, Expected
from alertbridge.ids import new_id
from alertbridge.store.urls import masked


@dataclass(frozen=True)
class Decided:
    """What the router decided for one event, to be recorded with the deliveries it asks for."""

    event_id: str
    status: str
    trace: list[dict[str, Any]]
    deliveries: Sequence[NewDelivery]
    echo_id: int | None = None  # the expected echo this event turned out to be
    episode: EpisodeStep | None = None  # what the event did to its alert's episode, if it opens or closes one
    # When a redelivery of the event is a repeat to route again (a route's `repeat_interval` came round)
    repeat_at: float | None = None


@dataclass(frozen=True)
class Episode:
    """Where an alert is in its episodes: the latest one's number (0: none yet) and whether it is open."""

    number: int = 0
    open: bool = False
    opened_at: float | None = field(default=None, compare=False)  # when the open one opened (repeats)
    # The event that last moved it (for an episode a `restart` opened: that firing); not compared.
    event_id: str | None = field(default=None, compare=False)

    @property
    def state(self) -> str:
        return "open" if self.open else "closed"


@dataclass(frozen=True)
class EpisodeStep:
    """An event that opens or closes an episode moves its alert (org, `alert`) from `was`, as the
    router read it, to `now`. It is recorded with the event's decision, and only if the alert is still
    at `was`: two routers that read the same state cannot both open an episode, and a crash before the
    decision is recorded leaves no step behind to be taken twice."""

    org: str
    alert: str
    event_id: str
    was: Episode
    now: Episode
    # What matchers read of the event (`silences.values_of`), kept with the alert: inhibit rules
    # match the alerts that fire by it.
    labels: Mapping[str, str] | None = None


@dataclass(frozen=True)
class NewDelivery:
    """A delivery the router (or a follow-up) asks for; the store gives it its state."""

    id: str
    org: str
    event_id: str
    route: str
    target: str
    action: str
    fields: dict[str, Any]
    idempotency_key: str
    order_key: str | None
    created_at: float
    # Set when the action needs a link that does not exist yet: {refs, want, marker}. The delivery
    # waits (status `waiting`) until the link is stored, then `marker` in its fields becomes the id.
    waiting_for: dict[str, Any] | None = None

    @classmethod
    def after(
        cls,
        delivery: Delivery,
        *,
        route: str,
        target: str,
        action: str,
        fields: dict[str, Any],
        key: str,
        now: float,
        order_key: str | None = None,
    ) -> NewDelivery:
        """A delivery that another one asks for (a follow-up, an `on_dead` action, an alarm): same org
        and event; `key` makes it once-only."""
        return cls(
            id=new_id(now),
            org=delivery.org,
            event_id=delivery.event_id,
            route=route,
            target=target,
            action=action,
            fields=fields,
            idempotency_key=key,
            order_key=order_key,
            created_at=now,
        )


Ref = tuple[str, str, str]  # (system, type, id)
ECHO_COLUMNS = "id, system, type, object_id, change, fingerprint, actor, delivery_id, target, created_at"

# Idempotency-key prefixes of deliveries made in reaction to another's death (an `on_dead` message, a
# failure alarm). Replaying an event sends its work again, not these: they come again only if it dies again.
REACTION_KEYS = ("dead:", "alarm:")
NOT_A_REACTION = " AND ".join(f"substr(idempotency_key, 1, {len(p)}) <> '{p}'" for p in REACTION_KEYS)


class StoreUnavailable(Exception):
    """The store cannot take the write now (disk full, database down): ingress answers 503."""


def require_current(version: int, latest: int, url: str) -> None:
    """Readers that do not migrate (`send --dry-run`) need the schema of this version of alertbridge."""
    if version < latest:
        raise StoreUnavailable(
            f"the store at {masked(url)} has schema version {version}, this alertbridge needs {latest}:"
            " run `alertbridge migrate` (or restart serve, which migrates)"
        )


@dataclass(frozen=True)
class EventRow:
    event: Event
    status: str
    trace: list[dict[str, Any]] | None
    routed_at: float | None


@dataclass(frozen=True)
class Delivery:
    id: str
    org: str
    event_id: str
    route: str
    target: str
    action: str
    fields: dict[str, Any]
    idempotency_key: str
    order_key: str | None
    status: str
    attempts: int
    next_attempt_at: float
    created_at: float
    budget_from: float  # when the retry budget (max_age) started: creation, or the last replay
    updated_at: float
    last_error: str | None
    result: dict[str, Any] | None
    event_received_at: float | None = None
    claim: str | None = None
    event: Event | None = None  # loaded with a claim, for targets that send the event itself
    waiting_for: dict[str, Any] | None = None


@dataclass(frozen=True)
class Attempt:
    delivery_id: str
    number: int
    started_at: float
    duration: float
    outcome: str  # success | retry | permanent
    status_code: int | None
    message: str


@dataclass(frozen=True)
class AttemptResult:
    """What an attempt changes on its delivery."""

    status: str  # delivered | pending | dead
    next_attempt_at: float
    error: str | None
    result: dict[str, Any] | None = None
    actor: str | None = None  # who the target acted as (`Outcome.actor`): for the delivery's open echoes


@dataclass(frozen=True)
class SavedObject:
    """An object made through the API rather than the file (kind `endpoint` or `target`): its config
    as the YAML would hold it, with every secret inside already sealed by the vault."""

    org: str
    kind: str
    name: str
    config: dict[str, Any]
    created_at: float
    updated_at: float
    updated_by: str | None


@dataclass(frozen=True)
class Stored:
    """One event as ingress stored it: `duplicate_of` is the first copy's id on a redelivery."""

    event_id: str
    duplicate_of: str | None


# The store as its callers see it: one small protocol per role, so that each component's signature says
# what it uses, and `Store`, every role, for the operator's side that uses most of them.


class Lifecycle(Protocol):
    """Opening, closing and migrating the store, and wake-ups from other replicas."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    # Apply the migrations the database has not seen (open does it too): (version, summary) applied.
    async def migrate(self) -> list[tuple[int, str]]: ...
    # Wake-ups from other replicas sharing the database: events stored (routers), deliveries due
    # (dispatchers), endpoints, targets or integrations saved through the API (`on_config`). Called
    # before open; a backend that serves one process does nothing.
    def subscribe(
        self,
        on_events: Callable[[], None],
        on_deliveries: Callable[[], None],
        on_config: Callable[[], None] | None = None,
    ) -> None: ...

    # For a look that must change nothing (`send --dry-run`): opens without migrating or starting
    # writers; False, and nothing created, when there is no store there yet (no file, no schema).
    async def open_existing(self) -> bool: ...


class Ingest(Protocol):
    """Ingress: events committed before the sender is answered, a redelivery found by its key."""

    async def add_events(self, events: Sequence[Event]) -> list[Stored]: ...


class Routing(Protocol):
    """The router: unrouted events, what a decision reads (links, echoes, teams), the decisions."""

    # Claims up to `limit` events for `lease` seconds (from `now`), so that two replicas do not route
    # the same event at once; a replica that dies leaves them to the next after the lease.
    async def unrouted_events(self, limit: int, now: float | None = None, lease: float = 30.0) -> list[Event]: ...
    # One transaction for a routing batch: either every decision is recorded or none is. Per decision,
    # its deliveries' existing ids (None: new), or None for one not recorded: it names an expected echo
    # that another decision (another replica's, or an earlier one of the batch) took first, or its
    # episode step starts from a state its alert has left meanwhile. That event is left unrouted (its
    # claim released) and is routed again against the expectations and episodes as they are now.
    async def record_decisions(self, decisions: Sequence[Decided], now: float) -> list[list[str | None] | None]: ...
    async def get_event(self, event_id: str, org: str | None = None) -> EventRow | None: ...
    async def links_of(self, org: str, refs: Sequence[Ref]) -> list[Ref]: ...
    # The expectations not yet used up of this change to any of these objects since `since`, oldest
    # first; the router decides which (if any) a webhook is the echo of.
    async def open_echoes(self, org: str, refs: Sequence[Ref], change: str, since: float) -> list[dict[str, Any]]: ...
    async def find_teams(self, org: str, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str, str]]: ...
    # Where the alert is in its episodes (Episode() for one never seen); `record_decisions` moves it.
    async def episode(self, org: str, alert: str) -> Episode: ...
    # The silences and windows active at `now` (every org's), read for each batch the router routes.
    async def active_silences(self, now: float) -> list[dict[str, Any]]: ...
    # The alerts whose episode is open (every org's: org, alert, event_id, labels), for inhibit rules.
    async def open_alerts(self) -> list[dict[str, Any]]: ...


class Outbox(Protocol):
    """The dispatcher: claims on due deliveries, attempts and what they make (follow-ups, links)."""

    # At start-up: claims left by a process that stopped. SQLite (one process) releases all of them;
    # PostgreSQL only those whose lease ended by `now`, since the others may be live replicas'.
    async def release_claims(self, now: float | None = None) -> int: ...
    # `capacity`: what this process's own rate windows leave per target; `limits`: each rate-limited
    # target's (sends, per seconds), which a store shared by replicas counts across all of them.
    async def claim_deliveries(
        self,
        now: float,
        lease: float,
        limit: int,
        capacity: Mapping[str, int],
        limits: Mapping[str, tuple[int, float]] | None = None,
    ) -> list[Delivery]: ...
    async def record_attempt(
        self,
        delivery: Delivery,
        attempt: Attempt,
        result: AttemptResult,
        follow_ups: Sequence[NewDelivery] = (),
        links: Sequence[tuple[Ref, Ref]] = (),
    ) -> list[str]: ...
    async def expect_echoes(self, delivery: Delivery, echoes: Sequence[Expected], now: float) -> None: ...
    async def expire_waiting(self, now: float, older_than: float) -> list[tuple[str, str]]: ...


class Records(Protocol):
    """What operators read and redo: events, deliveries, attempts, replays, exports, retention."""

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
    ) -> list[EventRow]: ...
    async def get_event(self, event_id: str, org: str | None = None) -> EventRow | None: ...
    async def list_deliveries(
        self,
        limit: int = 50,
        status: str | None = None,
        event_id: str | None = None,
        *,
        org: str | None = None,
        target: str | None = None,
        since: float | None = None,
    ) -> list[Delivery]: ...
    async def get_delivery(self, delivery_id: str, org: str | None = None) -> Delivery | None: ...
    async def attempts(self, delivery_id: str) -> list[Attempt]: ...
    # The deliveries already made with any of these idempotency keys in the org: key → delivery id.
    async def deliveries_with_keys(self, org: str, keys: Sequence[str]) -> dict[str, str]: ...
    async def replay(self, ids: Sequence[str], now: float, org: str | None = None) -> list[str]:
        """Make deliveries pending again, due now, with a fresh budget: by delivery id, or by event id (its
        work, without the reactions to its earlier death: `REACTION_KEYS`). Returns the ids queued."""
        ...

    async def export_events(
        self, after_seq: int, limit: int, since: float | None = None, until: float | None = None, org: str | None = None
    ) -> list[tuple[int, EventRow, list[Delivery]]]: ...
    async def purge(
        self, events_before: float | None, attempts_before: float | None, limit: int
    ) -> tuple[int, int]: ...


class Accounts(Protocol):
    """Who may do what: API tokens, users, console sessions, teams and the identifiers they claim."""

    async def create_token(
        self, org: str, name: str, role: str, token_hash: str, now: float, user_email: str | None = None
    ) -> None: ...
    async def token_lookup(self, token_hash: str) -> tuple[str, str, str, str | None] | None: ...
    async def create_user(self, org: str, email: str, password_hash: str, role: str, now: float) -> bool: ...
    async def user(self, org: str, email: str) -> dict[str, Any] | None: ...
    async def find_user(self, email: str) -> list[dict[str, Any]]: ...
    async def create_session(
        self, id_hash: str, org: str, email: str, role: str, csrf: str, expires_at: float
    ) -> None: ...
    async def session(self, id_hash: str, now: float) -> dict[str, Any] | None: ...
    async def end_session(self, id_hash: str) -> None: ...
    async def provision_teams(
        self, teams: Sequence[tuple[str, str, str]], claims: Sequence[tuple[str, str, str, str]], now: float
    ) -> list[str]: ...
    async def team_by_token(self, token_hash: str) -> tuple[str, str] | None: ...
    async def claims_of(self, org: str, team: str) -> list[tuple[str, str, str]]: ...
    async def set_claims(
        self, org: str, team: str, claims: Mapping[str, Sequence[str]], now: float
    ) -> list[tuple[str, str, str]]: ...


class Objects(Protocol):
    """Endpoints, targets and integrations saved through the API (one generic table: kind, name, config)."""

    async def save_object(
        self, org: str, kind: str, name: str, config: Mapping[str, Any], now: float, by: str | None
    ) -> None: ...
    async def objects(self, kind: str | None = None) -> list[SavedObject]: ...
    async def delete_object(self, org: str, kind: str, name: str) -> bool: ...
    async def save_integration(
        self, org: str, kind: str, config: Mapping[str, Any], now: float, by: str | None
    ) -> None: ...
    async def integrations(self) -> list[tuple[str, str, dict[str, Any]]]: ...


class Silences(Protocol):
    """Silences and maintenance windows made through the API (rows as dicts: id, org, matchers,
    starts_at, ends_at, created_by, comment, updated_at, recurrence, name); `routing/silences.py`
    reads them. Expiring sets `ends_at` to now."""

    async def add_silence(self, silence: Mapping[str, Any], now: float) -> None: ...
    async def silences(self, org: str | None = None, limit: int = 1000) -> list[dict[str, Any]]: ...
    async def silence(self, silence_id: str, org: str | None = None) -> dict[str, Any] | None: ...
    async def expire_silence(self, org: str, silence_id: str, now: float) -> bool: ...


class Inbox(Protocol):
    """The built-in inbox: notifications per user, and incidents."""

    async def notify_all(
        self, org: str, key: str, note: Mapping[str, Any], event_id: str | None, now: float
    ) -> int: ...
    async def notifications(self, org: str, email: str, unread_only: bool = False) -> list[dict[str, Any]]: ...
    async def mark_read(self, org: str, email: str, notification_id: int, now: float) -> bool: ...
    async def create_incident(
        self, org: str, key: str | None, data: Mapping[str, Any], created_by: str | None, now: float
    ) -> dict[str, Any] | None: ...
    async def update_incident(self, org: str, key: str, changes: Mapping[str, Any], now: float) -> bool: ...
    async def incidents(self, org: str, incident_id: int | None = None) -> list[dict[str, Any]]: ...


class Store(Lifecycle, Ingest, Routing, Outbox, Records, Accounts, Objects, Silences, Inbox, Protocol):
    """Every role: what a backend implements, and what the operator's side is given."""


def mark_done(
    trace: list[dict[str, Any]], deliveries: Sequence[NewDelivery], existing: Sequence[str | None]
) -> list[dict[str, Any]]:
    """Point the trace at the earlier delivery where an action's key had been used already."""
    earlier = {d.id: (first, d.idempotency_key) for d, first in zip(deliveries, existing, strict=True) if first}
    if not earlier:
        return trace
    for step in trace:
        for action in step.get("actions", []):
            if action.get("delivery") in earlier:
                first, key = earlier[action["delivery"]]
                action["delivery"] = first
                action["not_sent"] = f"delivery {first} already has the key {key.removeprefix('key:')}"
    return trace
