"""/api/v1/notifications and /api/v1/incidents: the built-in inbox, a user's bell and its incidents."""
# No `from __future__ import annotations` here: FastAPI reads these annotations at run time.

from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from alertbridge.api.deps import Caller, Ctx, user_of

router = APIRouter(tags=["inbox"])


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


@router.get("/notifications", response_model=list[NotificationOut])
async def notifications(ctx: Ctx, caller: Caller, unread: bool = False) -> list[NotificationOut]:
    """The caller's notifications, newest first (a token made for a user)."""
    found = await ctx.store.notifications(caller.org, user_of(caller), unread_only=unread)
    return [NotificationOut(**n) for n in found]


@router.get("/notifications/unread", response_model=UnreadOut)
async def unread(ctx: Ctx, caller: Caller) -> UnreadOut:
    """The bell's count."""
    return UnreadOut(unread=len(await ctx.store.notifications(caller.org, user_of(caller), unread_only=True)))


@router.post("/notifications/{notification_id}/read", response_model=UnreadOut)
async def read(notification_id: int, ctx: Ctx, caller: Caller) -> UnreadOut:
    if not await ctx.store.mark_read(caller.org, user_of(caller), notification_id, ctx.clock()):
        raise HTTPException(404, f"no notification {notification_id}")
    return UnreadOut(unread=len(await ctx.store.notifications(caller.org, user_of(caller), unread_only=True)))


@router.get("/incidents", response_model=list[IncidentOut])
async def list_incidents(ctx: Ctx, caller: Caller) -> list[IncidentOut]:
    return [IncidentOut(**i) for i in await ctx.store.incidents(caller.org)]


@router.get("/incidents/{incident_id}", response_model=IncidentOut)
async def get_incident(incident_id: int, ctx: Ctx, caller: Caller) -> IncidentOut:
    found = await ctx.store.incidents(caller.org, incident_id)
    if not found:
        raise HTTPException(404, f"no incident {incident_id}")
    return IncidentOut(**found[0])


@router.post("/incidents", response_model=IncidentOut, status_code=201)
async def create_incident(form: IncidentIn, ctx: Ctx, caller: Caller) -> IncidentOut:
    """Create an incident, usually from a notification's prefilled form (`from_notification`).
    One incident per notification key: a second create for it is a 409."""
    store = ctx.store
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
    made = await store.create_incident(caller.org, key, values, caller.user or caller.name, ctx.clock())
    if made is None:
        raise HTTPException(409, f"an incident for {key} exists already")
    found = await store.incidents(caller.org, int(made["id"]))
    return IncidentOut(**found[0])
