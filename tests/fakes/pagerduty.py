"""Fake PagerDuty: the Events API v2 with its dedup semantics, and the REST API's incident writes.

Requests are validated against PagerDuty's published OpenAPI descriptions (shared/specs), so a
request PagerDuty would refuse is refused here too, and recorded in `validation_errors`.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .server import FakeServer

SPECS = Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "pagerduty"


@cache
def _spec(name: str) -> dict[str, Any]:
    return json.loads((SPECS / name).read_text())


def request_validator(spec_name: str, path: str, method: str) -> jsonschema.Draft7Validator:
    """A validator for the JSON request body of `method path` in the named OpenAPI document."""
    spec = _spec(spec_name)
    body = spec["paths"][path][method]["requestBody"]
    if "$ref" in body:
        body = _resolve(spec, body["$ref"])
    return jsonschema.Draft7Validator(_inline(spec, body["content"]["application/json"]["schema"]))


def response_validator(spec_name: str, path: str, method: str, status: str) -> jsonschema.Draft7Validator:
    """A validator for the JSON body of the `status` answer to `method path`: a fake answers as the
    service does."""
    spec = _spec(spec_name)
    answer = spec["paths"][path][method]["responses"][status]
    if "$ref" in answer:
        answer = _resolve(spec, answer["$ref"])
    return jsonschema.Draft7Validator(_inline(spec, answer["content"]["application/json"]["schema"]))


def _resolve(spec: dict[str, Any], ref: str) -> Any:
    node: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[int(part)] if isinstance(node, list) else node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _inline(spec: dict[str, Any], node: Any, depth: int = 0) -> Any:
    """The schema with local $refs replaced by what they point at (the specs are acyclic where we use them)."""
    if depth > 30:
        return {}
    if isinstance(node, dict):
        if "$ref" in node and isinstance(node["$ref"], str) and node["$ref"].startswith("#/"):
            return _inline(spec, _resolve(spec, node["$ref"]), depth + 1)
        return {k: _inline(spec, v, depth + 1) for k, v in node.items() if k not in ("example", "examples")}
    if isinstance(node, list):
        return [_inline(spec, v, depth + 1) for v in node]
    return node


@dataclass
class FakeIncident:
    routing_key: str
    dedup_key: str
    summary: str
    severity: str
    payload: dict[str, Any]
    status: str = "triggered"
    events: list[dict[str, Any]] = field(default_factory=list)


class FakePagerDutyEvents(FakeServer):
    """Events API v2 at /v2/enqueue: one incident per open (routing_key, dedup_key), as PagerDuty does."""

    def __init__(self) -> None:
        self.incidents: list[FakeIncident] = []
        self.validation_errors: list[str] = []
        self._state = threading.Lock()
        self._validator = request_validator("events-v2-openapiv3.json", "/enqueue", "post")
        super().__init__()

    def routes(self) -> list[Route]:
        return [Route("/v2/enqueue", self.enqueue, methods=["POST"]), Route("/enqueue", self.enqueue, methods=["POST"])]

    def incidents_for(self, routing_key: str) -> list[FakeIncident]:
        return [i for i in self.incidents if i.routing_key == routing_key]

    def _problems(self, body: Any) -> list[str]:
        if not isinstance(body, dict):
            return ["the body is not a JSON object"]
        problems = [e.message for e in self._validator.iter_errors(body)]
        action = body.get("event_action")
        if not isinstance(body.get("routing_key"), str) or not body.get("routing_key"):
            problems.append("routing_key is required")
        if action not in ("trigger", "acknowledge", "resolve"):
            problems.append(f"event_action {action!r} is not trigger, acknowledge or resolve")
        key = body.get("dedup_key")
        if key is not None and (not isinstance(key, str) or len(key) > 255):
            problems.append("dedup_key must be a string of at most 255 characters")
        if action == "trigger":
            payload = body.get("payload") if isinstance(body.get("payload"), dict) else {}
            summary = payload.get("summary")
            if not isinstance(summary, str) or not summary or len(summary) > 1024:
                problems.append("payload.summary is required, at most 1024 characters")
            if not payload.get("source"):
                problems.append("payload.source is required")
            if payload.get("severity") not in ("critical", "error", "warning", "info"):
                problems.append("payload.severity must be critical, error, warning or info")
        elif action in ("acknowledge", "resolve") and not key:
            problems.append("dedup_key is required to acknowledge or resolve")
        return problems

    async def enqueue(self, request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except ValueError:
            self.validation_errors.append("invalid JSON")
            return JSONResponse(
                {
                    "status": "Unrecognized object",
                    "message": "Event object format is unrecognized",
                    "errors": ["JSON parse error"],
                },
                status_code=400,
            )
        problems = self._problems(body)
        if problems:
            self.validation_errors.extend(problems)
            return JSONResponse(
                {"status": "invalid event", "message": "Event object is invalid", "errors": problems}, status_code=400
            )
        action, routing_key = body["event_action"], body["routing_key"]
        key = body.get("dedup_key") or uuid.uuid4().hex
        with self._state:
            open_incident = next(
                (
                    i
                    for i in self.incidents
                    if i.routing_key == routing_key and i.dedup_key == key and i.status != "resolved"
                ),
                None,
            )
            if action == "trigger":
                if open_incident is None:
                    payload = body["payload"]
                    open_incident = FakeIncident(routing_key, key, payload["summary"], payload["severity"], payload)
                    self.incidents.append(open_incident)
                open_incident.events.append(body)
            elif open_incident is not None:
                open_incident.events.append(body)
                open_incident.status = "acknowledged" if action == "acknowledge" else "resolved"
        return JSONResponse({"status": "success", "message": "Event processed", "dedup_key": key}, status_code=202)
