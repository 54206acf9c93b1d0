"""What the targets' unit tests feed `classify`: a provider's answer as the transport reads it."""

from __future__ import annotations

import json
from typing import Any

from alertbridge.events import Event
from alertbridge.targets.base import Response, Sending

from .fakes.pagerduty import _resolve, _spec

NOW = 1_795_000_000.0


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Response:
    """An HTTP answer: `body` as JSON (bytes as they are), header names in lower case as the transport gives them."""
    content = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    return Response(status, {k.lower(): v for k, v in (headers or {}).items()}, content)


def sending(
    action: str, event: Event | None = None, target: str = "the-target", team_token: str | None = None
) -> Sending:
    return Sending("01JDELIVERY0000000000000000", event, NOW, target=target, action=action, team_token=team_token)


def pagerduty_example(spec_name: str, path: str, method: str, status: str) -> Any:
    """The example answer PagerDuty's OpenAPI description gives for an operation's status (its own words)."""
    spec = _spec(spec_name)
    node: Any = spec["paths"][path][method]["responses"][status]
    while "$ref" in node:
        node = _resolve(spec, node["$ref"])
    content = node["content"]["application/json"]
    return content["example"] if "example" in content else next(iter(content["examples"].values()))["value"]
