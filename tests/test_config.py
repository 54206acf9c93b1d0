"""Configuration: validation with file:line: field: message, and ${VAR} interpolation."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from alertbridge.config import ConfigError, parse_duration
from alertbridge.loading import interpolate, load_config

from . import processes
from .conftest import EXAMPLES

SEED_ENV = {
    "PD_EVENTS_URL": "http://127.0.0.1:1/v2/enqueue",
    "PD_ROUTING_KEY_A": "key-a",
    "PD_ROUTING_KEY_B": "key-b",
    "WEBHOOK_TOKEN": "tok",
}


def check(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return processes.run(["check", "--config", str(path)], env={"PATH": "/usr/bin:/bin", **env})


def test_the_seed_example_is_valid() -> None:
    result = check(EXAMPLES / "thena-pagerduty.yaml", SEED_ENV)
    assert result.returncode == 0, result.stderr
    assert "thena at /thena/events" in result.stdout
    assert "key-a" not in result.stdout  # secrets never print


def test_missing_environment_is_reported_with_its_line() -> None:
    env = {k: v for k, v in SEED_ENV.items() if k != "PD_ROUTING_KEY_B"}
    result = check(EXAMPLES / "thena-pagerduty.yaml", env)
    assert result.returncode == 1
    lines = (EXAMPLES / "thena-pagerduty.yaml").read_text().splitlines()
    line_no = next(i for i, line in enumerate(lines, 1) if "${PD_ROUTING_KEY_B}" in line)
    expected = (
        f"thena-pagerduty.yaml:{line_no}: targets[1].routing_key: environment variable PD_ROUTING_KEY_B is not set"
    )
    assert expected in result.stderr


BROKEN = """\
endpoints:
  - name: tickets
    source: thena
    path: /thena/events
    token: abc
    colour: blue
  - name: other
    source: jira
    path: /jira
targets:
  - name: pd
    type: pagerduty_events
routes:
  - name: r1
    match:
      priority: {at_least: P9}
      title: {regex: "(unclosed"}
    actions:
      - target: nowhere
        action: trigger
      - target: pd
        action: explode
      - target: pd
        action: trigger
        summary: "{{ event.title"
"""


def test_every_problem_is_reported_with_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    result = check(path, {})
    assert result.returncode == 1
    err = result.stderr
    assert f"{path}:6: endpoints[0].colour: unknown field" in err
    assert f"{path}:8: endpoints[1].source: unknown source 'jira'" in err
    assert f"{path}:11: targets[0].routing_key: Field required" in err
    assert f"{path}:16: routes[0].match.priority: at_least takes a priority" in err
    assert f"{path}:17: routes[0].match.title: invalid regular expression" in err
    assert f"{path}:19: routes[0].actions[0].target: no target named 'nowhere'" in err
    assert f"{path}:22: routes[0].actions[1].action: pagerduty_events has no action 'explode'" in err
    assert f"{path}:25: routes[0].actions[2].summary: template error" in err


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("endpoints:\n  - name: x\n    path: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.problems[0].line is not None
    assert "not valid YAML" in str(caught.value)


def test_interpolation() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert interpolate("x${A}y", env) == "x1y"
    assert interpolate("${MISSING:-fallback}", env) == "fallback"
    assert interpolate("${EMPTY:-fallback}", env) == "fallback"
    assert interpolate("${EMPTY-fallback}", env) == ""
    assert interpolate("$${A}", env) == "${A}"
    with pytest.raises(KeyError):
        interpolate("${MISSING}", env)


def test_durations() -> None:
    assert parse_duration("30s") == 30
    assert parse_duration("5m") == 300
    assert parse_duration("24h") == 86400
    assert parse_duration(1.5) == 1.5
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_check_without_a_file_says_what_to_do() -> None:
    result = processes.run(["check"], env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "--config" in result.stderr
