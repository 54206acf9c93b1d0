"""The hot path: from a sender's request to a durable event and an answer.

Only what must happen before the answer happens here: find the endpoint, bound the body,
check the credentials, parse, compute the endpoint's labels, commit. Routing and delivery
run after, in the background. A plain ASGI callable, so no framework layer sits on the way;
paths that are not endpoints fall through to the operator's app (health, metrics, API).

Answers: 2xx only once the event is durable (a redelivery gets the same answer); 400 an
unreadable body; 401/403 missing or wrong credentials; 404 an unknown path; 405 a method
the source does not take; 413 a body over the limit; 503 only when the store cannot take
the event. Every refusal is counted and logged, without the body or any secret.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

import msgspec
from starlette.types import ASGIApp, Receive, Scope, Send

from alertbridge import logs
from alertbridge.events import Event
from alertbridge.metrics import Metrics
from alertbridge.sources import refs
from alertbridge.sources.base import Accepted, BadPayload, Endpoint, Incoming, Refused
from alertbridge.store.base import Ingest, Stored
from alertbridge.templating.context import context
from alertbridge.templating.templates import Bound, RenderError, Templates

log = logs.get("alertbridge.ingress")
_json = msgspec.json.Encoder()


class TooLarge(Exception):
    pass


class _Counters(NamedTuple):
    received: Any
    new: Any
    duplicate: Any
    seconds: Any


class Ingress:
    def __init__(
        self,
        endpoints: Mapping[str, Endpoint],
        store: Ingest,
        templates: Templates,
        metrics: Metrics,
        on_stored: Callable[[], None],
        fallback: ASGIApp,
        clock: Callable[[], float] = time.time,
        ingest_timeout: float = 4.0,
    ) -> None:
        self.ingest_timeout = ingest_timeout
        self.endpoints = {path.rstrip("/") or "/": endpoint for path, endpoint in endpoints.items()}
        self.store = store
        self.templates = templates
        self.metrics = metrics
        self.on_stored = on_stored
        self.fallback = fallback
        self.clock = clock
        self._counters: dict[str, _Counters] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self.endpoint_at(scope["path"])
            if endpoint is not None:
                await self.handle(endpoint, scope, receive, send)
                return
        await self.fallback(scope, receive, send)

    def endpoint_at(self, path: str) -> Endpoint | None:
        """The endpoint at `path`, or the nearest one above it whose source serves subpaths (an API
        such as Opsgenie's). Only a path that is no endpoint's walks up: the hot path is one lookup."""
        path = path.rstrip("/") or "/"
        endpoint = self.endpoints.get(path)
        while endpoint is None and len(path) > 1:
            path = path.rpartition("/")[0] or "/"
            above = self.endpoints.get(path)
            if above is not None and above.source.subpaths:
                return above
        return endpoint

    async def handle(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method = scope["method"]
        name = endpoint.name
        counters = self._counters.get(name) or self._count_for(name)
        counters.received.inc()
        head = method == "HEAD"

        refusal = endpoint.source.refusal

        async def refuse(status: int, reason: str, message: str, headers: list | None = None) -> None:
            self.metrics.refused.labels(name, reason).inc()
            client = scope.get("client")
            log.warning(
                "refused",
                endpoint=name,
                status=status,
                reason=reason,
                message=message,
                client=client[0] if client else None,
            )
            body = refusal(status, message) if refusal else {"ok": False, "error": message}
            await _respond(send, status, body, head, headers)

        if not endpoint.enabled:
            await refuse(404, "disabled", f"the integration at {scope['path']} is turned off")
            return
        if method not in endpoint.source.methods:
            allowed = ", ".join(sorted(endpoint.source.methods))
            await refuse(
                405,
                "method_not_allowed",
                f"{method} is not accepted here; use {allowed}",
                [(b"allow", allowed.encode())],
            )
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await _read_body(receive, headers, endpoint.max_body_bytes)
        except TooLarge:
            await refuse(413, "too_large", f"the body is over the {endpoint.max_body_bytes} byte limit")
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        request = Incoming(method, scope["path"], query, headers, body)

        try:
            reply = endpoint.source.handshake(request, endpoint)  # a handshake may check credentials itself
            if reply is None:
                endpoint.source.verify(request, endpoint)
                events = endpoint.source.parse(request, endpoint)
        except Refused as exc:
            await refuse(exc.status, exc.reason, exc.message, [(k.encode(), v.encode()) for k, v in exc.headers])
            return
        except BadPayload as exc:
            await refuse(400, "bad_payload", str(exc))
            return
        except Exception as exc:  # a parser's bug: the sender must not retry the same body for ever
            log.exception("source_failed", endpoint=name, error=f"{type(exc).__name__}: {exc}")
            await refuse(400, "unreadable", f"alertbridge could not read this body ({type(exc).__name__})")
            return
        if reply is not None:
            await _respond(send, reply.status, reply.body, head, media_type=reply.media_type)
            return
        # The first event's template variables serve its labels and then the response.
        bound = None
        if endpoint.config.labels or (endpoint.config.response is not None and events):
            labelled = [label(endpoint, e, self.templates) for e in events]
            events = [e for e, _ in labelled]
            bound = labelled[0][1] if labelled else None
        try:
            stored = await self._store(events) if events else []
        except Exception as exc:  # StoreUnavailable, a timeout, or any failure to commit: the sender retries
            problem = "no commit within the ingest timeout" if isinstance(exc, TimeoutError) else str(exc)
            log.error("store_unavailable", endpoint=name, error=problem)
            await refuse(503, "store_unavailable", "the event could not be stored; try again", [(b"retry-after", b"5")])
            return
        if any(s.duplicate_of is None for s in stored):
            self.on_stored()
        for s in stored:
            (counters.duplicate if s.duplicate_of else counters.new).inc()
        duplicate = bool(stored) and all(s.duplicate_of for s in stored)
        ids = [s.duplicate_of or s.event_id for s in stored]
        answer = endpoint.source.answer
        if answer is not None and endpoint.config.response is None:
            reply = answer(request, endpoint, Accepted(events, ids, duplicate))
            await _respond(send, reply.status, reply.body, head, media_type=reply.media_type)
        else:
            await _respond(send, 200, self._answer(endpoint, bound, ids, duplicate), head)
        counters.seconds.observe(time.perf_counter() - started)

    def _count_for(self, name: str) -> _Counters:
        """An endpoint's metric children, looked up once: `labels()` costs a lock and a dict per call."""
        m = self.metrics
        counters = _Counters(
            m.received.labels(name),
            m.events.labels(name, "new"),
            m.events.labels(name, "duplicate"),
            m.ingest_seconds.labels(name),
        )
        self._counters[name] = counters
        return counters

    async def _store(self, events: list[Event]) -> list[Stored]:
        """The store's answer, or TimeoutError after `ingest_timeout`. A plain timer that cancels this
        request's task: `asyncio.timeout` did the same at a tenth of the hot path's cost."""
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(self.ingest_timeout, expire)
        try:
            return await self.store.add_events(events)
        except asyncio.CancelledError:
            if expired:
                task.uncancel()
                raise TimeoutError from None
            raise
        finally:
            timer.cancel()

    def _answer(self, endpoint: Endpoint, bound: Bound | None, ids: list[str], duplicate: bool) -> Any:
        template = endpoint.config.response
        if template is None or bound is None:
            return {"ok": True, "events": ids, "duplicate": duplicate}
        bound.update(events=ids, duplicate=duplicate)
        try:
            rendered = bound.render(template, "response")
        except RenderError as exc:
            log.warning("response_failed", endpoint=endpoint.name, error=str(exc))
            return {"ok": True, "events": ids, "duplicate": duplicate}
        return {k: (None if v == "" else v) for k, v in rendered.items()}


def label(endpoint: Endpoint, event: Event, templates: Templates) -> tuple[Event, Bound]:
    """The event with the endpoint's labels computed (a label that fails is left out and logged), and
    the template variables bound to it (labels included), which the response renders from too: one
    set of variables for both."""
    subject = refs(event)
    view = context(event, subject=subject[0] if subject else None)
    labels = view["labels"]  # what templates see as `labels` and `event.labels`: filled in as we go
    bound = templates.bind(view)
    for key, template in endpoint.config.labels.items():
        try:
            labels[key] = bound.render(template, f"labels.{key}")
        except RenderError as exc:
            log.warning("label_failed", endpoint=endpoint.name, label=key, error=str(exc))
        if labels.get(key) in ("", None):
            labels.pop(key, None)
    if endpoint.config.labels:
        event = msgspec.structs.replace(event, labels=dict(labels))
    return event, bound


async def _read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _respond(
    send: Send,
    status: int,
    body: Any,
    head: bool = False,
    extra_headers: list | None = None,
    media_type: str = "application/json",
) -> None:
    payload = body if isinstance(body, bytes) else _json.encode(body) if body is not None else b""
    headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])})
    await send({"type": "http.response.body", "body": b"" if head else payload})
