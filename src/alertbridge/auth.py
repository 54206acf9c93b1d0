"""Who is calling: an API token (`Authorization: Bearer ab_…`), or a console session cookie.

Tokens and session ids are stored as SHA-256 digests only. A request that changes something
with a session cookie must also carry the session's CSRF token in `X-CSRF-Token` (another site
can make a browser send the cookie, not read the token). Cookies are HttpOnly, SameSite=Lax,
and Secure whenever the console is reached over HTTPS (directly or behind a proxy that says so
in X-Forwarded-Proto).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request

from alertbridge.security import same_secret, token_hash
from alertbridge.store.base import Store

COOKIE = "ab_session"
# What a token or a user may be: `viewer` reads; `member` may also replay; `admin` may also make
# endpoints and targets.
ROLES = ("viewer", "member", "admin")
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Caller:
    org: str
    role: str
    name: str
    user: str | None  # the user's email, for a session or a token made for a user


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def caller(request: Request, store: Store, clock: Callable[[], float] = time.time) -> Caller:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        found = await store.token_lookup(token_hash(auth[7:].strip()))
        if found is None:
            raise Refused(401, "unknown API token")
        org, role, name, user = found
        return Caller(org, role, name, user)
    cookie = request.cookies.get(COOKIE)
    if cookie:
        session = await store.session(token_hash(cookie), clock())
        if session is None:
            raise Refused(401, "the session has ended: sign in again")
        if request.method not in SAFE and not same_secret(request.headers.get("x-csrf-token", ""), session["csrf"]):
            raise Refused(403, "missing or wrong X-CSRF-Token")
        return Caller(session["org"], session["role"], session["email"], session["email"])
    raise Refused(401, "Authorization: Bearer <API token> is required (alertbridge tokens create), or sign in")


def secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
