"""The command line: serve with no config, send --dry-run, send into a running server, events and deliveries,
and the store's readers during an incident: run from another directory, without the endpoints' secrets."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import typer.main

from alertbridge.cli import app

from . import processes
from .conftest import EXAMPLES, Server, free_port, wait_until
from .fakes.pagerduty import FakePagerDutyEvents
from .fakes.slack import FakeSlack
from .test_ingress import TOKEN, seed_env, ticket_event
from .test_team_routing import pd_post, start

ISO_UTC = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\b")


def run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return processes.run(args, cwd=cwd, env={**os.environ, **env})


def test_serve_with_no_config_starts_on_sqlite_in_the_working_directory(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTBRIDGE_")}
    log = tmp_path / "serve.log"
    process = processes.start(["serve", "--port", str(port), "--host", "127.0.0.1"], cwd=tmp_path, env=env, log=log)
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, 20, "the server to start")
        assert (tmp_path / "alertbridge.db").exists()
        assert httpx.get(f"http://127.0.0.1:{port}/health").json() == {"ok": True}
    finally:
        process.terminate()
        process.wait(10)
    assert "No configuration given" in log.read_text()


def test_send_dry_run_shows_the_trace_and_the_rendered_action(tmp_path: Path) -> None:
    payload = tmp_path / "ticket.json"
    payload.write_text(json.dumps(ticket_event("dry-1", "DRY-1", [{"email": "bedourelborai@luciq.ai"}])))
    result = run(
        "send",
        str(payload),
        "--endpoint",
        "thena-events",
        "--dry-run",
        "--config",
        str(EXAMPLES / "thena-pagerduty.yaml"),
        cwd=tmp_path,
        env=seed_env(),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "decision: routed" in out
    assert "page-ticket-owner" in out and "matched" in out
    assert "trigger on pagerduty-b" in out
    assert '"summary": "[Thena] Ticket DRY-1"' in out
    assert '"dedup_key": "thena-ticket-DRY-1"' in out
    assert "routing-key-b" not in out  # the routing key lives in the target, never in the trace
    assert not (tmp_path / "alertbridge.db").exists()  # a dry run stores nothing


def test_send_dry_run_explains_a_miss(tmp_path: Path) -> None:
    payload = tmp_path / "ticket.json"
    payload.write_text(json.dumps(ticket_event("dry-2", "DRY-2", "stranger@x.io", event_type="ticket:deleted")))
    result = run(
        "send",
        str(payload),
        "--endpoint",
        "thena-events",
        "--dry-run",
        "--config",
        str(EXAMPLES / "thena-pagerduty.yaml"),
        cwd=tmp_path,
        env=seed_env(),
    )
    assert result.returncode == 0, result.stderr
    assert "decision: unmatched" in result.stdout
    assert "kind 'ticket.deleted' NOT in ['ticket.created', 'ticket.updated']" in result.stdout
    assert "labels.service_group is missing" in result.stdout


def test_send_refuses_an_unreadable_payload_and_an_unknown_endpoint(tmp_path: Path) -> None:
    payload = tmp_path / "bad.json"
    payload.write_text("{not json")
    config = str(EXAMPLES / "thena-pagerduty.yaml")
    bad = run(
        "send",
        str(payload),
        "--endpoint",
        "thena-events",
        "--dry-run",
        "--config",
        config,
        cwd=tmp_path,
        env=seed_env(),
    )
    assert bad.returncode == 1 and "cannot be read as thena" in bad.stderr
    unknown = run("send", str(payload), "--endpoint", "nope", "--config", config, cwd=tmp_path, env=seed_env())
    assert unknown.returncode == 2 and "thena-events" in unknown.stderr


def test_send_into_the_store_of_a_running_server_is_delivered(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    with FakePagerDutyEvents() as pd:
        server = server_factory(EXAMPLES / "thena-pagerduty.yaml", seed_env(pd.url + "/v2/enqueue"))
        payload = tmp_path / "ticket.json"
        payload.write_text(json.dumps(ticket_event("cli-1", "CLI-1", [{"email": "hossamhafez@luciq.ai"}])))
        out = server.cli("send", str(payload), "--endpoint", "thena-events", "--config", str(server.config)).stdout
        assert "stored as" in out
        pd.wait_for(lambda: len(pd.incidents) == 1)
        again = server.cli("send", str(payload), "--endpoint", "thena-events", "--config", str(server.config)).stdout
        assert "already stored" in again

    (row,) = server.events()
    shown = server.cli("events", "show", row["event"]["id"]).stdout
    assert "page-ticket-owner" in shown and "delivered" in shown
    (delivery,) = server.deliveries("delivered")
    detail = server.cli("deliveries", "show", delivery["id"]).stdout
    assert "success" in detail and "202" in detail
    assert "1 attempt" in detail


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of an operator's shell: none of alertbridge's variables, none of the endpoints' secrets."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("ALERTBRIDGE_") and k not in seed_env()}
    return {**kept, **extra}


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI as an operator runs it: its own process, in its own directory, with exactly `env` and
    nothing on its standard input."""
    return processes.run(args, cwd=cwd, env=env)


def elsewhere(tmp_path: Path) -> Path:
    """A working directory that is not the server's: relative paths must not decide anything."""
    path = tmp_path / "elsewhere"
    path.mkdir(exist_ok=True)
    return path


def thena_server(server_factory: Callable[..., Server], pd: FakePagerDutyEvents) -> tuple[Server, str]:
    """The seed 000 example with one ticket paged: (the server, the stored event's id)."""
    server = server_factory(EXAMPLES / "thena-pagerduty.yaml", seed_env(pd.url + "/v2/enqueue"))
    answer = server.post(
        f"/thena/events?token={TOKEN}", ticket_event("iso-1", "ISO-1", [{"email": "hossamhafez@luciq.ai"}])
    )
    assert answer.status_code == 200, answer.text
    pd.wait_for(lambda: len(pd.incidents) == 1)
    wait_until(lambda: server.deliveries("delivered"), 10, "the delivery to be recorded")
    (row,) = server.events()
    return server, row["event"]["id"]


def test_events_list_reads_the_store_named_in_the_config_without_its_secrets(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    with FakePagerDutyEvents() as pd:
        server, event_id = thena_server(server_factory, pd)
    # The example as an operator has it: its store named in the file, its ${WEBHOOK_TOKEN}… unset here.
    config = tmp_path / "ops" / "alertbridge.yaml"
    config.parent.mkdir()
    example = (EXAMPLES / "thena-pagerduty.yaml").read_text()
    config.write_text(f"store: {server.store}\n{example}")
    env = clean_env()
    for args in (("events", "list"), ("deliveries", "list"), ("events", "show", event_id)):
        result = cli(*args, "--config", str(config), cwd=elsewhere(tmp_path), env=env)
        assert result.returncode == 0, result.stderr
        assert event_id in result.stdout
    # ALERTBRIDGE_CONFIG names the file as well as --config does.
    listed = cli("events", "list", "--json", cwd=elsewhere(tmp_path), env={**env, "ALERTBRIDGE_CONFIG": str(config)})
    assert [row["event"]["id"] for row in json.loads(listed.stdout)] == [event_id]
    # A variable in store: is read like any; the store's own variable must be set, and is named if not.
    config.write_text(f"store: ${{OPS_STORE}}\n{example}")
    named = cli(
        "events", "list", "--config", str(config), cwd=elsewhere(tmp_path), env=clean_env(OPS_STORE=server.store)
    )
    assert named.returncode == 0 and event_id in named.stdout, named.stderr
    unset = cli("events", "list", "--config", str(config), cwd=elsewhere(tmp_path), env=clean_env())
    assert unset.returncode == 1
    assert f"{config}:1: store: environment variable OPS_STORE is not set" in unset.stderr
    # … unless the store is named otherwise: then the file's store: is not read at all.
    for how in (
        {"args": ("--store", server.store), "env": {}},
        {"args": (), "env": {"ALERTBRIDGE_STORE": server.store}},
    ):
        chosen = cli(
            "events",
            "list",
            "--config",
            str(config),
            *how["args"],
            cwd=elsewhere(tmp_path),
            env=clean_env(**how["env"]),
        )
        assert chosen.returncode == 0 and event_id in chosen.stdout, chosen.stderr
    assert list(elsewhere(tmp_path).iterdir()) == []


def test_the_readers_never_create_a_store_and_say_where_they_looked(tmp_path: Path) -> None:
    here = elsewhere(tmp_path)
    for args in (
        ("events", "list"),
        ("events", "show", "01JB4Q7ZK3"),
        ("deliveries", "list"),
        ("deliveries", "show", "01JB5R2M"),
        ("replay", "01JB5R2M"),
        ("export",),
    ):
        result = cli(*args, cwd=here, env=clean_env())
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        said = " ".join(result.stderr.split())
        assert f"No store at ./alertbridge.db in {here} (the default; set --store, ALERTBRIDGE_STORE" in said, said
    missing = tmp_path / "nowhere" / "alertbridge.db"
    named = cli("events", "list", cwd=here, env=clean_env(ALERTBRIDGE_STORE=f"sqlite:///{missing}"))
    assert named.returncode == 1 and f"No store at {missing} (from ALERTBRIDGE_STORE;" in " ".join(named.stderr.split())
    assert list(here.iterdir()) == [] and not missing.parent.exists()
    # A PostgreSQL server that does not answer: said, with the password masked.
    down = cli(
        "deliveries",
        "list",
        "--store",
        "postgresql://ops:hunter2-pw@127.0.0.1:1/alertbridge",
        cwd=here,
        env=clean_env(),
    )
    assert down.returncode == 1
    assert "postgresql://ops:***@127.0.0.1:1/alertbridge" in down.stderr and "from --store" in down.stderr
    assert "hunter2-pw" not in down.stderr + down.stdout


def test_the_readers_do_not_make_a_store_of_an_empty_database(store_url: str, tmp_path: Path) -> None:
    """This test's store, not made yet: no SQLite file, or an empty PostgreSQL database (a wrong name in a URL)."""
    result = cli("events", "list", "--store", store_url, cwd=elsewhere(tmp_path), env=clean_env())
    assert result.returncode == 1, result.stdout
    said = " ".join(result.stderr.split())
    assert "from --store; set --store, ALERTBRIDGE_STORE or the config's store:" in said
    if store_url.startswith("sqlite:"):
        assert f"No store at {tmp_path / 'alertbridge.db'}" in said
        assert not (tmp_path / "alertbridge.db").exists()
    else:
        assert f"No alertbridge store in {store_url}" in said and "alertbridge migrate" in said
        with psycopg.connect(store_url) as conn:
            assert conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)


def test_events_and_deliveries_show_iso_times_and_the_trace_as_text(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    with FakePagerDutyEvents() as pd:
        server, event_id = thena_server(server_factory, pd)
    env = clean_env()
    at = ("--store", server.store)
    shown = cli("events", "show", event_id, *at, cwd=elsewhere(tmp_path), env=env)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert ISO_UTC.search(out), out
    assert "route page-ticket-owner: ✔ matched" in out
    assert "trigger on pagerduty-a, delivery " in out
    assert '"dedup_key": "thena-ticket-ISO-1"' in out  # the rendered fields, as JSON
    assert (
        "('" not in out and "{'" not in out
    )  # no Python repr of a dict anywhere (the route's reasons quote values as it writes them)
    assert "routing-key-a" not in out  # the routing key lives in the target, never in the trace

    (delivery,) = server.deliveries("delivered")
    detail = cli("deliveries", "show", delivery["id"], *at, cwd=elsewhere(tmp_path), env=env).stdout
    assert "{'" not in detail and "('" not in detail and "1 attempt" in detail
    assert len(ISO_UTC.findall(detail)) >= 3  # created, updated, the attempt's start
    for args in (("events", "list"), ("deliveries", "list")):
        table = cli(*args, *at, cwd=elsewhere(tmp_path), env=env).stdout
        assert ISO_UTC.search(table), table
    assert list(elsewhere(tmp_path).iterdir()) == []


def test_events_show_says_which_team_was_found_in_words(server_factory: Callable[..., Server], tmp_path: Path) -> None:
    with FakeSlack("xoxb-test", ("C0A4967KRBM",)) as slack:
        server = start(server_factory, "http://127.0.0.1:9/agent", slack, tmp_path)
        assert pd_post(server, "PSVCPAY", "E1").status_code == 200
        wait_until(lambda: all(e["routed_at"] for e in server.events()), 10, "routed")
    (row,) = server.events()
    out = cli("events", "show", row["event"]["id"], "--store", server.store, cwd=elsewhere(tmp_path), env=clean_env())
    assert out.returncode == 0, out.stderr
    assert "team payments (matched by pagerduty_service_id PSVCPAY)" in out.stdout
    assert "{'" not in out.stdout


def test_users_create_without_a_terminal_asks_for_the_password_in_the_environment(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'users.db'}"
    args = ("users", "create", "--email", "ops@example.com", "--store", store)
    refused = cli(*args, cwd=elsewhere(tmp_path), env=clean_env())
    assert refused.returncode == 2
    assert "set ALERTBRIDGE_PASSWORD" in refused.stderr
    assert not (tmp_path / "users.db").exists()
    made = cli(
        *args,
        cwd=elsewhere(tmp_path),
        env=clean_env(ALERTBRIDGE_PASSWORD="a long passphrase"),
    )
    assert made.returncode == 0, made.stderr
    assert "a long passphrase" not in made.stdout + made.stderr


ROOT = EXAMPLES.parent
FENCED = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
SHELL = ("bash", "console", "sh", "shell", "")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
# A command line: `alertbridge …` at its start, after a prompt or after VAR=value assignments.
COMMAND = re.compile(r"^\s*(?:\$\s+)?(?:[A-Z_]+=\S*\s+)*alertbridge\s+(?P<rest>[a-z].*)$")
LEAVE_OFF = re.compile(r"\s(#|\||>|&&).*$")  # a comment, a pipe, a redirection: not the command's


COMMANDS = set(typer.main.get_command(app).commands)


def documented_commands() -> list[tuple[str, str]]:
    """(page, command line) for every `alertbridge …` in README.md and docs/: shell blocks and inline code."""
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = page.read_text()
        lines = [(True, line) for lang, block in FENCED.findall(text) if lang in SHELL for line in block.splitlines()]
        # Inline code is a command when it starts with one (`alertbridge event` is a PagerDuty summary).
        lines += [(False, span) for span in CODE_SPAN.findall(text)]
        for shell, line in lines:
            match = COMMAND.match(line)
            if match and (shell or match["rest"].split()[0] in COMMANDS):
                command = LEAVE_OFF.sub("", match["rest"]).strip().rstrip("\\").strip()
                found.append((str(page.relative_to(ROOT)), command))
    return found


def test_the_docs_name_the_command_one_way_and_only_commands_and_options_it_has() -> None:
    pages = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    for page in pages:
        text = page.read_text()
        assert "python -m alertbridge" not in text, f"{page}: write `alertbridge …`"
        # README's quick start says once how to get `alertbridge` on PATH; nowhere else names it otherwise.
        assert ".venv/bin/alertbridge" not in text, f"{page}: write `alertbridge …` (the quick start says how)"
    commands = documented_commands()
    assert len(commands) > 30
    root = typer.main.get_command(app)
    wrong = []
    for page, line in commands:
        words, command = line.split(), root
        while words and hasattr(command, "commands") and words[0] in command.commands:  # a group: descend
            command = command.commands[words.pop(0)]
        if hasattr(command, "commands"):
            wrong.append(f"{page}: alertbridge {line}: no such command")
            continue
        known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        for word in words:
            option = word.strip("[]").split("=")[0]
            if option.startswith("-") and option not in known:
                wrong.append(f"{page}: alertbridge {line}: {command.name} has no {option}")
    assert not wrong, "\n".join(wrong)
