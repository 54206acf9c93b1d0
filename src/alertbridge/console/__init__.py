"""The console: a page of plain HTML and JavaScript served by alertbridge (no build step), over
the admin API. Sign-in makes a session: an HttpOnly cookie, and a CSRF token the page sends back
with every change.

    GET  /console            the page      POST /console/login    {email, password, org?}
    GET  /console/me         the session   POST /console/logout
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from alertbridge import logs
from alertbridge.auth import COOKIE, Refused, caller, secure
from alertbridge.security import token_hash
from alertbridge.store.base import Store

log = logs.get("alertbridge.console")
FILES = Path(__file__).parent  # the static files sit beside this module, in the package
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
SESSION_SECONDS = 12 * 3600
_hasher = PasswordHasher()


def console_routes(store: Store, clock: Callable[[], float] = time.time) -> list[Route]:
    async def page(request: Request) -> Response:
        return FileResponse(FILES / "index.html", media_type="text/html")

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return JSONResponse({"error": "no such file"}, status_code=404)
        return FileResponse(FILES / name, media_type=ASSETS[name])

    async def login(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            email, password = str(body["email"]).strip().lower(), str(body["password"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "send {email, password}"}, status_code=400)
        users = await store.find_user(email)
        if body.get("org"):
            users = [u for u in users if u["org"] == body["org"]]
        user = users[0] if len(users) == 1 else None
        ok = False
        if user is not None:
            try:
                ok = _hasher.verify(user["password_hash"], password)
            except (VerificationError, InvalidHashError):
                ok = False
        if not ok or user is None:
            log.warning("sign_in_refused", email=email)  # never the password
            return JSONResponse({"error": "wrong email or password"}, status_code=401)
        session, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        await store.create_session(
            token_hash(session), user["org"], user["email"], user["role"], csrf, clock() + SESSION_SECONDS
        )
        answer = JSONResponse({"email": user["email"], "org": user["org"], "role": user["role"], "csrf": csrf})
        answer.set_cookie(
            COOKIE, session, max_age=SESSION_SECONDS, httponly=True, samesite="lax", secure=secure(request), path="/"
        )
        log.info("signed_in", email=user["email"], org=user["org"])
        return answer

    async def me(request: Request) -> Response:
        cookie = request.cookies.get(COOKIE)
        session = await store.session(token_hash(cookie), clock()) if cookie else None
        if session is None:
            return JSONResponse({"error": "not signed in"}, status_code=401)
        return JSONResponse(
            {"email": session["email"], "org": session["org"], "role": session["role"], "csrf": session["csrf"]}
        )

    async def logout(request: Request) -> Response:
        try:
            await caller(request, store, clock)  # the CSRF check: another site cannot sign you out
        except Refused as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        cookie = request.cookies.get(COOKIE)
        if cookie:
            await store.end_session(token_hash(cookie))
        answer = JSONResponse({"ok": True})
        answer.delete_cookie(COOKIE, path="/")
        return answer

    async def root(request: Request) -> Response:
        return RedirectResponse("/console", status_code=307)

    return [
        Route("/", root, methods=["GET"]),
        Route("/console", page, methods=["GET"]),
        Route("/console/static/{name}", asset, methods=["GET"]),
        Route("/console/login", login, methods=["POST"]),
        Route("/console/me", me, methods=["GET"]),
        Route("/console/logout", logout, methods=["POST"]),
    ]
