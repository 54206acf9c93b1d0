"""Fake Slack Web API: chat.postMessage, checked against Slack's published OpenAPI description.

Answers as Slack does: HTTP 200 with `{"ok": false, "error": ...}` for a refusal (an unknown
channel, a wrong token), `ratelimited` with 429 and Retry-After through `behave()`.
"""

from __future__ import annotations

import itertools
import json
from functools import cache
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .server import FakeServer

SPEC = Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "slack" / "web-openapi-v2.json"


@cache
def _parameters() -> tuple[set[str], set[str]]:
    """(every parameter chat.postMessage takes, the required ones), from the spec."""
    operation = json.loads(SPEC.read_text())["paths"]["/chat.postMessage"]["post"]
    names = {p["name"] for p in operation["parameters"] if p["in"] == "formData"}
    required = {p["name"] for p in operation["parameters"] if p["in"] == "formData" and p.get("required")}
    return names, required


class FakeSlack(FakeServer):
    def __init__(self, token: str = "xoxb-test", channels: tuple[str, ...] = ("C0A4967KRBM",)) -> None:
        self.token = token
        self.channels = set(channels)
        self.messages: list[dict[str, Any]] = []
        self.validation_errors: list[str] = []
        self._ts = itertools.count(1)
        super().__init__()

    def routes(self) -> list[Route]:
        return [Route("/api/chat.postMessage", self.post_message, methods=["POST"])]

    async def post_message(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        body = json.loads(await request.body())
        known, required = _parameters()
        problems = [f"unknown parameter {k}" for k in body if k not in known]
        problems += [f"missing {k}" for k in required if k not in body]
        if problems:
            self.validation_errors.extend(problems)
            return JSONResponse({"ok": False, "error": "invalid_arguments", "errors": problems})
        if body["channel"] not in self.channels:
            return JSONResponse({"ok": False, "error": "channel_not_found"})
        ts = f"1795000000.{next(self._ts):06d}"
        self.messages.append({**body, "ts": ts})
        return JSONResponse({"ok": True, "channel": body["channel"], "ts": ts, "message": {"text": body.get("text")}})
