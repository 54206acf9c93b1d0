"""/api/v1/silences: silences and maintenance windows made through the API (docs/silences.md).

`viewer` reads; `member` and `admin` add and expire. Bad input (no matchers, an unknown operator,
a regex that does not compile, an end before its start, an impossible window) is a 400 that says
what is wrong, and nothing is saved. Expiring (DELETE) sets the end to now: the row stays, as in
Alertmanager. The file's `maintenance:` windows are listed too, read-only (`provisioned`).
"""
# No `from __future__ import annotations` here: FastAPI reads these annotations at run time.

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from alertbridge.api.deps import Caller, Ctx, Principal
from alertbridge.config import parse_duration
from alertbridge.routing import maintenance_windows
from alertbridge.routing.silences import Invalid, Silence, from_row, instant, iso, make, to_row

router = APIRouter(tags=["silences"])


class WindowIn(BaseModel):
    days: list[str]
    start: str = Field(description="HH:MM, local time in `timezone`")
    duration: float | str = Field(description="seconds, or a string like '90m', '2h'")
    timezone: str = Field(description="IANA, e.g. Europe/Berlin")


class SilenceIn(BaseModel):
    matchers: list[str | dict[str, Any]] = Field(
        description="`name=value`, `name!=value`, `name=~regex`, `name!~regex` (or {name, op, value})"
    )
    starts_at: float | str | None = Field(default=None, description="Unix time or ISO 8601; default now")
    ends_at: float | str | None = Field(default=None, description="Unix time or ISO 8601")
    duration: float | str | None = Field(default=None, description="instead of ends_at: '2h', '30m', seconds")
    comment: str = ""
    created_by: str | None = Field(default=None, description="default: the caller's name")
    window: WindowIn | None = Field(default=None, description="a recurring maintenance window")
    name: str | None = Field(default=None, description="a window's name")


class SilenceOut(BaseModel):
    id: str
    matchers: list[dict[str, str]]
    starts_at: str
    ends_at: str
    created_by: str
    comment: str
    updated_at: str
    state: str
    window: dict[str, Any] | None = None
    name: str | None = None
    provisioned: bool = False


def silence_out(silence: Silence, now: float, provisioned: bool = False) -> SilenceOut:
    return SilenceOut(
        id=silence.id,
        matchers=[m.view() for m in silence.matchers],
        starts_at=iso(silence.starts_at),
        ends_at=iso(silence.ends_at),
        created_by=silence.created_by,
        comment=silence.comment,
        updated_at=iso(silence.updated_at),
        state=silence.state(now),
        window=silence.window.view() if silence.window else None,
        name=silence.name,
        provisioned=provisioned,
    )


def may_change(caller: Principal) -> None:
    if caller.role == "viewer":
        raise HTTPException(403, "a viewer cannot add or expire silences: use a member's or an admin's token")


def built(body: SilenceIn, caller: Principal, now: float) -> Silence:
    """The silence the body asks for; 400 with the reason if it cannot work."""
    try:
        starts = now if body.starts_at is None else instant(body.starts_at, "starts_at")
        if body.ends_at is not None:
            ends = instant(body.ends_at, "ends_at")
        elif body.duration is not None:
            ends = starts + _duration(body.duration, "duration")
        elif body.window is not None:
            ends = float("inf")  # a window recurs until it is expired
        else:
            raise Invalid("ends_at or duration is required (a silence ends)")
        recurrence = None
        if body.window is not None:
            given = body.window
            recurrence = {
                "days": given.days,
                "start": given.start,
                "duration": _duration(given.duration, "window.duration"),
                "zone": given.timezone,
            }
        return make(
            org=caller.org,
            matchers=body.matchers,
            starts_at=starts,
            ends_at=ends,
            created_by=body.created_by or caller.name,
            comment=body.comment,
            now=now,
            recurrence=recurrence,
            name=body.name,
        )
    except Invalid as exc:
        raise HTTPException(400, str(exc)) from None


def _duration(value: float | str, what: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise Invalid(f"{what}: {exc}") from None
    if seconds <= 0:
        raise Invalid(f"{what}: {value!r} must be more than zero")
    return seconds


@router.get("/silences", response_model=list[SilenceOut])
async def list_silences(ctx: Ctx, caller: Caller) -> list[SilenceOut]:
    """Every silence and window of the caller's org, newest first, then the file's windows."""
    now = ctx.clock()
    found = [silence_out(from_row(row), now) for row in await ctx.store.silences(caller.org)]
    found += [silence_out(w, now, True) for w in maintenance_windows(ctx.config) if w.org == caller.org]
    return found


@router.post("/silences", response_model=SilenceOut, status_code=201)
async def add_silence(body: SilenceIn, ctx: Ctx, caller: Caller) -> SilenceOut:
    """A silence, or with `window` a maintenance window; it mutes from the next routing batch on."""
    may_change(caller)
    now = ctx.clock()
    silence = built(body, caller, now)
    await ctx.store.add_silence(to_row(silence), now)
    return silence_out(silence, now)


@router.get("/silences/{silence_id}", response_model=SilenceOut)
async def get_silence(silence_id: str, ctx: Ctx, caller: Caller) -> SilenceOut:
    row = await ctx.store.silence(silence_id, caller.org)
    if row is None:
        raise HTTPException(404, f"no silence {silence_id}")
    return silence_out(from_row(row), ctx.clock())


@router.delete("/silences/{silence_id}", response_model=SilenceOut)
async def expire_silence(silence_id: str, ctx: Ctx, caller: Caller) -> SilenceOut:
    """Expire: it ends now (the row stays, as in Alertmanager). An expired one is a 409."""
    may_change(caller)
    now = ctx.clock()
    if not await ctx.store.expire_silence(caller.org, silence_id, now):
        if await ctx.store.silence(silence_id, caller.org) is None:
            raise HTTPException(404, f"no silence {silence_id}")
        raise HTTPException(409, f"silence {silence_id} has expired already")
    row = await ctx.store.silence(silence_id, caller.org)
    assert row is not None
    return silence_out(from_row(row), now)
