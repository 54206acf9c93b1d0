"""`alertbridge check` catches what parses but cannot work, each at its line with a suggestion, and
reports every problem of a file in one run; `serve` refuses the same files with the same words."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from . import processes
from .conftest import free_port

HEAD = """\
tables:
  assignee_group:
    alice@example.com: A
  group_target:
    A: pagerduty-a
    B: pagerduty-b
endpoints:
  - name: tickets
    source: thena
    path: /thena/events
    token: abc
    labels:
      group: "{{ event.assignees | lookup('assignee_group', default='A') }}"
targets:
  - name: pagerduty-a
    type: pagerduty_events
    routing_key: key-a
  - name: pagerduty-b
    type: pagerduty_events
    routing_key: key-b
  - name: pd-api
    type: pagerduty_rest
    token: api-token
routes:
  - name: page
    match:
      kind: ticket.created
"""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return processes.run(args, env={"PATH": "/usr/bin:/bin"})


def check(tmp_path: Path, text: str) -> tuple[int, list[str], Path]:
    path = tmp_path / "alertbridge.yaml"
    path.write_text(text)
    result = run("check", "--config", str(path))
    return result.returncode, result.stderr.splitlines(), path


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_head_is_valid(tmp_path: Path) -> None:
    text = HEAD + "    actions:\n      - {target: pagerduty-a, action: trigger}\n"
    code, errors, _ = check(tmp_path, text)
    assert code == 0, errors


# (what is appended to HEAD, the line to expect it on, the field, the message, the suggestion)
MISTAKES = [
    (
        "    actions:\n      - target: pagerduty-a\n        action: trigger_incident\n",
        "action: trigger_incident",
        "routes[0].actions[0].action",
        "pagerduty_events has no action 'trigger_incident'; it has: trigger, acknowledge, resolve",
        "did you mean `trigger`?",
    ),
    (
        "      labls.foo: bar\n    actions: []\n",
        "labls.foo",
        "routes[0].match.labls.foo",
        "no event has a field 'labls'",
        "did you mean `labels`?",
    ),
    (
        "      service.nmae: payments\n    actions: []\n",
        "service.nmae",
        "routes[0].match.service.nmae",
        "service has no field 'nmae'",
        "did you mean `name`?",
    ),
    (
        "    actions:\n      - target: pagerduty-a\n        action: trigger\n        summary: '{{ evnt.title }}'\n",
        "summary:",
        "routes[0].actions[0].summary",
        "unknown variable 'evnt' in the template",
        "did you mean `event`?",
    ),
    (
        "    actions:\n      - target: pagerduty-a\n        action: trigger\n        summary: '{{ event.titel }}'\n",
        "summary:",
        "routes[0].actions[0].summary",
        "no event has a field 'titel' (event.titel)",
        "did you mean `title`?",
    ),
    (
        "    actions:\n      - target: pagerduty-a\n        action: trigger\n"
        "        summary: \"{{ labels.g | lookup('grup_target') }}\"\n",
        "summary:",
        "routes[0].actions[0].summary",
        "no table named 'grup_target'",
        "did you mean `group_target`?",
    ),
    (
        "    actions:\n      - target: pagerduty-aa\n        action: trigger\n",
        "target: pagerduty-aa",
        "routes[0].actions[0].target",
        "no target named 'pagerduty-aa'",
        "did you mean `pagerduty-a`?",
    ),
    (
        "    actions:\n      - target: pd-api\n        action: create\n        title: '{{ event.title }}'\n",
        "- target: pd-api",
        "routes[0].actions[0]",
        "pagerduty_rest's create needs `service_id`",
        "see docs/targets/pagerduty-rest.md",
    ),
    (
        "      source: thenna\n    actions: []\n",
        "source: thenna",
        "routes[0].match.source",
        "no source is called 'thenna'",
        "did you mean `thena`?",
    ),
    (
        "      endpoint: [tickets, tikcets]\n    actions: []\n",
        "endpoint: [tickets",
        "routes[0].match.endpoint",
        "no endpoint is called 'tikcets'",
        "did you mean `tickets`?",
    ),
]


@pytest.mark.parametrize(
    ("tail", "needle", "field", "message", "suggestion"),
    MISTAKES,
    ids=[
        "action",
        "match-field",
        "match-subfield",
        "template-variable",
        "template-event-field",
        "template-table",
        "target",
        "required-field",
        "match-source",
        "match-endpoint",
    ],
)
def test_each_mistake_is_reported_at_its_line_with_a_suggestion(
    tmp_path: Path, tail: str, needle: str, field: str, message: str, suggestion: str
) -> None:
    text = HEAD + tail
    code, errors, path = check(tmp_path, text)
    assert code == 1
    (error,) = [e for e in errors if e.startswith(f"{path}:")]
    assert error.startswith(f"{path}:{line_of(text, needle)}: {field}: {message}"), error
    assert suggestion in error


def test_a_table_that_chooses_the_target_must_name_targets(tmp_path: Path) -> None:
    text = HEAD.replace("B: pagerduty-b", "B: pagerduty-bb") + (
        '    actions:\n      - target: "{{ tables.group_target[labels.group] }}"\n        action: trigger\n'
    )
    code, errors, path = check(tmp_path, text)
    assert code == 1
    (error,) = [e for e in errors if e.startswith(f"{path}:")]
    assert error == (
        f"{path}:{line_of(text, 'B: pagerduty-bb')}: tables.group_target.B: no target named 'pagerduty-bb'"
        " (routes[0].actions[0].target takes its target from this table); did you mean `pagerduty-b`?"
    )
    # the same table read through the lookup filter
    looked_up = text.replace("{{ tables.group_target[labels.group] }}", "{{ labels.group | lookup('group_target') }}")
    assert check(tmp_path, looked_up)[1][0] == error


def test_a_failure_alert_names_a_target_and_an_action_it_has(tmp_path: Path) -> None:
    text = HEAD.replace(
        "routes:", "delivery:\n  failure_alert:\n    actions:\n      - {target: pagerduty-a, action: page}\nroutes:"
    )
    code, errors, path = check(tmp_path, text + "    actions: []\n")
    assert code == 1
    assert errors[0] == (
        f"{path}:{line_of(text, 'action: page')}: delivery.failure_alert.actions[0].action: pagerduty_events has no"
        " action 'page'; it has: trigger, acknowledge, resolve"
    )


def test_fields_that_events_can_have_are_accepted(tmp_path: Path) -> None:
    text = HEAD + (
        "      labels.anything: x\n"
        "      raw.message.payload.ticket.id: {exists: true}\n"
        "      identifiers.github_repo: org/repo\n"
        "      subject.id: {exists: true}\n"
        "      priority: {at_least: P2}\n"
        "      allowed_services: [payments]\n"
        "    actions:\n"
        "      - target: pagerduty-a\n"
        "        action: trigger\n"
        '        summary: "{{ event.raw.anything.at_all }} {{ labels.x }} {{ links.pagerduty.incident }}'
        " {{ tables.group_target['A'] }} {{ original.title if original else '' }} {{ range(3) | list }}\"\n"
    )
    code, errors, _ = check(tmp_path, text)
    assert code == 0, errors


MANY = HEAD.replace("    token: abc\n", "    token: abc\n    colour: blue\n").replace(
    "routes:", "server:\n  max_body_bytes: lots\nroutes:"
) + (
    "      labls.team: x\n"
    "    actions:\n"
    "      - target: pagerduty-a\n"
    "        action: trigger_incident\n"
    "      - target: pagerduty-b\n"
    "        action: trigger\n"
    "        summary: '{{ evnt.title }}'\n"
    "  - name: broken\n"
    "    continue: maybe\n"
)


def test_problems_of_every_stage_are_reported_in_one_run_sorted_by_line(tmp_path: Path) -> None:
    code, errors, path = check(tmp_path, MANY)
    assert code == 1
    found = [e for e in errors if e.startswith(f"{path}:")]
    expected = [
        (line_of(MANY, "colour: blue"), "endpoints[0].colour: unknown field"),
        (line_of(MANY, "max_body_bytes: lots"), "server.max_body_bytes: Input should be a valid integer"),
        (line_of(MANY, "labls.team"), "routes[0].match.labls.team: no event has a field 'labls'"),
        (line_of(MANY, "trigger_incident"), "routes[0].actions[0].action: pagerduty_events has no action"),
        (line_of(MANY, "evnt.title"), "routes[0].actions[1].summary: unknown variable 'evnt'"),
        (line_of(MANY, "continue: maybe"), "routes[1].continue: Input should be a valid boolean"),
    ]
    assert len(found) == len(expected), found
    for error, (line, start) in zip(found, expected, strict=True):
        assert error.startswith(f"{path}:{line}: {start}"), error
    assert errors[-1] == f"{len(expected)} problem(s) in {path}"


def test_serve_refuses_the_same_file_with_the_same_messages(tmp_path: Path) -> None:
    path = tmp_path / "alertbridge.yaml"
    path.write_text(MANY)
    checked = run("check", "--config", str(path))
    served = run("serve", "--config", str(path), "--port", str(free_port()), "--host", "127.0.0.1")
    assert served.returncode == checked.returncode == 1
    assert served.stderr == checked.stderr


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_is_valid_with_its_variables_set(example: str) -> None:
    """The shipped examples are what users start from: `check` (and so `serve`) must take each one."""
    import re

    text = (EXAMPLES / example).read_text()
    names = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    env = {n: "https://example.test/x" if n.endswith(("_URL", "_BASE")) else f"value-of-{n.lower()}" for n in names}
    env |= {n: "R0UT1NGKEY" + "0" * 22 for n in names if n.endswith("ROUTING_KEY")}  # the shape PagerDuty's have
    result = processes.run(["check", "--config", str(EXAMPLES / example)], env={"PATH": "/usr/bin:/bin", **env})
    assert result.returncode == 0, result.stderr


def test_dead_is_seen_by_on_dead_templates_only(tmp_path: Path) -> None:
    """`{{ dead.why }}` says how a delivery died, so only an `on_dead` action can read it."""
    on_dead = (
        "    actions:\n      - target: pagerduty-a\n        action: trigger\n"
        "        on_dead: {target: pagerduty-b, action: trigger, summary: 'gave up: {{ dead.why }}'}\n"
    )
    code, errors, _ = check(tmp_path, HEAD + on_dead)
    assert code == 0, errors
    outside = "    actions:\n      - target: pagerduty-a\n        action: trigger\n        summary: '{{ dead.why }}'\n"
    code, errors, _ = check(tmp_path, HEAD + outside)
    assert code == 1 and any("unknown variable 'dead'" in e for e in errors), errors
