"""Round trip of an acknowledgement: Opsgenie → alertbridge → PagerDuty → alertbridge, until quiet.

Uses the stateful fakes of the test suite (tests/fakes), which send their webhooks back as the
real services do. For each alert: a person acknowledges it in Opsgenie; alertbridge notes and
acknowledges the PagerDuty incident; PagerDuty's two webhooks come back and are recognised as
alertbridge's own (echo suppressed). Measured: until the incident is acknowledged in PagerDuty,
and until both echoes are suppressed (the system is quiet again).

    .venv/bin/python bench/sync.py [--alerts 30]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.opsgenie import FakeOpsgenie  # noqa: E402
from tests.fakes.pagerduty_rest import FakePagerDutyREST  # noqa: E402


def suppressed(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('alertbridge_events_routed_total{status="suppressed"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait(predicate: object, timeout: float = 30) -> float:
    deadline = time.perf_counter() + timeout
    while not predicate():  # type: ignore[operator]
        if time.perf_counter() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.002)
    return time.perf_counter()


def run(alerts: int) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="alertbridge-sync-"))
    with FakeOpsgenie("og-key") as opsgenie, FakePagerDutyREST("pd-key", "bridge@example.com") as pagerduty:
        opsgenie.process_delay = 0.0
        port = _free_port()
        env = {
            **os.environ,
            "PAGERDUTY_API_KEY": "pd-key",
            "PAGERDUTY_SERVICE_ID": "PSVC1",
            "PAGERDUTY_WEBHOOK_SECRET": pagerduty.webhook_secret,
            "PAGERDUTY_EMAIL": "bridge@example.com",
            "OPSGENIE_API_KEY": "og-key",
            "OPSGENIE_INTEGRATION_ID": opsgenie.integration_id,
            "OPSGENIE_WEBHOOK_TOKEN": "og-token",
            "PAGERDUTY_API_URL": pagerduty.url,
            "OPSGENIE_API_URL": opsgenie.url,
            "ACKNOWLEDGE_IN_PAGERDUTY": "true",
            "ALERTBRIDGE_STORE": f"sqlite:///{workdir / 'sync.db'}",
        }
        command = [str(Path(sys.executable).parent / "alertbridge"), "serve", "--port", str(port), "--log-level"]
        config = ["--config", str(ROOT / "examples" / "opsgenie-pagerduty.yaml")]
        server = subprocess.Popen([*command, "warning", *config], env=env, stderr=subprocess.DEVNULL)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}")
        try:
            wait(lambda: _ready(client))
            opsgenie.webhook_url = f"http://127.0.0.1:{port}/ops-webhook?token=og-token"
            pagerduty.webhook_url = f"http://127.0.0.1:{port}/pd-webhook"
            made = [opsgenie.user_create(f"alert {i}") for i in range(alerts)]
            wait(lambda: len(pagerduty.incidents) == alerts)
            wait(lambda: suppressed(client) >= alerts)  # the incidents' own triggered webhooks
            by_key = {i.incident_key: i for i in pagerduty.incidents.values()}
            acknowledged, quiet = [], []
            for alert in made:
                incident = by_key[alert.id]
                before = suppressed(client)
                started = time.perf_counter()
                opsgenie.user("acknowledge", alert)
                acknowledged.append(wait(lambda i=incident: i.status == "acknowledged") - started)
                quiet.append(wait(lambda b=before: suppressed(client) >= b + 2) - started)
            extra = [r for r in opsgenie.requests if r.method == "POST"]
        finally:
            server.terminate()
            server.wait(10)

    def pct(values: list[float], p: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000

    return {
        "alerts": alerts,
        "acknowledged_p50_ms": pct(acknowledged, 0.5),
        "acknowledged_p95_ms": pct(acknowledged, 0.95),
        "quiet_p50_ms": pct(quiet, 0.5),
        "quiet_p95_ms": pct(quiet, 0.95),
        "calls_back_to_opsgenie": len(extra),  # an echo that looped would show here
    }


def _ready(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=30)
    print(json.dumps(run(parser.parse_args().alerts)))


if __name__ == "__main__":
    main()
