"""Fake Thena apps-studio: create-app and install, with the API key checked as Thena does."""

from __future__ import annotations

import json
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .server import FakeServer


class FakeThenaAppsStudio(FakeServer):
    def __init__(self, api_key: str, *, id_field: str = "uid", wrap_in_data: bool = False) -> None:
        self.api_key = api_key
        self.id_field = id_field
        self.wrap_in_data = wrap_in_data
        self.apps: dict[str, dict[str, Any]] = {}
        self.installs: list[dict[str, Any]] = []
        super().__init__()

    def routes(self) -> list[Route]:
        return [
            Route("/apps/create-app", self.create, methods=["POST"]),
            Route("/apps/install", self.install, methods=["POST"]),
        ]

    def _refusal(self, request: Request) -> JSONResponse | None:
        key = request.headers.get("x-api-key")
        if key is None:
            return JSONResponse({"message": "Unauthorized", "statusCode": 401}, status_code=401)
        if key != self.api_key:
            return JSONResponse({"message": "Forbidden resource", "statusCode": 403}, status_code=403)
        return None

    async def create(self, request: Request) -> JSONResponse:
        if (refusal := self._refusal(request)) is not None:
            return refusal
        body = json.loads(await request.body())
        manifest = body.get("manifest") or {}
        slug = (manifest.get("app") or {}).get("slug")
        if body.get("app_visibility") not in ("private", "public", "unlisted") or not slug:
            return JSONResponse({"message": ["app_visibility and manifest.app.slug are required"]}, status_code=400)
        if any(app["slug"] == slug for app in self.apps.values()):
            return JSONResponse({"message": f"An app with slug {slug} already exists"}, status_code=409)
        app_id = secrets.token_hex(13).upper()[:26]
        app = {
            "name": manifest["app"].get("name"),
            "slug": slug,
            "visibility": body["app_visibility"],
            "manifest": manifest,
        }
        self.apps[app_id] = app
        answer: dict[str, Any] = {self.id_field: app_id, **app}
        return JSONResponse({"data": answer} if self.wrap_in_data else answer, status_code=201)

    async def install(self, request: Request) -> JSONResponse:
        if (refusal := self._refusal(request)) is not None:
            return refusal
        body = json.loads(await request.body())
        app = self.apps.get(body.get("appId"))
        if app is None:
            return JSONResponse({"message": "App not found"}, status_code=404)
        self.installs.append(body)
        return JSONResponse(
            {
                "appName": app["name"],
                "botToken": "pk_live_fake_bot_token_123",
                "appInstalledForTeams": body.get("teamIds", []),
                "appIdentifier": app["slug"],
            },
            status_code=201,
        )
