"""A fake third-party server speaking real HTTP, on a thread of the test process, that can misbehave.

Subclasses give the provider's logic as Starlette routes. Misbehaviour applies before that
logic: `behave()` answers the next requests with a given status, `delay` slows every answer,
`hang()` takes requests and never answers, `down()` stops listening (connection refused).
"""

from __future__ import annotations

import asyncio
import json
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any
    at: float


@dataclass
class _Behaviour:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    times: int | None = 1


class FakeServer:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.delay = 0.0
        self._lock = threading.Lock()
        self._behaviours: list[_Behaviour] = []
        self._hanging = threading.Event()
        self._released = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = Starlette(routes=self.routes())
        self.app.add_middleware(_Misbehave, fake=self)  # type: ignore[arg-type]

    # ---- provider logic: subclasses override

    def routes(self) -> list[Route]:
        return []

    # ---- lifecycle

    def start(self) -> FakeServer:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="error", lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        for sender in [v for v in vars(self).values() if isinstance(v, WebhookSender)]:
            sender.close()

    # ---- misbehaviour

    def behave(
        self, status: int, *, headers: dict[str, str] | None = None, body: Any = None, times: int | None = 1
    ) -> None:
        """Answer the next `times` requests (None: until `reset()`) with this instead of the real logic."""
        with self._lock:
            self._behaviours.append(_Behaviour(status, headers or {}, body, times))

    def hang(self) -> None:
        """Take requests and never answer them, until `release()`."""
        self._released.clear()
        self._hanging.set()

    def release(self) -> None:
        self._hanging.clear()
        self._released.set()

    def down(self) -> None:
        """Stop listening: connections are refused until `up()`."""
        self.stop()

    def up(self) -> None:
        self.start()

    def reset(self) -> None:
        with self._lock:
            self._behaviours.clear()
        self.delay = 0.0
        self.release()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{type(self).__name__}: condition not met within {timeout} s; "
                    f"{len(self.requests)} request(s) received"
                )
            time.sleep(0.02)

    def _next_behaviour(self) -> _Behaviour | None:
        with self._lock:
            if not self._behaviours:
                return None
            behaviour = self._behaviours[0]
            if behaviour.times is not None:
                behaviour.times -= 1
                if behaviour.times <= 0:
                    self._behaviours.pop(0)
            return behaviour

    def _record(self, request: Request, body: bytes) -> Recorded:
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        recorded = Recorded(
            request.method,
            request.url.path,
            dict(request.query_params),
            {k.lower(): v for k, v in request.headers.items()},
            body,
            parsed,
            time.time(),
        )
        with self._lock:
            self.requests.append(recorded)
        return recorded


class WebhookSender:
    """Sends a provider's webhooks one at a time, in the order the changes happened, retrying
    each until it is taken (2xx-4xx), as providers do."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[str, bytes, dict[str, str]]] = queue.SimpleQueue()
        self.answers: list[int] = []
        self.queued = 0
        self.closed = False  # once its test is over: nothing more is sent (its port may serve another test)
        self._flowing = threading.Event()
        self._flowing.set()
        threading.Thread(target=self._run, daemon=True).start()

    def close(self) -> None:
        self.closed = True
        self._flowing.set()

    def hold(self) -> None:
        """Keep the webhooks back (a provider's delivery running late) until `release()`, in order."""
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    @property
    def quiet(self) -> bool:
        """Nothing left to send but what is held back: every webhook sent so far was taken."""
        return not self._flowing.is_set() or len(self.answers) == self.queued

    def send(self, url: str, payload: Any, headers: dict[str, str]) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.queued += 1
        self._queue.put((url, body, headers))

    def _run(self) -> None:
        import httpx

        while True:
            url, body, headers = self._queue.get()
            self._flowing.wait()
            for _ in range(40):
                if self.closed:
                    break
                try:
                    status = httpx.post(
                        url, content=body, headers={"content-type": "application/json", **headers}, timeout=5
                    ).status_code
                except httpx.TransportError:
                    status = 0
                if 200 <= status < 500:
                    self.answers.append(status)
                    break
                time.sleep(0.25)


class _Misbehave:
    """Records every request, then applies the fake's misbehaviour before its real logic."""

    def __init__(self, app: Any, fake: FakeServer) -> None:
        self.app = app
        self.fake = fake

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        request = Request(scope)
        self.fake._record(request, body)
        if self.fake.delay:
            await asyncio.sleep(self.fake.delay)
        if self.fake._hanging.is_set():
            while not self.fake._released.is_set():
                await asyncio.sleep(0.02)
            return  # never answered: the connection is dropped when the server stops or is released
        behaviour = self.fake._next_behaviour()
        if behaviour is not None:
            content = behaviour.body
            response: Response
            if isinstance(content, str):
                response = Response(content, status_code=behaviour.status, headers=behaviour.headers)
            else:
                response = JSONResponse(
                    content if content is not None else {"error": "fake misbehaviour"},
                    status_code=behaviour.status,
                    headers=behaviour.headers,
                )
            await response(scope, receive, send)
            return

        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
