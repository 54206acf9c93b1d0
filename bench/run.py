"""Runs every benchmark side by side in one go and prints (and writes) a results table.

    .venv/bin/python bench/run.py [--duration 10] [--connections 32] [--rate 1000]

Each server runs as its own process on the same uvicorn/uvloop/httptools stack; the load
generator (bench/load.py) runs in another process. Figures are only compared within one run:
the ratio to the hello-world ceiling is the number that travels between machines.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ALERTBRIDGE = str(Path(PYTHON).parent / "alertbridge")
ALERTS_PER_NOTIFICATION = 10  # bench/load.py's Alertmanager notifications
TOKEN = "bench-token"
ROWS = ["hello", "naive", "paused", "parts", "delivering", "e2e", "v3", "mixed", "am", "pg1", "pg2", "sync"]
PD_SECRET = "bench-pagerduty-secret"
SIGNING = {
    "PD_SECRET": PD_SECRET,
    "SLACK_SECRET": "bench-slack-secret",
    "GITHUB_SECRET": "bench-github-secret",
    "INCIDENTIO_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "ALERTMANAGER_TOKEN": "bench-alertmanager-token",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, path: str = "/", timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answered on port {port}")


@contextlib.contextmanager
def process(args: list[str], port: int, env: dict[str, str] | None = None, ready: str = "/") -> Iterator[int]:
    # The server's log goes to a file: a pipe nobody reads would fill up and stall the server.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            try:
                wait_ready(port, ready)
            except RuntimeError:
                proc.kill()
                proc.wait()
                log.seek(0)
                raise RuntimeError(f"{' '.join(args)} did not start:\n{log.read().decode()}") from None
            yield proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def uvicorn(app: str, port: int, env: dict[str, str] | None = None) -> contextlib.AbstractContextManager[int]:
    args = [PYTHON, "-m", "uvicorn", app, "--port", str(port), "--loop", "uvloop", "--http", "httptools"]
    return process([*args, "--no-access-log", "--log-level", "warning"], port, env)


def alertbridge(
    config: Path, port: int, env: dict[str, str], workdir: Path, store: str | None = None, without: str = ""
) -> contextlib.AbstractContextManager[int]:
    """The server as installed; `without` (router, store) runs it through parts.py with those parts off."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**env, "ALERTBRIDGE_STORE": store or f"sqlite:///{workdir / 'bench.db'}"}
    command = [PYTHON, str(ROOT / "bench" / "parts.py")] if without else [ALERTBRIDGE]
    if without:
        env["ALERTBRIDGE_BENCH_WITHOUT"] = without
    args = [*command, "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    return process([*args, "--log-level", "warning"], port, env, ready="/healthz")


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server (PG_URL, default postgresql://127.0.0.1:5432), dropped after."""
    server = os.environ.get("PG_URL", "postgresql://127.0.0.1:5432")
    name = f"alertbridge_bench_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    admin = f"{server}/postgres"
    subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {name}"], check=True)
    try:
        yield f"{server}/{name}"
    finally:
        subprocess.run(["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False)


def load(
    mode: str, port: int | str, path: str, args: argparse.Namespace, kind: str = "thena", server: int | None = None
) -> dict:
    """The load generator's figures; with the server's pid, also the CPU it spent per request (all threads)."""
    cmd = [PYTHON, str(ROOT / "bench" / "load.py"), mode, "--port", str(port), "--path", path, "--kind", kind]
    cmd += ["--connections", str(args.connections), "--duration", str(args.duration), "--rate", str(args.rate)]
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        before = cpu_seconds(server) if server else 0.0
        subprocess.run([*cmd, "--out", out.name], check=True, env={**os.environ, **SIGNING})
        row = dict(json.loads(Path(out.name).read_text()))
        if server and row.get("requests"):
            row["cpu_us"] = (cpu_seconds(server) - before) / row["requests"] * 1e6
        return row


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, all its threads, so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process and its children, in MB."""
    current = peak = 0.0
    for p in [pid, *children(pid)]:
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{p}/status").read_text()
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            current += int(fields["VmRSS"].split()[0]) / 1024
            peak += int(fields["VmHWM"].split()[0]) / 1024
    return current, peak


def children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(c) for c in found]
    return []


def fetch_json(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        return dict(json.loads(answer.read()))


def config_file(workdir: Path, example: str, paused: bool) -> Path:
    """The example as shipped, but for PagerDuty's pacing of 120 events a minute per routing key, which a
    fake PagerDuty does not need: with it, a 1,000/s storm is paced (as tests/test_delivery.py proves)."""
    text = (ROOT / "examples" / example).read_text()
    text = text.replace("type: pagerduty_events", "type: pagerduty_events\n    rate_limit: {limit: 1000000, per: 1}")
    if paused:
        text += "\ndelivery:\n  paused: true\n"
    path = workdir / f"{Path(example).stem}{'-paused' if paused else ''}.yaml"
    path.write_text(text)
    return path


def e2e(sent: dict[str, float], received: dict[str, float]) -> dict[str, float]:
    latencies = sorted(received[k] - t for k, t in sent.items() if k in received)
    n = len(latencies)
    if not n:
        return {"delivered": 0, "sent": len(sent)}
    return {
        "sent": len(sent),
        "delivered": n,
        "p50_ms": latencies[n // 2] * 1000,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000,
        "max_ms": latencies[-1] * 1000,
    }


def wait_delivered(sent: dict[str, float], pd_port: int, timeout: float = 30) -> dict[str, float]:
    """End-to-end latencies once the fake PagerDuty has every incident (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while len(received := fetch_json(pd_port, "/received")) < len(sent):
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return e2e(sent, received)


def example_env(pd_port: int) -> dict[str, str]:
    """What the examples read from the environment, the fakes on `pd_port` standing in for the providers."""
    return {
        "PD_EVENTS_URL": f"http://127.0.0.1:{pd_port}/v2/enqueue",
        "PD_ROUTING_KEY_A": "a" * 32,
        "PD_ROUTING_KEY_B": "b" * 32,
        "WEBHOOK_TOKEN": TOKEN,
        "DEFAULT_SERVICE_GROUP": "A",
        "PAGERDUTY_WEBHOOK_SECRET": PD_SECRET,
        "PAGERDUTY_API_TOKEN": "bench-api-token",
        "PAGERDUTY_API_URL": f"http://127.0.0.1:{pd_port}",
        "AGENT_URL": f"http://127.0.0.1:{pd_port}/agent",
        "SLACK_SIGNING_SECRET": SIGNING["SLACK_SECRET"],
        "GITHUB_WEBHOOK_SECRET": SIGNING["GITHUB_SECRET"],
        "INCIDENTIO_WEBHOOK_SECRET": SIGNING["INCIDENTIO_SECRET"],
        "AGENT_SECRET": "bench-agent-secret",
        "SLACK_BOT_TOKEN": "xoxb-bench",
        "INTERNAL_TOKEN": "bench-internal",
        "TEAM_TOKEN_EXTEND_SRE": "bench-team-token",
        "ALERTMANAGER_TOKEN": SIGNING["ALERTMANAGER_TOKEN"],
        "GRAFANA_WEBHOOK_SECRET": "bench-grafana-secret",
        "INGEST_ROUTING_KEY": "R0UT1NGKEY00000000000000000BENCH",
        "INGEST_GENIE_KEY": "bench-genie-key",
        "PD_ROUTING_KEY": "p" * 32,
    }


def run(args: argparse.Namespace) -> dict:
    results: dict[str, dict] = {}
    workdir = Path(tempfile.mkdtemp(prefix="alertbridge-bench-"))
    pd_port = free_port()
    env = example_env(pd_port)
    thena_path = f"/thena/events?token={TOKEN}"
    bench_path = {"PYTHONPATH": str(ROOT / "bench")}
    try:
        with uvicorn("fake_pagerduty:app", pd_port, bench_path):
            if "hello" in args.only:
                port = free_port()
                with uvicorn("hello:app", port, bench_path) as pid:
                    load("closed", port, "/warmup", argparse.Namespace(**{**vars(args), "duration": 1}))
                    results["hello-world (ceiling)"] = load("closed", port, thena_path, args, server=pid)
            if "naive" in args.only:
                port = free_port()
                with uvicorn("naive_bridge:app", port, {**env, **bench_path}) as pid:
                    results["naive bridge (seed 000 style)"] = load("closed", port, thena_path, args, server=pid)
            if "paused" in args.only:
                port = free_port()
                with alertbridge(config_file(workdir, "thena-pagerduty.yaml", True), port, env, workdir / "p") as pid:
                    row = load("closed", port, thena_path, args, server=pid)
                    results["alertbridge ingest, delivery paused"] = {**row, "rss_mb": rss_mb(pid)[1]}
            if "parts" in args.only:
                # Diagnostics, not ways to run it: the same row with the router, then the store too, switched off.
                config = config_file(workdir, "thena-pagerduty.yaml", True)
                for without, name in (
                    ("router", "diagnostic: the same, router off (nothing routed)"),
                    ("router,store", "diagnostic: the same, router and store off (nothing kept)"),
                ):
                    port = free_port()
                    with alertbridge(config, port, env, workdir / without, without=without) as pid:
                        results[name] = load("closed", port, thena_path, args, server=pid)
            if "delivering" in args.only:
                urllib.request.urlopen(f"http://127.0.0.1:{pd_port}/reset")
                port = free_port()
                with alertbridge(config_file(workdir, "thena-pagerduty.yaml", False), port, env, workdir / "d") as pid:
                    row = load("closed", port, thena_path, args, server=pid)
                    results["alertbridge ingest, delivering"] = {**row, "rss_mb": rss_mb(pid)[1]}
            if "e2e" in args.only:
                urllib.request.urlopen(f"http://127.0.0.1:{pd_port}/reset")
                port = free_port()
                with alertbridge(config_file(workdir, "thena-pagerduty.yaml", False), port, env, workdir / "e") as pid:
                    row = load("open", port, thena_path, args)
                    row["e2e"] = wait_delivered(row.pop("sent"), pd_port)
                    results[f"alertbridge end to end at {args.rate:g}/s"] = {**row, "rss_mb": rss_mb(pid)[1]}
            if "v3" in args.only:
                port = free_port()
                with alertbridge(config_file(workdir, "pagerduty-agent.yaml", True), port, env, workdir / "v3") as pid:
                    results["alertbridge signed PagerDuty V3 ingest, paused"] = load(
                        "closed", port, "/webhooks/pagerduty", args, kind="pagerduty", server=pid
                    )
            if "mixed" in args.only:
                port = free_port()
                with alertbridge(config_file(workdir, "team-routing.yaml", True), port, env, workdir / "mixed") as pid:
                    results["alertbridge mixed Slack/GitHub/PagerDuty/incident.io ingest, paused"] = load(
                        "closed", port, "/", args, kind="mixed", server=pid
                    )
            if "am" in args.only:
                port = free_port()
                with alertbridge(config_file(workdir, "monitoring.yaml", True), port, env, workdir / "am") as pid:
                    row = load("closed", port, "/webhooks/alertmanager", args, kind="alertmanager", server=pid)
                    row["events_per_request"] = ALERTS_PER_NOTIFICATION
                    results[f"alertbridge Alertmanager, {ALERTS_PER_NOTIFICATION} alerts a request, paused"] = row
            for replicas in (1, 2):
                if f"pg{replicas}" not in args.only:
                    continue
                name = f"alertbridge on PostgreSQL, {replicas} replica{'s' if replicas > 1 else ''}"
                for paused in (True, False):
                    urllib.request.urlopen(f"http://127.0.0.1:{pd_port}/reset")
                    config = config_file(workdir, "thena-pagerduty.yaml", paused)
                    with pg_database() as store, contextlib.ExitStack() as stack:
                        ports = [free_port() for _ in range(replicas)]
                        pids = [
                            stack.enter_context(alertbridge(config, port, env, workdir / f"pg{replicas}-{n}", store))
                            for n, port in enumerate(ports)
                        ]
                        joined = ",".join(map(str, ports))
                        if paused:
                            row = load("closed", joined, thena_path, args, server=pids[0] if replicas == 1 else None)
                            results[f"{name}, ingest, delivery paused"] = {**row, "rss_mb": rss_mb(pids[0])[1]}
                        else:
                            row = load("open", joined, thena_path, args)
                            row["e2e"] = wait_delivered(row.pop("sent"), pd_port)
                            results[f"{name}, end to end at {args.rate:g}/s"] = {**row, "rss_mb": rss_mb(pids[0])[1]}
        if "sync" in args.only:
            out = subprocess.run([PYTHON, str(ROOT / "bench" / "sync.py")], check=True, capture_output=True, text=True)
            results["sync"] = json.loads(out.stdout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def table(results: dict[str, dict], args: argparse.Namespace) -> str:
    ceiling = results.get("hello-world (ceiling)", {}).get("rate", float("nan"))
    lines = [
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; {args.connections} connections, {args.duration:g} s per row.",
        "",
        "| row | requests/s | of hello-world | server CPU µs/request | p50 ms | p99 ms | errors | peak RSS MB |"
        " end-to-end p50 / p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in results.items():
        if name == "sync":
            continue
        e2e_row = row.get("e2e")
        e2e_text = (
            f"{e2e_row['p50_ms']:.1f} / {e2e_row['p99_ms']:.1f} ({e2e_row['delivered']}/{e2e_row['sent']} delivered)"
            if e2e_row and e2e_row.get("delivered")
            else ("none delivered" if e2e_row else "")
        )
        rss = f"{row['rss_mb']:.0f}" if "rss_mb" in row else ""
        cpu = f"{row['cpu_us']:.0f}" if "cpu_us" in row else ""
        if row.get("events_per_request") and "cpu_us" in row:  # several events a request: per event too
            cpu += f" ({row['cpu_us'] / row['events_per_request']:.0f} an event)"
        lines.append(
            f"| {name} | {row['rate']:.0f} | {row['rate'] / ceiling:.2f} | {cpu} | {row['p50_ms']:.1f} "
            f"| {row['p99_ms']:.1f} | {row['errors']} | {rss} | {e2e_text} |"
        )
    sync = results.get("sync")
    if sync:
        lines += [
            "",
            f"Opsgenie → PagerDuty acknowledgement round trip ({sync['alerts']} alerts, one at a time, via the fakes):",
            f"incident acknowledged in PagerDuty p50 {sync['acknowledged_p50_ms']:.0f} ms, p95 "
            f"{sync['acknowledged_p95_ms']:.0f} ms; both echoes suppressed (quiet) p50 {sync['quiet_p50_ms']:.0f} ms, "
            f"p95 {sync['quiet_p95_ms']:.0f} ms; calls sent back to Opsgenie: {sync['calls_back_to_opsgenie']}.",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=1000, help="open-loop rate of the end-to-end row")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--only", nargs="*", choices=ROWS, default=ROWS, help="run only these rows")
    args = parser.parse_args()
    results = run(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(table(results, args))


if __name__ == "__main__":
    main()
