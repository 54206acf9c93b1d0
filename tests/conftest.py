"""Test harness: the real alertbridge server in a process of its own (tests/processes.py), spoken to over HTTP."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from alertbridge.events import to_dict
from alertbridge.store import Store, open_store

from . import backends, processes

T = TypeVar("T")


def _as_json(data: Any) -> Any:
    """As the CLI prints it (`--json`): what JSON cannot hold as itself (tuples, …) as JSON has it."""
    return json.loads(json.dumps(data, default=str))


ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SHARED = ROOT.parent / "shared"


def _ports_of_this_worker() -> Iterator[int]:
    """Ports below the kernel's ephemeral range, a block per xdist worker: a port the kernel hands out
    for `bind(0)` (the fakes) or an outgoing connection can never be one a server is about to take, and
    two workers never pick the same one. Two runs at once (`./scripts/test` runs both backends side by
    side, each with workers gw0…) set `ALERTBRIDGE_TEST_PORT_BLOCK` apart: the block number of gw0."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    first = int(os.environ.get("ALERTBRIDGE_TEST_PORT_BLOCK") or 0)
    base, size = 10000, 1000
    start = base + (first + (int(worker) if worker.isdigit() else 0)) * size
    if start + size > low:
        raise RuntimeError(f"too many test workers for the ports below {low}")
    while True:
        yield from range(start, start + size)


_PORTS = _ports_of_this_worker()


def free_port() -> int:
    """A port no other test of this run uses and nothing listens on now."""
    for port in _PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("unreachable")


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Server:
    """One alertbridge process: `serve` with a config file, on the test's store (a SQLite file in
    its temp dir, or its own PostgreSQL database: see tests/backends.py)."""

    def __init__(self, workdir: Path, config: Path, env: dict[str, str], store: str | None = None) -> None:
        self.workdir = workdir
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.store = store or f"sqlite:///{workdir / 'alertbridge.db'}"
        # A name that stays with this server across restarts, as a pod's does (PostgreSQL claims).
        self.name = f"server-{self.port}"
        self.env = {
            **os.environ,
            "ALERTBRIDGE_REPLICA": self.name,
            **env,
            "ALERTBRIDGE_STORE": self.store,
            "PYTHONUNBUFFERED": "1",
        }
        # The first server of a test logs to server.log; others beside it (replicas) to their own file.
        self.log_path = workdir / "server.log"
        if self.log_path.exists():
            self.log_path = workdir / f"server-{self.port}.log"
        self.process: processes.Process | None = None
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def start(self) -> Server:
        args = ["serve", "--config", str(self.config), "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = processes.start(args, cwd=self.workdir, env=self.env, log=self.log_path)
        wait_until(self._ready, 60, f"alertbridge to be ready (log: {self.log_path})")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"alertbridge exited with {self.process.returncode}:\n{self.logs()}")
        try:
            return self.client.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a machine or container dies."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def post(self, path: str, body: Any = None, *, content: bytes | None = None, **kwargs: Any) -> httpx.Response:
        if content is None and body is not None:
            content = json.dumps(body).encode()
        headers = {"content-type": "application/json", **kwargs.pop("headers", {})}
        return self.client.post(path, content=content, headers=headers, **kwargs)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = processes.run(args, cwd=self.workdir, env=self.env)
        if check and result.returncode != 0:
            raise AssertionError(f"alertbridge {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def read_store(self, work: Callable[[Store], Awaitable[T]]) -> T:
        """`work` on this server's store, read beside it as `alertbridge events list` reads it (the
        same store classes, opened read-only): a poll costs milliseconds, not a CLI's start-up."""

        async def run() -> T:
            store = open_store(self.store)
            try:
                if not await store.open_existing():
                    raise AssertionError(f"no store at {self.store}")
                return await work(store)
            finally:
                await store.close()

        # A thread of its own: the caller may be inside an event loop (Playwright's sync API runs one).
        with concurrent.futures.ThreadPoolExecutor(1) as thread:
            return thread.submit(asyncio.run, run()).result()

    def events(self, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest events as `alertbridge events list --json` gives them: event, status, trace, routed_at."""
        rows = self.read_store(lambda s: s.list_events(limit, status))
        return _as_json(
            [{"event": to_dict(r.event), "status": r.status, "trace": r.trace, "routed_at": r.routed_at} for r in rows]
        )

    def deliveries(self, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest deliveries as `alertbridge deliveries list --json` gives them."""
        return _as_json([d.__dict__ for d in self.read_store(lambda s: s.list_deliveries(limit, status))])

    def metric(self, name: str, **labels: str) -> float:
        text = self.client.get("/metrics").text
        for line in text.splitlines():
            if not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in head for k, v in labels.items()) and head.split("{")[0] == name:
                return float(value)
        return 0.0


def pytest_configure(config: pytest.Config) -> None:
    """On PostgreSQL, a server that cannot be reached fails the run at once, loudly: never a skip."""
    config.addinivalue_line("markers", "unit: starts no server and no process (conftest.UNIT_MODULES, test_target_*)")
    config.addinivalue_line("markers", "e2e: starts the real server (or the alertbridge command) and speaks to it")
    if backends.POSTGRES:
        try:
            backends.admin_url()
        except RuntimeError as exc:
            raise pytest.UsageError(f"ALERTBRIDGE_TEST_BACKEND={backends.BACKEND}: {exc}") from None


# Test modules that start no server and run no `alertbridge` command: sources, targets, routing, the
# store, docs, ids. `-m unit` runs only them (seconds); `-m e2e` the rest. A module moves here only if
# none of its tests starts a process (`pytest_collection_modifyitems` refuses one that uses `server_factory`).
UNIT_MODULES = {
    "test_docs",
    "test_ids",
    "test_layers",
    "test_provider_names",
    "test_routing",
    "test_silence_rules",
    "test_source_fuzz",
    "test_store",
    "test_thena_source",
}


def _is_unit(item: pytest.Item) -> bool:
    module = item.module.__name__.rpartition(".")[2] if isinstance(item, pytest.Function) else ""
    return module in UNIT_MODULES or module.startswith("test_target_")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test `unit` (no server, no subprocess) or `e2e` (the real server over HTTP). With
    `ALERTBRIDGE_TEST_STORE_ONLY=1` (`./scripts/test` sets it on the second backend's run), leave out
    the unit tests that use no store: they ran already, and would only run the same code again."""
    store_free = []
    for item in items:
        if _is_unit(item):
            if "server_factory" in getattr(item, "fixturenames", ()):
                raise pytest.UsageError(f"{item.nodeid} starts a server: take its module out of UNIT_MODULES")
            item.add_marker(pytest.mark.unit)
            if "store_url" not in getattr(item, "fixturenames", ()):
                store_free.append(item)
        else:
            item.add_marker(pytest.mark.e2e)
    if os.environ.get("ALERTBRIDGE_TEST_STORE_ONLY") == "1" and store_free:
        config.hook.pytest_deselected(items=store_free)
        dropped = set(store_free)
        items[:] = [item for item in items if item not in dropped]


def pytest_report_header(config: pytest.Config) -> str:
    return f"alertbridge store backend: {'postgresql' if backends.POSTGRES else 'sqlite'}"


@pytest.fixture
def store_url(tmp_path: Path) -> Iterator[str]:
    """This test's store: the SQLite file in its temp dir, or a PostgreSQL database made for it."""
    with backends.store_url(tmp_path) as url:
        yield url


@pytest.fixture
def server_factory(tmp_path: Path, store_url: str) -> Iterator[Callable[..., Server]]:
    """Servers of one test share its store, as they share its directory (and a SQLite file in it)."""
    servers: list[Server] = []

    def make(config: str | Path, env: dict[str, str] | None = None, start: bool = True) -> Server:
        if isinstance(config, str):
            path = tmp_path / "alertbridge.yaml"
            path.write_text(config)
        else:
            path = config
        server = Server(tmp_path, path, env or {}, store_url)
        servers.append(server)
        return server.start() if start else server

    yield make
    for server in servers:
        server.stop()
