"""Fake Opsgenie: the Alert API v2 as Opsgenie runs it, and its outgoing webhooks.

Writes are asynchronous, as in Opsgenie: the API answers 202 with a `requestId` and applies
the change `process_delay` seconds later; `GET /v2/alerts/requests/{id}` says 404 until then.
Once a change is applied, the fake POSTs the webhook a Webhook integration would send to
`webhook_url` (alertbridge), whoever made the change: a person (the `user_*` methods stand for
Opsgenie's UI) or the API (alertbridge itself, whose echo must not come back again).
Request bodies are checked against Opsgenie's published Swagger description (shared/specs).
"""

from __future__ import annotations

import itertools
import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .pagerduty import _inline
from .server import FakeServer, WebhookSender

SPEC = Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "opsgenie" / "swagger.json"
ACTIONS = {
    "acknowledge": ("AcknowledgeAlertPayload", "Acknowledge"),
    "unacknowledge": ("UnAcknowledgeAlertPayload", "UnAcknowledge"),
    "close": ("CloseAlertPayload", "Close"),
    "notes": ("AddNoteToAlertPayload", "AddNote"),
}


@cache
def _validator(definition: str) -> jsonschema.Draft4Validator:
    spec = json.loads(SPEC.read_text())
    return jsonschema.Draft4Validator(_inline(spec, spec["definitions"][definition]))


@dataclass
class Alert:
    id: str
    tiny_id: str
    message: str
    alias: str | None = None
    description: str | None = None
    priority: str = "P3"
    status: str = "open"
    acknowledged: bool = False
    notes: list[tuple[str, str]] = field(default_factory=list)  # (user, note)
    tags: list[str] = field(default_factory=list)
    created_at: int = field(default_factory=lambda: int(time.time() * 1000))


class FakeOpsgenie(FakeServer):
    def __init__(self, api_key: str = "og-key", integration_id: str = "ccb77fcc-3474-4ee3-8140-300926635ed1") -> None:
        self.api_key = api_key
        self.integration_id = integration_id
        self.webhook_url: str | None = None
        self.webhook_headers: dict[str, str] = {}  # the integration's custom headers
        self.process_delay = 0.05
        self._pending: queue.SimpleQueue[tuple[float, str, Any]] = queue.SimpleQueue()
        self._working = threading.Event()  # cleared by pause(): accepted writes wait to be applied
        self._working.set()
        threading.Thread(target=self._work, daemon=True).start()
        self.alerts: dict[str, Alert] = {}
        self.processed: dict[str, dict[str, Any]] = {}
        self.validation_errors: list[str] = []
        self.webhooks_sent: list[dict[str, Any]] = []
        self._tiny = itertools.count(1)
        self._outbox = WebhookSender()
        self._state = threading.RLock()
        super().__init__()

    def routes(self) -> list[Route]:
        return [
            Route("/v2/alerts", self.create, methods=["POST"]),
            Route("/v2/alerts", self.list_alerts, methods=["GET"]),
            Route("/v2/alerts/requests/{request_id}", self.request_status, methods=["GET"]),
            Route("/v2/alerts/{identifier}/{action}", self.act, methods=["POST"]),
        ]

    # ---- what counts as "calls" in tests

    def api_writes(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests if r.method == "POST"]

    def find(self, identifier: str, kind: str = "id") -> Alert | None:
        with self._state:
            if kind == "alias":
                return next((a for a in self.alerts.values() if a.alias == identifier), None)
            if kind == "tiny":
                return next((a for a in self.alerts.values() if a.tiny_id == identifier), None)
            return self.alerts.get(identifier)

    # ---- the API

    def _refuse(self, status: int, message: str) -> JSONResponse:
        return JSONResponse({"message": message, "took": 0.001, "requestId": str(uuid.uuid4())}, status_code=status)

    async def _checked(self, request: Request, definition: str) -> tuple[dict[str, Any] | None, JSONResponse | None]:
        if request.headers.get("authorization") != f"GenieKey {self.api_key}":
            self.validation_errors.append("bad Authorization header")
            return None, self._refuse(401, "Could not authenticate")
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            self.validation_errors.append("invalid JSON")
            return None, self._refuse(400, "Invalid JSON")
        problems = [e.message for e in _validator(definition).iter_errors(body)]
        if problems:
            self.validation_errors.extend(problems)
            return None, self._refuse(422, "; ".join(problems))
        return body, None

    def _accept(self, apply: Any) -> JSONResponse:
        request_id = str(uuid.uuid4())
        # One worker applies the writes in the order they were accepted (a timer per write let a
        # later one win the race under load), each `process_delay` after it came in.
        self._pending.put((time.monotonic() + self.process_delay, request_id, apply))
        return JSONResponse(
            {"result": "Request will be processed", "took": 0.01, "requestId": request_id}, status_code=202
        )

    def pause(self) -> None:
        """Accept writes (202) but apply none, and so send none of their webhooks, until `resume()`."""
        self._working.clear()

    def resume(self) -> None:
        self._working.set()

    def _work(self) -> None:
        while True:
            due, request_id, apply = self._pending.get()
            self._working.wait()
            time.sleep(max(0.0, due - time.monotonic()))
            self._process(request_id, apply)

    def _process(self, request_id: str, apply: Any) -> None:
        with self._state:
            outcome = apply(request_id)
            self.processed[request_id] = {"processedAt": time.time(), **outcome}

    async def list_alerts(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"GenieKey {self.api_key}":
            return self._refuse(401, "Could not authenticate")
        with self._state:
            data = [{"id": a.id, "message": a.message, "status": a.status} for a in self.alerts.values()]
        return JSONResponse({"data": data[: int(request.query_params.get("limit", "20"))], "took": 0.01})

    async def create(self, request: Request) -> JSONResponse:
        body, refusal = await self._checked(request, "CreateAlertPayload")
        if refusal is not None:
            return refusal
        assert body is not None

        def apply(request_id: str) -> dict[str, Any]:
            alias = body.get("alias")
            existing = self.find(alias, "alias") if alias else None
            if existing is not None and existing.status == "open":  # Opsgenie dedupes open alerts on alias
                return {"isSuccess": True, "action": "Create", "status": "Deduplicated", "alertId": existing.id}
            alert = Alert(
                str(uuid.uuid4()),
                str(next(self._tiny)),
                body["message"],
                alias,
                body.get("description"),
                body.get("priority", "P3"),
                tags=list(body.get("tags") or []),
            )
            self.alerts[alert.id] = alert
            self._webhook("Create", alert, body.get("user"), "API", request_id)
            return {"isSuccess": True, "action": "Create", "status": "Created", "alertId": alert.id, "alias": alias}

        return self._accept(apply)

    async def act(self, request: Request) -> JSONResponse:
        action = request.path_params["action"]
        if action not in ACTIONS:
            return self._refuse(404, f"no such action {action}")
        definition, webhook_action = ACTIONS[action]
        body, refusal = await self._checked(request, definition)
        if refusal is not None:
            return refusal
        assert body is not None
        identifier = request.path_params["identifier"]
        kind = request.query_params.get("identifierType", "id")

        def apply(request_id: str) -> dict[str, Any]:
            alert = self.find(identifier, kind)
            if alert is None:
                return {"isSuccess": False, "action": webhook_action, "status": "Alert does not exist"}
            user = body.get("user")
            self._change(alert, action, user, body.get("note"))
            self._webhook(webhook_action, alert, user, "API", request_id, note=body.get("note"))
            return {"isSuccess": True, "action": webhook_action, "status": "Done", "alertId": alert.id}

        return self._accept(apply)

    async def request_status(self, request: Request) -> JSONResponse:
        with self._state:
            found = self.processed.get(request.path_params["request_id"])
        if found is None:
            return self._refuse(404, "Request not found. It might not be processed, yet.")
        data = {"success": found["isSuccess"], "integrationId": self.integration_id, **found}
        return JSONResponse({"data": data, "took": 0.002, "requestId": str(uuid.uuid4())})

    @staticmethod
    def _change(alert: Alert, action: str, user: str | None, note: str | None) -> None:
        if action == "acknowledge":
            alert.acknowledged = True
        elif action == "unacknowledge":
            alert.acknowledged = False
        elif action == "close":
            alert.status = "closed"
        if note:
            alert.notes.append((user or "", note))

    # ---- people using Opsgenie's UI

    def user_create(self, message: str, user: str = "alice@example.com", priority: str = "P1", **extra: Any) -> Alert:
        with self._state:
            alert = Alert(str(uuid.uuid4()), str(next(self._tiny)), message, priority=priority, **extra)
            self.alerts[alert.id] = alert
        self._webhook("Create", alert, user, "web", None)
        return alert

    def user(self, action: str, alert: Alert, user: str = "alice@example.com", note: str | None = None) -> None:
        """A person acts on the alert: acknowledge, unacknowledge, close or notes."""
        with self._state:
            self._change(alert, action, user, note)
        self._webhook(ACTIONS[action][1], alert, user, "web", None, note=note)

    # ---- outgoing webhooks

    def _webhook(
        self, action: str, alert: Alert, user: str | None, via: str, request_id: str | None, note: str | None = None
    ) -> None:
        if not self.webhook_url:
            return
        now_ns = time.time_ns()
        payload: dict[str, Any] = {
            "action": action,
            "alert": {
                "alertId": alert.id,
                "message": alert.message,
                "tags": alert.tags,
                "tinyId": alert.tiny_id,
                "entity": "",
                "alias": alert.alias or alert.id,
                "createdAt": alert.created_at,
                "updatedAt": now_ns,
                "username": user or "System",
                "userId": f"user-{user}" if user else "",
                "priority": alert.priority,
                **({"description": alert.description} if alert.description and action == "Create" else {}),
                **({"note": note} if action == "AddNote" and note else {}),
            },
            "source": {"name": user or "", "type": via},
            "integrationId": self.integration_id,
            "integrationName": "Webhook",
            "integrationType": "Webhook",
            "alertFlowContext": {"requestId": request_id or str(uuid.uuid4()), "traceId": str(uuid.uuid4())},
        }
        self.webhooks_sent.append(payload)
        self._outbox.send(self.webhook_url, payload, dict(self.webhook_headers))
