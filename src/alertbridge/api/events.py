"""/api/v1/events: what came in, with its decision trace and the deliveries it made."""
# No `from __future__ import annotations` here: FastAPI reads these annotations at run time.

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from alertbridge.api.deliveries import DeliveryOut, delivery_out
from alertbridge.api.deps import Caller, Ctx, Limit
from alertbridge.events import to_dict
from alertbridge.store.base import EventRow

router = APIRouter(tags=["events"])


class EventOut(BaseModel):
    event: dict[str, Any]
    status: str
    routed_at: float | None = None


class EventDetail(EventOut):
    trace: list[dict[str, Any]] | None = None
    deliveries: list[DeliveryOut]


def _event(row: EventRow, raw: bool = False) -> dict[str, Any]:
    view = to_dict(row.event)
    if not raw:
        view.pop("raw", None)
    return view


@router.get("/events", response_model=list[EventOut])
async def list_events(
    ctx: Ctx,
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
    rows = await ctx.store.list_events(
        limit, status, org=caller.org, source=source, kind=kind, endpoint=endpoint, since=since, until=until
    )
    return [EventOut(event=_event(r), status=r.status, routed_at=r.routed_at) for r in rows]


@router.get("/events/{event_id}", response_model=EventDetail)
async def get_event(event_id: str, ctx: Ctx, caller: Caller) -> EventDetail:
    """The event with its payload, its decision trace and its deliveries."""
    row = await ctx.store.get_event(event_id, org=caller.org)
    if row is None:
        raise HTTPException(404, f"no event {event_id}")
    deliveries = await ctx.store.list_deliveries(1000, event_id=event_id, org=caller.org)
    return EventDetail(
        event=_event(row, raw=True),
        status=row.status,
        routed_at=row.routed_at,
        trace=row.trace,
        deliveries=[delivery_out(d) for d in deliveries],
    )
