"""The deployment files agree with the code: commands, probes, variables, the proxy's upstreams.

No Docker engine runs where the tests run, so the image is not built here; these checks catch the
drift that would break it (a renamed command or probe, a replica missing from the proxy).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ruamel.yaml import YAML

from . import processes

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())


def replicas(services: dict) -> dict:
    return {name: s for name, s in services.items() if name.startswith("alertbridge-")}


def test_two_replicas_on_postgresql_with_readiness_probes() -> None:
    services = compose()["services"]
    serving = replicas(services)
    assert len(serving) == 2
    for service in serving.values():
        env = service["environment"]
        assert env["ALERTBRIDGE_STORE"].startswith("postgresql://") and "@postgres:5432/" in env["ALERTBRIDGE_STORE"]
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    names = [service["environment"]["ALERTBRIDGE_REPLICA"] for service in serving.values()]
    assert len(set(names)) == len(names)  # a stable name is unique among live replicas
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_proxy_fronts_every_replica_and_retries_elsewhere() -> None:
    services = compose()["services"]
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    upstreams = set(re.findall(r"server (alertbridge-\d+):8080", nginx))
    assert upstreams == set(replicas(services))
    assert services["proxy"]["ports"] == ["8080:8080"]
    assert "non_idempotent" in nginx and "access_log off" in nginx
    # Names looked up while running: a replica down when the proxy starts must not stop the proxy.
    assert len(re.findall(r"server alertbridge-\d+:8080 [^;]*\bresolve;", nginx)) == len(upstreams)
    assert "resolver 127.0.0.11" in nginx and re.search(r"^\s*zone alertbridge ", nginx, re.M)


def test_commands_and_variables_exist_in_the_cli() -> None:
    """Every subcommand the image and compose run is one the CLI has; the variables are ones it reads."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r'^CMD \["(\w+)"', dockerfile, re.M)
    assert cmd is not None
    commands = {cmd.group(1), compose()["services"]["migrate"]["command"][0]}
    for command in commands:
        result = processes.run([command, "--help"], env=os.environ)
        assert result.returncode == 0, f"alertbridge {command}: {result.stderr}"
    source = "".join(p.read_text() for p in (ROOT / "src" / "alertbridge").rglob("*.py"))
    env = compose()["x-alertbridge"]["environment"]
    for name in env:
        assert f'"{name}"' in source, f"{name} is set in docker-compose.yml but nothing reads it"
    assert "/healthz" in dockerfile and '--host", "0.0.0.0"' in dockerfile


def test_the_image_copies_what_the_package_build_needs() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY ([^\n]+?) \S+$", dockerfile, re.M))
    sources = {part for line in copied for part in line.split()}
    assert {"pyproject.toml", "README.md", "src"} <= sources  # pyproject names README.md as the readme
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "src" not in ignored and ".venv" in ignored
