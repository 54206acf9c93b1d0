"""Instructions per request, counted by valgrind's callgrind: a figure that does not move with what
else the machine is doing, for comparing two versions of alertbridge on a busy or noisy machine
where requests per second cannot settle a difference of a few per cent.

    .venv/bin/python bench/instructions.py [--rows paused mixed] [--events 400 1600] [--repeat 2]

Each row runs in-process: the app `alertbridge serve` would run (`app.create_app`, its lifespan,
the router routing as it does while delivery is paused) on a fresh SQLite store, fed the same
requests the load generator sends (`bench/load.py`), as ASGI calls (no socket, no HTTP parser:
those are uvicorn's and the same for every version). Batches of 32 concurrent requests, as 32
keep-alive connections give. A row runs twice under callgrind, with a few and with many events, and
the difference of the two totals over the difference of the counts is the figure: start-up and
imports cancel out. Only ratios between versions measured by this script mean anything.

To compare versions, run this same file with each version's venv (`OTHER/.venv/bin/python
bench/instructions.py`): it measures whichever `alertbridge` that Python imports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import load  # noqa: E402  (bench/load.py: the requests the load generator sends)

ROWS = {
    # row: (example config, load generator kind, path)
    "paused": ("thena-pagerduty.yaml", "thena", "/thena/events?token=bench-token"),
    "mixed": ("team-routing.yaml", "mixed", "/"),
}
BATCH = 32


def _config(workdir: Path, example: str) -> Path:
    text = (ROOT / "examples" / example).read_text() + "\ndelivery:\n  paused: true\n"
    path = workdir / example
    path.write_text(text)
    return path


def _asgi_request(raw: bytes) -> tuple[dict[str, Any], bytes]:
    """An HTTP/1.1 request as load.py writes it, as an ASGI scope and body."""
    head, _, body = raw.partition(b"\r\n\r\n")
    request_line, *header_lines = head.split(b"\r\n")
    method, target, _ = request_line.split(b" ")
    path, _, query = target.partition(b"?")
    headers = [(k.strip().lower(), v.strip()) for k, v in (line.split(b":", 1) for line in header_lines)]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method.decode(),
        "scheme": "http",
        "path": path.decode(),
        "raw_path": path,
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    return scope, body


async def _call(app: Any, scope: dict[str, Any], body: bytes) -> int:
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # a client that stays connected
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _lifespan(app: Any) -> asyncio.Task[None]:
    """The app's start-up run (store opened, router started); cancelling the task stops it."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    answer = await outbox.get()
    if answer["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app did not start: {answer}")
    return task


def _unrouted(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM events WHERE routed_at IS NULL").fetchone()[0])


async def _run(row: str, events: int, workdir: Path) -> None:
    """The measured work: `events` requests of `row` taken and routed (called under callgrind)."""
    try:
        from alertbridge.loading import load_config
    except ImportError:  # before the restructuring, loading lived in config.py
        from alertbridge.config import load_config
    from alertbridge import logs
    from alertbridge.app import create_app

    logs.configure("warning")  # as bench/run.py starts the server
    example, kind, path = ROWS[row]
    db = workdir / "bench.db"
    os.environ["ALERTBRIDGE_STORE"] = f"sqlite:///{db}"
    app = create_app(load_config(_config(workdir, example)))
    lifespan = await _lifespan(app)
    load.KIND = kind
    requests = [_asgi_request(load.request(path, f"T{n:06d}")) for n in range(events)]
    for start in range(0, events, BATCH):
        statuses = await asyncio.gather(*(_call(app, s, b) for s, b in requests[start : start + BATCH]))
        if any(status != 200 for status in statuses):
            raise RuntimeError(f"{row}: answers {sorted(set(statuses))}")
    while _unrouted(db):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0)
    lifespan.cancel()


def _count(row: str, events: int) -> int:
    """Instructions callgrind counts for one in-process run of `events` requests of `row`."""
    with tempfile.TemporaryDirectory(prefix="ab-instr-") as scratch:
        out = Path(scratch) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no"]
        command += [sys.executable, __file__, "--inside", row, str(events), scratch]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"{row} with {events} events failed:\n{result.stderr[-3000:]}")
        found = re.search(r"Collected\s*:\s*(\d+)", result.stderr)
        if not found:
            raise RuntimeError(f"no instruction count in callgrind's output:\n{result.stderr[-2000:]}")
        return int(found.group(1))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--inside":
        row, events, workdir = sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
        asyncio.run(_run(row, events, workdir))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=sorted(ROWS))
    parser.add_argument("--events", nargs=2, type=int, default=[400, 1600], metavar=("FEW", "MANY"))
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt install valgrind)")
    os.environ.update(load_env())
    few, many = args.events
    figures: dict[str, list[float]] = {}
    for row in args.rows:
        for _ in range(args.repeat):
            per_request = (_count(row, many) - _count(row, few)) / (many - few)
            figures.setdefault(row, []).append(per_request)
            print(f"{row}: {per_request:,.0f} instructions per request", file=sys.stderr)
    print(json.dumps({"python": sys.executable, "events": args.events, "rows": figures}, indent=2))


def load_env() -> dict[str, str]:
    """What the examples read and the signed requests use, as bench/run.py sets them (nothing is
    delivered: the providers' address is a closed port)."""
    import run  # bench/run.py

    return {**run.example_env(9), **run.SIGNING}


if __name__ == "__main__":
    main()
