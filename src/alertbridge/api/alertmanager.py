"""Alertmanager's own silence API (v2) over alertbridge's silences, for `amtool` and Grafana.

`GET/POST /api/v2/silences`, `GET/DELETE /api/v2/silence/{id}` in Alertmanager's JSON shapes
(`matchers: [{name, value, isRegex, isEqual}]`, `startsAt`, `endsAt`, `createdBy`, `comment`,
`status.state`, `updatedAt`), and `GET /api/v2/status`, which amtool reads too. Alertmanager has no
authentication of its own, so clients send what their `http_config` holds: an API token as
`Authorization: Bearer …` (`amtool --http.config.file` with `authorization.credentials`) or a
user's email and password as basic auth (`basic_auth`). The roles are the admin API's: `viewer`
reads, `member` and `admin` add and expire. Errors are Alertmanager's: a plain text body.
"""
# No `from __future__ import annotations` here: FastAPI reads these annotations at run time.

import base64
import binascii
import time
from collections.abc import Callable
from typing import Annotated, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field

from alertbridge import __version__, logs
from alertbridge.api.deps import Context, Principal, context, principal
from alertbridge.api.silences import may_change
from alertbridge.config import Config
from alertbridge.routing.silences import Invalid, Matcher, Silence, from_row, instant, iso, make, parse_matchers, to_row
from alertbridge.routing.teams import TeamDirectory
from alertbridge.store.base import Store

log = logs.get("alertbridge.api.alertmanager")
_hasher = PasswordHasher()
STARTED = time.time()


class AMMatcher(BaseModel):
    name: str
    value: str
    isRegex: bool  # Alertmanager's field names
    isEqual: bool = True


class PostableSilence(BaseModel):
    id: str | None = None
    matchers: list[AMMatcher]
    startsAt: str
    endsAt: str
    createdBy: str
    comment: str


class SilenceStatus(BaseModel):
    state: str = Field(description="active, pending or expired")


class GettableSilence(BaseModel):
    id: str
    status: SilenceStatus
    updatedAt: str
    matchers: list[AMMatcher]
    startsAt: str
    endsAt: str
    createdBy: str
    comment: str


async def caller(request: Request) -> Principal:
    """An API token (Bearer), a user's basic auth, or a console session."""
    given = request.headers.get("authorization", "")
    if given[:6].lower() != "basic ":
        return await principal(request)
    try:
        email, _, password = base64.b64decode(given[6:].strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise HTTPException(401, "basic auth is base64 of email:password") from None
    users = await context(request).store.find_user(email.strip().lower())
    user = users[0] if len(users) == 1 else None
    ok = False
    if user is not None:
        try:
            ok = _hasher.verify(user["password_hash"], password)
        except (VerificationError, InvalidHashError):
            ok = False
    if not ok or user is None:
        log.warning("basic_auth_refused", email=email)  # never the password
        raise HTTPException(401, "wrong email or password")
    return Principal(org=user["org"], role=user["role"], name=user["email"], user=user["email"])


AMCaller = Annotated[Principal, Depends(caller)]
AMCtx = Annotated[Context, Depends(context)]


def gettable(silence: Silence, now: float) -> GettableSilence:
    return GettableSilence(
        id=silence.id,
        status=SilenceStatus(state=silence.state(now)),
        updatedAt=iso(silence.updated_at),
        matchers=[
            AMMatcher(name=m.name, value=m.value, isRegex=m.is_regex, isEqual=m.is_equal) for m in silence.matchers
        ],
        startsAt=iso(silence.starts_at),
        endsAt=iso(silence.ends_at),
        createdBy=silence.created_by,
        comment=silence.comment,
    )


def _filtered(silence: Silence, wanted: list[Matcher]) -> bool:
    """Alertmanager's filter: each wanted matcher matches the value of one of the silence's
    matchers of that name."""
    for want in wanted:
        values = [m.value for m in silence.matchers if m.name == want.name]
        if not values:
            return False
        if want.pattern is not None:
            if not any((want.pattern.fullmatch(v) is not None) == want.is_equal for v in values):
                return False
        elif not any((v == want.value) == want.is_equal for v in values):
            return False
    return True


router = APIRouter(tags=["alertmanager"])


@router.get("/status")
async def status(ctx: AMCtx, who: AMCaller) -> dict[str, Any]:
    """What amtool reads before some commands: a one-node cluster, ready."""
    return {
        "cluster": {"name": "alertbridge", "status": "ready", "peers": []},
        "versionInfo": {
            "version": __version__,
            "revision": "",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
        },
        "config": {"original": ""},
        "uptime": iso(STARTED),
    }


@router.get("/silences", response_model=list[GettableSilence])
async def silences(
    ctx: AMCtx, who: AMCaller, filter: Annotated[list[str] | None, Query()] = None
) -> list[GettableSilence]:
    """The org's silences (maintenance windows are not Alertmanager silences)."""
    try:
        wanted = parse_matchers(filter) if filter else []
    except Invalid as exc:
        raise HTTPException(400, str(exc)) from None
    now = ctx.clock()
    found = [from_row(row) for row in await ctx.store.silences(who.org)]
    return [gettable(s, now) for s in found if s.window is None and _filtered(s, wanted)]


@router.post("/silences")
async def post_silence(body: PostableSilence, ctx: AMCtx, who: AMCaller) -> dict[str, str]:
    """A new silence; with the `id` of one of the org's, it replaces that one (expired, as
    Alertmanager does when a silence is edited)."""
    may_change(who)
    now = ctx.clock()
    try:
        silence = make(
            org=who.org,
            matchers=[m.model_dump() for m in body.matchers],
            starts_at=max(instant(body.startsAt, "startsAt"), now),
            ends_at=instant(body.endsAt, "endsAt"),
            created_by=body.createdBy,
            comment=body.comment,
            now=now,
        )
    except Invalid as exc:
        raise HTTPException(400, str(exc)) from None
    if body.id:
        if await ctx.store.silence(body.id, who.org) is None:
            raise HTTPException(404, f"silence {body.id} not found")
        await ctx.store.expire_silence(who.org, body.id, now)
    await ctx.store.add_silence(to_row(silence), now)
    return {"silenceID": silence.id}


@router.get("/silence/{silence_id}", response_model=GettableSilence)
async def get_silence(silence_id: str, ctx: AMCtx, who: AMCaller) -> GettableSilence:
    row = await ctx.store.silence(silence_id, who.org)
    if row is None:
        raise HTTPException(404, f"silence {silence_id} not found")
    return gettable(from_row(row), ctx.clock())


@router.delete("/silence/{silence_id}")
async def delete_silence(silence_id: str, ctx: AMCtx, who: AMCaller) -> dict[str, str]:
    """Expire a silence now (an expired one is Alertmanager's 500 "already expired")."""
    may_change(who)
    now = ctx.clock()
    if not await ctx.store.expire_silence(who.org, silence_id, now):
        if await ctx.store.silence(silence_id, who.org) is None:
            raise HTTPException(404, f"silence {silence_id} not found")
        raise HTTPException(500, f"silence {silence_id} already expired")
    return {}


async def _plain(request: Request, exc: Exception) -> Response:
    """Alertmanager answers errors as plain text, which amtool prints."""
    assert isinstance(exc, HTTPException)
    return PlainTextResponse(str(exc.detail), status_code=exc.status_code)


def alertmanager_api(config: Config, store: Store, teams: TeamDirectory, clock: Callable[[], float]) -> FastAPI:
    """The FastAPI app mounted at /api/v2."""
    api = FastAPI(
        title="alertbridge: Alertmanager's silence API",
        version=__version__,
        description=__doc__,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    api.state.context = Context(config, store, clock, teams)
    api.add_exception_handler(HTTPException, _plain)
    api.include_router(router)
    return api
