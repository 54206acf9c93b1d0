"""The admin API under /api/v1: what came in, what was done with it and why, and replay.

Described by OpenAPI at /api/v1/openapi.json (browsable at /api/v1/docs). Every request carries
an API token (`Authorization: Bearer …`, made with `alertbridge tokens create`); a token belongs
to one org and sees only that org: anything of another org is a 404, as if it did not exist.
Roles: `viewer` reads; `member` and `admin` may also replay; `admin` may also make endpoints and
targets (`objects_api.py`). Objects that come from the YAML file (endpoints, targets, routes,
teams) are marked `provisioned` and are read-only here.
"""
# No `from __future__ import annotations` here: FastAPI reads these annotations at run time.

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from pydantic import BaseModel, Field

from alertbridge import __version__
from alertbridge.auth import Refused, caller
from alertbridge.config import Config
from alertbridge.events import to_dict
from alertbridge.store.base import Delivery, EventRow, Store

if TYPE_CHECKING:
    from alertbridge.objects_api import Objects

from alertbridge.auth import ROLES  # noqa: F401  (authentication owns the roles)


class Principal(BaseModel):
    org: str
    role: str
    name: str
    user: str | None = None  # the user a token was made for (the inbox is per user)


class EventOut(BaseModel):
    event: dict[str, Any]
    status: str
    routed_at: float | None = None


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    route: str
    target: str
    action: str
    status: str
    attempts: int
    next_attempt_at: float
    created_at: float
    updated_at: float
    last_error: str | None = None
    result: dict[str, Any] | None = None
    fields: dict[str, Any]
    waiting_for: dict[str, Any] | None = None


class AttemptOut(BaseModel):
    number: int
    started_at: float
    duration: float
    outcome: str
    status_code: int | None = None
    message: str


class EventDetail(EventOut):
    trace: list[dict[str, Any]] | None = None
    deliveries: list[DeliveryOut]


class DeliveryDetail(DeliveryOut):
    attempts_made: list[AttemptOut]


class ReplayRequest(BaseModel):
    """Either `ids` (deliveries, or events: all their deliveries), or a selection."""

    ids: list[str] = Field(default_factory=list, max_length=1000)
    target: str | None = None
    status: Literal["dead", "delivered", "pending"] | None = None
    since: float | None = None
    preview: bool = False


class ReplayResult(BaseModel):
    count: int
    deliveries: list[str]
    replayed: bool


class RouteOut(BaseModel):
    name: str
    match: dict[str, Any]
    actions: list[dict[str, Any]]
    continue_: bool = Field(alias="continue")
    provisioned: bool = True
    read_only: bool = True


class NotificationOut(BaseModel):
    id: int
    key: str
    title: str
    body: str | None = None
    link: str | None = None
    data: dict[str, Any]
    event_id: str | None = None
    created_at: float
    updated_at: float
    read_at: float | None = None


class UnreadOut(BaseModel):
    unread: int


class IncidentIn(BaseModel):
    from_notification: int | None = None
    title: str | None = Field(default=None, max_length=1024)
    description: str | None = None
    urgency: Literal["high", "medium", "low"] | None = None
    criticality: Literal["high", "medium", "low"] | None = None
    status: Literal["open", "investigating", "resolved"] | None = None
    customer: str | None = None
    tags: list[str] | None = None


class IncidentOut(BaseModel):
    id: int
    key: str | None = None
    title: str
    description: str | None = None
    urgency: str | None = None
    criticality: str | None = None
    status: str | None = None
    customer: str | None = None
    tags: list[str] = Field(default_factory=list)
    created_by: str | None = None
    created_at: float
    updated_at: float


class KeyTest(BaseModel):
    kind: Literal["pagerduty", "opsgenie"]
    api_key: str = Field(min_length=1, max_length=500, pattern=r"^[\x21-\x7e]+$")  # what an HTTP header can carry
    url: str | None = Field(default=None, pattern=r"^https?://[\x21-\x7e]+$")  # EU or another base URL


class KeyCheck(BaseModel):
    ok: bool
    message: str


class TeamOut(BaseModel):
    name: str
    org: str
    slack_channel: str | None = None
    routing: dict[str, list[str]]
    provisioned: bool = True


def _delivery(d: Delivery) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        event_id=d.event_id,
        route=d.route,
        target=d.target,
        action=d.action,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at,
        created_at=d.created_at,
        updated_at=d.updated_at,
        last_error=d.last_error,
        result=d.result,
        fields=d.fields,
        waiting_for=d.waiting_for,
    )


def _event(row: EventRow, raw: bool = False) -> dict[str, Any]:
    view = to_dict(row.event)
    if not raw:
        view.pop("raw", None)
    return view


def admin_api(
    config: Config, store: Store, clock: Callable[[], float] = time.time, objects: "Objects | None" = None
) -> FastAPI:
    api = FastAPI(
        title="alertbridge admin API",
        version=__version__,
        description=__doc__,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )

    async def principal(request: Request) -> Principal:
        try:
            found = await caller(request, store, clock)
        except Refused as exc:
            raise HTTPException(exc.status, exc.message) from None
        return Principal(org=found.org, role=found.role, name=found.name, user=found.user)

    Caller = Annotated[Principal, Depends(principal)]
    if objects is not None:
        from alertbridge.objects_api import object_routes

        api.include_router(object_routes(principal, objects))
    Limit = Annotated[int, Query(ge=1, le=1000)]

    @api.get("/events", response_model=list[EventOut], tags=["events"])
    async def list_events(
        caller: Caller,
        limit: Limit = 50,
        source: str | None = None,
        kind: str | None = None,
        endpoint: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[EventOut]:
        """Newest first. `since`/`until` are Unix times of receipt."""
        rows = await store.list_events(
            limit, status, org=caller.org, source=source, kind=kind, endpoint=endpoint, since=since, until=until
        )
        return [EventOut(event=_event(r), status=r.status, routed_at=r.routed_at) for r in rows]

    @api.get("/events/{event_id}", response_model=EventDetail, tags=["events"])
    async def get_event(event_id: str, caller: Caller) -> EventDetail:
        """The event with its payload, its decision trace and its deliveries."""
        row = await store.get_event(event_id, org=caller.org)
        if row is None:
            raise HTTPException(404, f"no event {event_id}")
        deliveries = await store.list_deliveries(1000, event_id=event_id, org=caller.org)
        return EventDetail(
            event=_event(row, raw=True),
            status=row.status,
            routed_at=row.routed_at,
            trace=row.trace,
            deliveries=[_delivery(d) for d in deliveries],
        )

    @api.get("/deliveries", response_model=list[DeliveryOut], tags=["deliveries"])
    async def list_deliveries(
        caller: Caller,
        limit: Limit = 50,
        status: str | None = None,
        target: str | None = None,
        event_id: str | None = None,
        since: float | None = None,
    ) -> list[DeliveryOut]:
        """Newest first; `status=dead` lists the dead letters."""
        found = await store.list_deliveries(limit, status, event_id, org=caller.org, target=target, since=since)
        return [_delivery(d) for d in found]

    @api.get("/deliveries/{delivery_id}", response_model=DeliveryDetail, tags=["deliveries"])
    async def get_delivery(delivery_id: str, caller: Caller) -> DeliveryDetail:
        """One delivery with every attempt: when, how long, the HTTP status, the receiver's message."""
        found = await store.get_delivery(delivery_id, org=caller.org)
        if found is None:
            raise HTTPException(404, f"no delivery {delivery_id}")
        attempts = await store.attempts(delivery_id)
        return DeliveryDetail(
            **_delivery(found).model_dump(),
            attempts_made=[
                AttemptOut(
                    number=a.number,
                    started_at=a.started_at,
                    duration=a.duration,
                    outcome=a.outcome,
                    status_code=a.status_code,
                    message=a.message,
                )
                for a in attempts
            ],
        )

    @api.post("/replay", response_model=ReplayResult, tags=["deliveries"])
    async def replay(request: ReplayRequest, caller: Caller) -> ReplayResult:
        """Send deliveries again: by id, or everything matching a selection (e.g. every dead letter of a
        target since a time). With `preview`, only say how many would be sent."""
        if caller.role == "viewer":
            raise HTTPException(403, "a viewer cannot replay; ask for a member or admin token")
        if request.ids:
            chosen = request.ids
        elif request.target or request.status or request.since is not None:
            found = await store.list_deliveries(
                1000, request.status or "dead", org=caller.org, target=request.target, since=request.since
            )
            chosen = [d.id for d in found]
        else:
            raise HTTPException(422, "give ids, or a selection (target, status, since)")
        if request.preview:
            if request.ids:
                known = [await store.get_delivery(i, org=caller.org) for i in request.ids]
                chosen = [d.id for d in known if d is not None and d.status not in ("in_flight", "waiting")]
            return ReplayResult(count=len(chosen), deliveries=chosen, replayed=False)
        done = await store.replay(chosen, clock(), org=caller.org)
        return ReplayResult(count=len(done), deliveries=done, replayed=True)

    def user_of(caller: Principal) -> str:
        if caller.user is None:
            raise HTTPException(403, "this token is not a user's: make one with tokens create --user EMAIL")
        return caller.user

    @api.get("/notifications", response_model=list[NotificationOut], tags=["inbox"])
    async def notifications(caller: Caller, unread: bool = False) -> list[NotificationOut]:
        """The caller's notifications, newest first (a token made for a user)."""
        found = await store.notifications(caller.org, user_of(caller), unread_only=unread)
        return [NotificationOut(**n) for n in found]

    @api.get("/notifications/unread", response_model=UnreadOut, tags=["inbox"])
    async def unread(caller: Caller) -> UnreadOut:
        """The bell's count."""
        return UnreadOut(unread=len(await store.notifications(caller.org, user_of(caller), unread_only=True)))

    @api.post("/notifications/{notification_id}/read", response_model=UnreadOut, tags=["inbox"])
    async def read(notification_id: int, caller: Caller) -> UnreadOut:
        if not await store.mark_read(caller.org, user_of(caller), notification_id, clock()):
            raise HTTPException(404, f"no notification {notification_id}")
        return UnreadOut(unread=len(await store.notifications(caller.org, user_of(caller), unread_only=True)))

    @api.get("/incidents", response_model=list[IncidentOut], tags=["inbox"])
    async def list_incidents(caller: Caller) -> list[IncidentOut]:
        return [IncidentOut(**i) for i in await store.incidents(caller.org)]

    @api.get("/incidents/{incident_id}", response_model=IncidentOut, tags=["inbox"])
    async def get_incident(incident_id: int, caller: Caller) -> IncidentOut:
        found = await store.incidents(caller.org, incident_id)
        if not found:
            raise HTTPException(404, f"no incident {incident_id}")
        return IncidentOut(**found[0])

    @api.post("/incidents", response_model=IncidentOut, status_code=201, tags=["inbox"])
    async def create_incident(form: IncidentIn, caller: Caller) -> IncidentOut:
        """Create an incident, usually from a notification's prefilled form (`from_notification`).
        One incident per notification key: a second create for it is a 409."""
        if caller.role == "viewer":
            raise HTTPException(403, "a viewer cannot create incidents")
        key = None
        values = form.model_dump(exclude={"from_notification"}, exclude_none=True)
        if form.from_notification is not None:
            mine = await store.notifications(caller.org, user_of(caller))
            note = next((n for n in mine if n["id"] == form.from_notification), None)
            if note is None:
                raise HTTPException(404, f"no notification {form.from_notification}")
            key = note["key"]
            values = {**note["data"].get("prefill", {}), **values}
        if not values.get("title"):
            raise HTTPException(422, "an incident needs a title")
        made = await store.create_incident(caller.org, key, values, caller.user or caller.name, clock())
        if made is None:
            raise HTTPException(409, f"an incident for {key} exists already")
        found = await store.incidents(caller.org, int(made["id"]))
        return IncidentOut(**found[0])

    @api.post("/integrations/test", response_model=KeyCheck, tags=["configuration"])
    async def test_key(request: KeyTest, caller: Caller) -> KeyCheck:
        """Test connection: does PagerDuty (or Opsgenie) accept this API key? The key is not stored."""
        from alertbridge.integrations_api import check_key

        if caller.role != "admin":  # it makes this server call out: admins only
            raise HTTPException(403, "only an admin can test keys")
        return KeyCheck(**await check_key(request.kind, request.api_key, request.url))

    @api.get("/routes", response_model=list[RouteOut], tags=["configuration"])
    async def routes(caller: Caller) -> list[RouteOut]:
        return [
            RouteOut.model_validate(
                {
                    "name": r.name,
                    "match": r.match,
                    "actions": [{"target": a.target, "action": a.action, **a.fields} for a in r.actions],
                    "continue": r.continue_,
                }
            )
            for r in config.routes
        ]

    @api.get("/teams", response_model=list[TeamOut], tags=["teams"])
    async def teams(caller: Caller) -> list[TeamOut]:
        from alertbridge.routing.teams import plural_view

        out = []
        for team in config.teams:
            org = team.org or config.server.org
            if org != caller.org:
                continue
            claims = await store.claims_of(org, team.name)
            out.append(TeamOut(name=team.name, org=org, slack_channel=team.slack_channel, routing=plural_view(claims)))
        return out

    return api
