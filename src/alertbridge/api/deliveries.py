"""/api/v1/deliveries and /api/v1/replay: the outbox as operators see it, and sending again."""
# No `from __future__ import annotations` here: FastAPI reads these annotations at run time.

from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from alertbridge.api.deps import Caller, Ctx, Limit
from alertbridge.store.base import Delivery

router = APIRouter(tags=["deliveries"])


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


def delivery_out(d: Delivery) -> DeliveryOut:
    """A stored delivery as the API shows it (also in an event's detail)."""
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


@router.get("/deliveries", response_model=list[DeliveryOut])
async def list_deliveries(
    ctx: Ctx,
    caller: Caller,
    limit: Limit = 50,
    status: str | None = None,
    target: str | None = None,
    event_id: str | None = None,
    since: float | None = None,
) -> list[DeliveryOut]:
    """Newest first; `status=dead` lists the dead letters."""
    found = await ctx.store.list_deliveries(limit, status, event_id, org=caller.org, target=target, since=since)
    return [delivery_out(d) for d in found]


@router.get("/deliveries/{delivery_id}", response_model=DeliveryDetail)
async def get_delivery(delivery_id: str, ctx: Ctx, caller: Caller) -> DeliveryDetail:
    """One delivery with every attempt: when, how long, the HTTP status, the receiver's message."""
    found = await ctx.store.get_delivery(delivery_id, org=caller.org)
    if found is None:
        raise HTTPException(404, f"no delivery {delivery_id}")
    attempts = await ctx.store.attempts(delivery_id)
    return DeliveryDetail(
        **delivery_out(found).model_dump(),
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


@router.post("/replay", response_model=ReplayResult)
async def replay(request: ReplayRequest, ctx: Ctx, caller: Caller) -> ReplayResult:
    """Send deliveries again: by id, or everything matching a selection (e.g. every dead letter of a
    target since a time). With `preview`, only say how many would be sent."""
    store = ctx.store
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
    done = await store.replay(chosen, ctx.clock(), org=caller.org)
    return ReplayResult(count=len(done), deliveries=done, replayed=True)
