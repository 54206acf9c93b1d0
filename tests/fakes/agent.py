"""A fake agent service: verifies alertbridge's Standard Webhooks signature, and answers now or later.

`mode`: "note" answers with `{"note": ...}` in the response; "later" answers 202 at once and POSTs
its note to the callback URL the forward carried, `callback_delay` seconds later; "silent" answers
202 and nothing more. Every request records whether its signature verified (`verified`).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..signing import standard_webhooks_valid
from .server import FakeServer


class FakeAgent(FakeServer):
    def __init__(self, secret: str, mode: str = "note", callback_delay: float = 0.2) -> None:
        self.secret = secret
        self.mode = mode
        self.callback_delay = callback_delay
        self.verified: list[bool] = []
        self.forwards: list[dict[str, Any]] = []
        self.callbacks: list[httpx.Response] = []
        super().__init__()

    def routes(self) -> list[Route]:
        return [Route("/agent", self.run, methods=["POST"])]

    async def run(self, request: Request) -> JSONResponse:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        valid = standard_webhooks_valid(self.secret, headers, body)
        self.verified.append(valid)
        if not valid:
            return JSONResponse({"error": "bad signature"}, status_code=401)
        document = json.loads(body)
        self.forwards.append(document)
        agent = (document.get("context") or {}).get("agent", "agent")
        title = (document.get("data") or {}).get("title")
        note = f"{agent}: looked at {title!r}"
        if self.mode == "note":
            return JSONResponse({"note": note})
        if self.mode == "later" and document.get("callback"):
            threading.Thread(target=self._call_back, args=(document["callback"], note), daemon=True).start()
        return JSONResponse({"accepted": True}, status_code=202)

    def _call_back(self, callback: dict[str, str], note: str) -> None:
        time.sleep(self.callback_delay)
        answer = httpx.post(
            callback["url"],
            json={"event_id": callback["event_id"], "note": note, "agent": "fake-agent"},
            headers={"Authorization": f"Bearer {callback['token']}"},
            timeout=10,
        )
        self.callbacks.append(answer)
