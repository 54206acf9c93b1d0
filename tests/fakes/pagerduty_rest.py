"""Fake PagerDuty REST API v2: incidents, notes, status changes and reassignment, with PagerDuty's checks.

With `webhook_url` set, every change is reported back as a signed Generic Webhooks V3 event
(incident.triggered, .acknowledged, .unacknowledged, .annotated, .resolved, .reassigned), whoever
made it: the API (the user behind the `From` header) or a person (the `user_*` methods).

Answers are shaped as the OpenAPI description's: a status change answers the whole incident, with
`last_status_change_by` (a user reference: the user behind `From` when the API changed it) and its
`acknowledgements`; a note answers the note with its `user`.

Every write is checked as PagerDuty checks it: the `Authorization: Token token=…` key, the versioned
`Accept` header, `Content-Type`, the `From` header the OpenAPI description marks required, and the
JSON body against the published schema (shared/specs). Problems are answered the way PagerDuty
answers them (`{"error": {"message", "code", "errors"}}`) and kept in `validation_errors`.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..signing import pagerduty_signature
from .pagerduty import request_validator, response_validator
from .server import FakeServer, WebhookSender

ACCEPT = "application/vnd.pagerduty+json;version=2"


@dataclass
class RestIncident:
    id: str
    title: str
    service_id: str
    urgency: str
    incident_key: str | None
    status: str = "triggered"
    notes: list[str] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)
    resolution: str | None = None
    number: int = 0
    changed_by: dict[str, Any] | None = None  # last_status_change_by: who last changed the status
    acknowledgers: list[dict[str, Any]] = field(default_factory=list)


class FakePagerDutyREST(FakeServer):
    def __init__(self, token: str = "pd-api-token", from_email: str = "bridge@example.com") -> None:
        self.token = token
        self.from_email = from_email
        self.incidents: dict[str, RestIncident] = {}
        self.validation_errors: list[str] = []
        self._ids = itertools.count(1)
        self.webhook_url: str | None = None
        self.webhook_secret = "pd-webhook-secret"
        self.webhooks_sent: list[dict[str, Any]] = []
        self._outbox = WebhookSender()
        self._ahead = WebhookSender()  # a person's webhooks that overtake held ones (user_acts `ahead`)
        self._events = itertools.count(1)
        self._state = threading.Lock()
        self._create = request_validator("rest-openapiv3.json", "/incidents", "post")
        # The OpenAPI document types `body.details` as an object, but PagerDuty's API reference (its
        # example, and shared/reference/wire-formats.md) sends a string, which the real API takes.
        body_schema = self._create.schema["properties"]["incident"]["properties"]["body"]
        body_schema["properties"]["details"] = {"type": ["string", "object"]}
        self._update = request_validator("rest-openapiv3.json", "/incidents/{id}", "put")
        self._note = request_validator("rest-openapiv3.json", "/incidents/{id}/notes", "post")
        self._answers = {
            "create": response_validator("rest-openapiv3.json", "/incidents", "post", "201"),
            "update": response_validator("rest-openapiv3.json", "/incidents/{id}", "put", "200"),
            "note": response_validator("rest-openapiv3.json", "/incidents/{id}/notes", "post", "200"),
        }
        super().__init__()

    def routes(self) -> list[Route]:
        return [
            Route("/incidents", self.create, methods=["POST"]),
            Route("/incidents/{id}", self.update, methods=["PUT"]),
            Route("/incidents/{id}/notes", self.note, methods=["POST"]),
            Route("/abilities", self.abilities, methods=["GET"]),
        ]

    async def abilities(self, request: Request) -> JSONResponse:
        """What an API key may do: the cheapest way to tell a working key from a refused one."""
        if request.headers.get("authorization") != f"Token token={self.token}":
            return self._error(401, "Authentication failed", 2006)
        if request.headers.get("accept") != ACCEPT:
            self.validation_errors.append("Accept header missing on GET /abilities")
        return JSONResponse({"abilities": ["teams", "read_only_users", "urgencies"]})

    def add_incident(self, incident_id: str, service_id: str = "PSVC1", title: str = "existing") -> RestIncident:
        """An incident PagerDuty already has (one its webhooks told us about)."""
        incident = RestIncident(incident_id, title, service_id, "high", None)
        self.incidents[incident_id] = incident
        return incident

    def _answer(self, kind: str, body: dict[str, Any], status: int = 200) -> JSONResponse:
        """The answer, checked against the published schema: a fake that answered off-spec would let
        the client read what PagerDuty never sends. Problems land in `validation_errors`."""
        problems = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in self._answers[kind].iter_errors(body)]
        self.validation_errors.extend(f"the fake's own {kind} answer: {p}" for p in problems)
        return JSONResponse(body, status)

    @staticmethod
    def _error(status: int, message: str, code: int, errors: list[str] | None = None) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "code": code, "errors": errors or []}}, status_code=status)

    async def _checked(self, request: Request, validator: Any) -> tuple[dict[str, Any] | None, JSONResponse | None]:
        headers = request.headers
        if headers.get("authorization") != f"Token token={self.token}":
            self.validation_errors.append("bad Authorization header")
            return None, self._error(401, "Authentication failed", 2006)
        problems = []
        if headers.get("accept") != ACCEPT:
            problems.append(f"Accept must be {ACCEPT}, got {headers.get('accept')!r}")
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            problems.append(f"Content-Type must be application/json, got {headers.get('content-type')!r}")
        if headers.get("from") != self.from_email:
            problems.append(f"From must be a user's email on the account, got {headers.get('from')!r}")
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
            problems.append("the body is not JSON")
        if body is not None:
            problems += [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(body)]
        if problems:
            self.validation_errors.extend(problems)
            return None, self._error(400, "Invalid Input Provided", 2001, problems)
        return body, None

    async def create(self, request: Request) -> JSONResponse:
        body, refusal = await self._checked(request, self._create)
        if refusal is not None:
            return refusal
        assert body is not None
        spec = body["incident"]
        with self._state:
            key = spec.get("incident_key")
            if key and any(i.incident_key == key and i.status != "resolved" for i in self.incidents.values()):
                return self._error(
                    400,
                    "Invalid Input Provided",
                    2001,
                    ["Open incident with matching dedup key already exists on this service"],
                )
            number = next(self._ids)
            incident = RestIncident(
                f"PINC{number}", spec["title"], spec["service"]["id"], spec.get("urgency", "high"), key, number=number
            )
            self.incidents[incident.id] = incident
        self._webhook("incident.triggered", incident, self.API_USER)
        return self._answer("create", {"incident": self._incident(incident)}, 201)

    async def update(self, request: Request) -> JSONResponse:
        body, refusal = await self._checked(request, self._update)
        if refusal is not None:
            return refusal
        assert body is not None
        incident = self.incidents.get(request.path_params["id"])
        if incident is None:
            return self._error(404, "Not Found", 2100)
        change = body["incident"]
        with self._state:
            before = self._change(incident, change.get("status"), self.API_USER)
            if change.get("resolution"):
                incident.resolution = change["resolution"]
            if change.get("assignments"):
                incident.assignees = [a["assignee"]["id"] for a in change["assignments"]]
            answer = self._incident(incident)
        self._report(incident, before, change, self.API_USER)
        return self._answer("update", {"incident": answer})

    @staticmethod
    def _change(incident: RestIncident, status: str | None, who: dict[str, Any]) -> str:
        """A new status by `who`, as PagerDuty keeps it; returns the status before."""
        before = incident.status
        if status and status != before:
            incident.status = status
            incident.changed_by = who
            incident.acknowledgers = [] if status != "acknowledged" else incident.acknowledgers
        if status == "acknowledged":
            incident.acknowledgers.append(who)
        return before

    def _incident(self, incident: RestIncident) -> dict[str, Any]:
        """The incident as the REST API answers it (the OpenAPI `Incident`, the fields a client reads)."""
        at = "2026-11-24T12:00:00Z"
        answer: dict[str, Any] = {
            "id": incident.id,
            "type": "incident",
            "summary": f"[#{incident.number}] {incident.title}",
            "self": f"{self.url}/incidents/{incident.id}",
            "incident_number": incident.number,
            "title": incident.title,
            "status": incident.status,
            "urgency": incident.urgency,
            "created_at": at,
            "updated_at": at,
            "last_status_change_at": at,
            "service": {"id": incident.service_id, "type": "service_reference", "summary": "Service"},
            "assignments": [{"at": at, "assignee": {"id": a, "type": "user_reference"}} for a in incident.assignees],
            "acknowledgements": [{"at": at, "acknowledger": who} for who in incident.acknowledgers],
        }
        if incident.incident_key:
            answer["incident_key"] = incident.incident_key
        if incident.changed_by:
            answer["last_status_change_by"] = incident.changed_by
        return answer

    async def note(self, request: Request) -> JSONResponse:
        body, refusal = await self._checked(request, self._note)
        if refusal is not None:
            return refusal
        assert body is not None
        incident = self.incidents.get(request.path_params["id"])
        if incident is None:
            return self._error(404, "Not Found", 2100)
        with self._state:
            incident.notes.append(body["note"]["content"])
            note_id = f"PNOTE{len(incident.notes)}"
        self._webhook("incident.annotated", incident, self.API_USER, note=(note_id, body["note"]["content"]))
        note = {
            "id": note_id,
            "user": self.API_USER,
            "channel": {"summary": "The PagerDuty website or APIs"},
            "content": body["note"]["content"],
            "created_at": "2026-11-24T12:00:00Z",
        }
        return self._answer("note", {"note": note})

    # ---- people using PagerDuty's UI

    API_USER = {"id": "PBRIDGE", "type": "user_reference", "summary": "alertbridge"}

    def user_acts(
        self,
        incident_id: str,
        status: str | None = None,
        note: str | None = None,
        name: str = "Bob",
        user_id: str = "PBOB",
        ahead: bool = False,
    ) -> None:
        """A person changes the incident: a new status (acknowledged, triggered, resolved) or a note.
        `ahead`: its webhooks are delivered before those held back (V3 webhooks promise no order, and
        a failed delivery is retried later)."""
        person = {"id": user_id, "type": "user_reference", "summary": name}
        incident = self.incidents[incident_id]
        with self._state:
            before = self._change(incident, status, person)
            if note:
                incident.notes.append(note)
        outbox = self._ahead if ahead else self._outbox
        if status:
            self._report(incident, before, {"status": status}, person, outbox)
        if note:
            self._webhook("incident.annotated", incident, person, (f"PNOTE{len(incident.notes)}", note), outbox)

    # ---- outgoing webhooks

    def _report(
        self,
        incident: RestIncident,
        before: str,
        change: dict[str, Any],
        agent: dict[str, Any],
        outbox: WebhookSender | None = None,
    ) -> None:
        status = change.get("status")
        if status and status != before:
            kind = {
                "acknowledged": "incident.acknowledged",
                "resolved": "incident.resolved",
                "triggered": "incident.unacknowledged" if before == "acknowledged" else "incident.reopened",
            }[status]
            self._webhook(kind, incident, agent, outbox=outbox)
        if change.get("assignments"):
            self._webhook("incident.reassigned", incident, agent, outbox=outbox)

    def _webhook(
        self,
        kind: str,
        incident: RestIncident,
        agent: dict[str, Any],
        note: tuple[str, str] | None = None,
        outbox: WebhookSender | None = None,
    ) -> None:
        if not self.webhook_url:
            return
        reference = {"id": incident.id, "type": "incident_reference", "summary": incident.title}
        data: dict[str, Any]
        if note is not None:
            data = {"id": note[0], "type": "incident_note", "content": note[1], "incident": reference}
        else:
            data = {
                "id": incident.id,
                "type": "incident",
                "title": incident.title,
                "status": incident.status,
                "urgency": incident.urgency,
                "incident_key": incident.incident_key,
                "service": {"id": incident.service_id, "type": "service_reference", "summary": "Service"},
                "assignees": [{"id": a, "type": "user_reference"} for a in incident.assignees],
            }
        event = {
            "id": f"EV{next(self._events):06d}",
            "event_type": kind,
            "resource_type": "incident",
            "occurred_at": "2026-11-24T12:00:00.000Z",
            "agent": agent,
            "client": None,
            "data": data,
        }
        self.webhooks_sent.append(event)
        body = json.dumps({"event": event}).encode()
        headers = {
            "x-pagerduty-signature": pagerduty_signature(body, self.webhook_secret),
            "x-webhook-id": event["id"],
        }
        (outbox or self._outbox).send(self.webhook_url, body, headers)
