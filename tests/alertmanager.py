"""A real Prometheus Alertmanager for the tests (Debian's `prometheus-alertmanager`, installed by
`scripts/setup`), on free ports, with the receivers a test gives.

    with Alertmanager(tmp_path, [{"name": "ab", "webhook_configs": [{"url": ...}]}]) as am:
        am.post_alerts([alert("DiskFull", severity="critical")])   # its own API: POST /api/v2/alerts
        am.amtool_add("DiskFull", {"severity": "critical"})          # or amtool alert add

Clustering is off (`--cluster.listen-address=`), state lives in a temporary `--storage.path`, and
the route waits and groups quickly (`group_wait` and `group_interval` of a second) so that a test
sees a notification within seconds; `route` overrides any of it. `resolve_timeout` is a minute: an
alert posted without `endsAt` resolves itself after it, long after a test is done, never while it
watches (a test passes a shorter one to see that). `receivers` are Alertmanager's own blocks
(`webhook_configs`, `pagerduty_configs`, `opsgenie_configs` …), written as they are.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from .conftest import free_port, wait_until


def binary() -> str:
    """The Alertmanager server's command: Debian names it `prometheus-alertmanager`, upstream `alertmanager`."""
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found is None:
        raise AssertionError(
            "Alertmanager is not installed: ./scripts/setup installs Debian's prometheus-alertmanager"
            " (apt install prometheus-alertmanager)"
        )
    return found


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def alert(
    name: str,
    *,
    annotations: dict[str, str] | None = None,
    starts: datetime | None = None,
    ends: datetime | None = None,
    generator_url: str | None = None,
    **labels: str,
) -> dict[str, Any]:
    """One alert as `POST /api/v2/alerts` takes it (postableAlert); `ends` in the past resolves it."""
    body: dict[str, Any] = {"labels": {"alertname": name, **labels}, "annotations": annotations or {}}
    if starts is not None:
        body["startsAt"] = rfc3339(starts)
    if ends is not None:
        body["endsAt"] = rfc3339(ends)
    if generator_url is not None:
        body["generatorURL"] = generator_url
    return body


class Alertmanager:
    """One Alertmanager process; a context manager that starts it and stops it."""

    def __init__(
        self,
        workdir: Path,
        receivers: list[dict[str, Any]],
        route: dict[str, Any] | None = None,
        resolve_timeout: str = "1m",
        global_config: dict[str, Any] | None = None,
    ) -> None:
        self.workdir = workdir / f"alertmanager-{free_port()}"
        self.workdir.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.route = {
            "receiver": receivers[0]["name"],
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
            **(route or {}),
        }
        # `global_config` adds to Alertmanager's `global:` block (`pagerduty_url`, `opsgenie_api_url` …).
        settings = {"resolve_timeout": resolve_timeout, **(global_config or {})}
        self.config = {"global": settings, "route": self.route, "receivers": receivers}
        self.config_path = self.workdir / "alertmanager.yml"
        self.config_path.write_text(json.dumps(self.config, indent=2))  # JSON is YAML
        self.log_path = self.workdir / "alertmanager.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def start(self) -> Alertmanager:
        args = [
            binary(),
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",  # no gossip: a single instance, and no port of its own
            "--log.level=debug",
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        try:
            wait_until(self._ready, 30, f"Alertmanager to be ready (log: {self.log_path})")
        except BaseException:
            self.stop()  # a context manager whose start failed is not exited: stop it here
            raise
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"Alertmanager exited with {self.process.returncode}:\n{self.logs()}")
        try:
            return self.client.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.client.close()

    def __enter__(self) -> Alertmanager:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """Alerts through Alertmanager's own API (`POST /api/v2/alerts`), as Prometheus sends them."""
        answer = self.client.post("/api/v2/alerts", json=alerts)
        assert answer.status_code == 200, f"Alertmanager refused the alerts: {answer.status_code} {answer.text}"

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts it holds (`GET /api/v2/alerts`), each with the fingerprint it computed."""
        answer = self.client.get("/api/v2/alerts")
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()
        return found

    def amtool_add(
        self, name: str, labels: dict[str, str], annotations: dict[str, str] | None = None, end: datetime | None = None
    ) -> None:
        """An alert through `amtool alert add`, Alertmanager's own command-line client."""
        args = ["amtool", f"--alertmanager.url={self.url}", "alert", "add", name]
        args += [f"{key}={value}" for key, value in labels.items()]
        args += [f"--annotation={key}={value}" for key, value in (annotations or {}).items()]
        if end is not None:
            args += [f"--end={rfc3339(end)}"]
        done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, f"amtool alert add failed ({done.returncode}): {done.stderr}"


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)
