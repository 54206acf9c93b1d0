"""How the dispatcher speaks HTTP: one connection pool per target, answers read in full.

aiohttp rather than httpx on this path: with httpx the HTTP client was over half of the
dispatcher's CPU at 1,000 deliveries a second (py-spy; httpcore checks each pooled
connection with a select() on every request). Targets never see the client: they build an
`OutgoingRequest` and read a `Response`, so a test or an embedder can pass any `Transport`.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import aiohttp
import msgspec

from alertbridge.targets.base import OutgoingRequest, Response

_json = msgspec.json.Encoder()


class TransportError(Exception):
    """The receiver could not be reached, or hung up, or did not answer in time: worth a retry."""


class Timeout(TransportError):
    pass


class Transport(Protocol):
    async def send(self, request: OutgoingRequest) -> Response: ...

    async def close(self) -> None: ...


class AiohttpTransport:
    """A keep-alive pool to one target; `timeout` bounds the whole exchange, connect to last byte."""

    def __init__(self, timeout: float, max_connections: int = 32) -> None:
        self.timeout = timeout
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the event loop it was made in.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": "alertbridge"},
                auto_decompress=True,
            )
        return self._session

    async def send(self, request: OutgoingRequest) -> Response:
        headers = dict(request.headers)
        body = request.content
        if body is None and request.json is not None:
            body = _json.encode(request.json)
            if not any(name.lower() == "content-type" for name in headers):
                headers["Content-Type"] = "application/json"
        try:
            async with self._open().request(
                request.method, request.url, data=body, headers=headers, allow_redirects=False
            ) as answer:
                content = await answer.read()
                return Response(answer.status, {k.lower(): v for k, v in answer.headers.items()}, content)
        except TimeoutError:
            raise Timeout(f"no answer within {self.timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(type(exc).__name__) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)  # let the connector close its sockets
