"""The `alertbridge` command."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from alertbridge import __version__, logs, sources
from alertbridge import targets as target_types
from alertbridge.config import DEFAULT_ORG, Config, ConfigError, default_config
from alertbridge.events import to_dict
from alertbridge.loading import load_config, read_setting
from alertbridge.routing import compile_rules
from alertbridge.routing.decide import decide
from alertbridge.sources.base import BadPayload, Incoming
from alertbridge.store import Store, StoreChoice, StoreUnavailable, choose_store, masked, open_store

T = TypeVar("T")

app = typer.Typer(
    help="alertbridge: webhooks in, pages out, nothing lost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
events_app = typer.Typer(help="Look at stored events and their decision traces.", no_args_is_help=True)
deliveries_app = typer.Typer(help="Look at the outbox: deliveries and their attempts.", no_args_is_help=True)
app.add_typer(events_app, name="events")
app.add_typer(deliveries_app, name="deliveries")
for _name, _where in sources.commands().items():  # a source's own commands, e.g. `alertbridge thena setup`
    _module, _, _attribute = _where.partition(":")
    app.add_typer(getattr(importlib.import_module(_module), _attribute), name=_name)

# Piped output (logs, CI, grep) gets wide lines rather than tables folded to 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="The YAML configuration (default: $ALERTBRIDGE_CONFIG).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (one document) instead of tables.")]
StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="Store URL (default: $ALERTBRIDGE_STORE, the config's store:, or ./alertbridge.db)."),
]
HOW_TO_CHOOSE = "set --store, ALERTBRIDGE_STORE or the config's store:"


def _config_file(path: Path | None) -> str | None:
    return str(path) if path else os.environ.get("ALERTBRIDGE_CONFIG") or None


def _config(path: Path | None, required: bool = False) -> tuple[Config, str | None]:
    chosen = _config_file(path)
    if not chosen:
        if required:
            err.print("[red]No configuration: pass --config FILE or set ALERTBRIDGE_CONFIG.[/red]")
            raise typer.Exit(2)
        return default_config(), None
    try:
        return load_config(chosen), chosen
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        err.print(f"[red]{len(exc.problems)} problem(s) in {chosen}[/red]")
        raise typer.Exit(1) from None


def _setting(path: Path | None, *loc: str) -> str | None:
    """One setting of the config file (--config or ALERTBRIDGE_CONFIG), the rest left unchecked: the
    store's readers must work where the endpoints' secrets are not set (an operator's laptop)."""
    chosen = _config_file(path)
    if not chosen:
        return None
    try:
        return read_setting(chosen, loc)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        raise typer.Exit(1) from None


def _choose(store_option: str | None, config: Path | None) -> StoreChoice:
    """The store by the one rule; the config file is read only when it decides (no --store, no
    ALERTBRIDGE_STORE), so a `store: ${VAR}` unset on this machine stops nobody who named one."""
    if store_option or os.environ.get("ALERTBRIDGE_STORE"):
        return choose_store(store_option)
    return choose_store(None, _setting(config, "store"))


def _how(choice: StoreChoice) -> str:
    """How the store was chosen, and how to choose another: for every "not there" message."""
    source = "the default" if choice.source == "default" else f"from {choice.source}"
    return f"{source}; {HOW_TO_CHOOSE}"


def _store_run(choice: StoreChoice, work: Callable[[Store], Awaitable[T]], *, create: bool = False) -> T:
    """`work` on the chosen store. Unless `create`, a SQLite file that is not there is an error
    rather than a new empty database: an operator in the wrong directory must be told, not shown
    "0 events" in the middle of an incident."""
    path = choice.sqlite_path
    if path is not None and not create and not Path(path).exists():
        where = path if Path(path).is_absolute() else f"{path} in {Path.cwd()}"
        err.print(
            f"[red]No store at {escape(where)} ({escape(_how(choice))}).[/red]\n"
            "alertbridge serve (or alertbridge migrate) creates it.",
            soft_wrap=True,
        )
        raise typer.Exit(1)

    try:
        store = open_store(choice.url)
    except ValueError as exc:  # an unsupported URL, said without its password
        err.print(f"[red]{escape(str(exc))} ({escape(_how(choice))}).[/red]", soft_wrap=True)
        raise typer.Exit(2) from None

    async def run() -> T:
        try:
            if not create and not await _has_schema(store):
                err.print(
                    f"[red]No alertbridge store in {escape(masked(choice.url))} ({escape(_how(choice))}): "
                    "the database has none of its tables.[/red]\n"
                    "alertbridge migrate (or alertbridge serve) creates them.",
                    soft_wrap=True,
                )
                raise typer.Exit(1)
            await store.open()
        except StoreUnavailable as exc:
            err.print(
                f"[red]The store cannot be opened ({escape(_how(choice))}): {escape(str(exc))}[/red]", soft_wrap=True
            )
            raise typer.Exit(1) from None
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


async def _has_schema(store: Store) -> bool:
    """A PostgreSQL database is checked before it is opened (opening migrates); a SQLite file that
    exists was made by alertbridge."""
    check = getattr(store, "has_schema", None)
    return bool(await check()) if check is not None else True


def _with_store(store_option: str | None, config: Config, work: Callable[[Store], Awaitable[T]]) -> T:
    """`work` on the store of a fully loaded config; the store is created if it is not there."""
    return _store_run(choose_store(store_option, config.store), work, create=True)


def _when(ts: float | None) -> str:
    """ISO 8601 in UTC (2026-12-02T10:50:43Z): unambiguous across the time zones of an incident."""
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: Any, indent: int = 0) -> list[str]:
    """Nested dicts and lists as indented `key: value` lines, the way people read them."""
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        lines = []
        for key, item in value.items():
            if isinstance(item, dict | list | tuple) and item:
                lines.append(f"{pad}{key}:")
                lines += _text(item, indent + 2)
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
        return lines
    if isinstance(value, list | tuple):
        if not value:
            return [pad + "[]"]
        lines = []
        for item in value:
            nested = _text(item, indent + 2)
            lines.append(f"{pad}- {nested[0].lstrip()}")
            lines += nested[1:]
        return lines
    return [pad + _scalar(value)]


def _scalar(value: Any) -> str:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str, ensure_ascii=False)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _lines(lines: list[str]) -> None:
    for line in lines:
        out.print(line, markup=False, highlight=False, soft_wrap=True)


def _plain_json(data: Any) -> None:
    """Machine-readable output: one JSON document, no colours, no wrapping."""
    sys.stdout.write(json.dumps(data, default=str, indent=2) + "\n")


def _event_json(row: Any) -> dict[str, Any]:
    return {"event": to_dict(row.event), "status": row.status, "trace": row.trace, "routed_at": row.routed_at}


def _json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the service. With no configuration it starts on SQLite in the working directory."""
    import uvicorn

    from alertbridge.app import create_app

    settings, path = _config(config)
    logs.configure(log_level)
    if path is None:
        where = masked(choose_store(None, settings.store).url)
        err.print(
            f"[yellow]No configuration given: serving with no endpoints on {escape(where)}. "
            "Pass --config FILE (see examples/ and docs/configuration.md).[/yellow]"
        )
    application = create_app(settings)
    # access_log stays off: webhook URLs carry tokens (?token=…), and access logs would print them.
    uvicorn.run(
        application,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
    )


@app.command()
def check(config: ConfigOption = None) -> None:
    """Validate a configuration; exits non-zero with file:line: field: message for each problem."""
    settings, path = _config(config, required=True)
    table = Table(title=f"{path}: valid")
    table.add_column("kind")
    table.add_column("name")
    table.add_column("detail")
    for e in settings.endpoints:
        table.add_row("endpoint", e.name, f"{e.source} at {e.path}")
    for t in settings.targets:
        table.add_row("target", t.name, t.type)
    for r in settings.routes:
        table.add_row(
            "route", r.name, escape(", ".join(f"{a.action} → {a.target}" for a in r.actions)) or "(no actions)"
        )
    for name, rows in settings.tables.items():
        table.add_row("table", name, f"{len(rows)} entries")
    out.print(table)


@app.command()
def send(
    file: Annotated[Path, typer.Argument(help="A JSON payload as the sender would post it.")],
    endpoint: Annotated[str | None, typer.Option(help="The endpoint (by name) that receives it.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would happen now (the store is read, never changed).")
    ] = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Push a payload through parsing and routing, and show the decision trace and rendered actions.

    Without --dry-run the event is stored as if it had arrived (credentials are not checked);
    a running alertbridge on the same store routes and delivers it. With it, the decision is made
    against the store's state (once-per-ticket keys used, links, teams), which is only read.
    """
    from alertbridge.app import build_endpoints
    from alertbridge.ingress import label

    settings, _ = _config(config, required=True)
    endpoints = {e.name: e for e in build_endpoints(settings, time.time).values()}
    if endpoint is None:
        if len(endpoints) != 1:
            err.print(
                f"[red]Name the endpoint with --endpoint; this config has: {', '.join(endpoints) or 'none'}[/red]"
            )
            raise typer.Exit(2)
        endpoint = next(iter(endpoints))
    if endpoint not in endpoints:
        err.print(f"[red]No endpoint named {endpoint!r}; this config has: {', '.join(endpoints)}[/red]")
        raise typer.Exit(2)
    target = endpoints[endpoint]
    try:
        body = file.read_bytes()
    except OSError as exc:
        err.print(f"[red]Cannot read {file}: {exc.strerror}[/red]")
        raise typer.Exit(2) from None
    rules = compile_rules(settings)
    request = Incoming("POST", target.config.path, {}, {"content-type": "application/json"}, body)
    try:
        events = [label(target, e, rules.templates)[0] for e in target.source.parse(request, target)]
    except BadPayload as exc:
        err.print(f"[red]The payload cannot be read as {target.source.name}: {exc}[/red]")
        raise typer.Exit(1) from None
    if dry_run:
        from alertbridge import dryrun

        url = choose_store(store, settings.store).url
        preview = asyncio.run(dryrun.preview(settings, url, events, time.time))
        for note in preview.notes:
            err.print(f"[yellow]{escape(note)}[/yellow]", soft_wrap=True)  # a path or URL stays whole
        for event, decision in preview.decisions:
            _print_decision(event, decision)
        return
    configured = target_types.configure(settings)
    for event in events:
        _print_decision(event, decide(event, rules.routes, configured, rules.templates, time.time))

    async def put(s: Store) -> None:
        for stored in await s.add_events(events):
            if stored.duplicate_of:
                out.print(f"already stored as {stored.duplicate_of} (same delivery id): nothing new queued")
            else:
                out.print(f"stored as {stored.event_id}: a running alertbridge on this store will deliver it")

    _with_store(store, settings, put)


def _print_decision(event: Any, decision: Any) -> None:
    view = {k: v for k, v in to_dict(event).items() if k != "raw" and v not in (None, [], {})}
    out.rule(f"event {event.kind}")
    _json(view)
    out.rule(f"decision: {decision.status}")
    _print_trace(decision.trace)


def _print_trace(trace: list[dict[str, Any]]) -> None:
    """The decision trace as sentences, every kind of step the router records (a team lookup, an
    echo, a route and its actions), never a Python repr."""
    for step in trace:
        if "route" in step:
            _print_route(step)
        elif "team" in step:
            if step["team"] is None:
                _lines([f"  no team: {step.get('why') or 'no identifier of this event is claimed'}"])
            else:
                how = f" (matched by {step['matched_by']} {step.get('identifier')})" if step.get("matched_by") else ""
                _lines([f"  team {step['team']}{how}"])
        elif "result" in step:
            why = f": {step['why']}" if step.get("why") else ""
            _lines([f"  {step['result']}{why}"])
        else:  # a kind of step this version does not know: its fields, readably
            _lines(_text(step, 2))


def _print_route(step: dict[str, Any]) -> None:
    mark = "[green]✔ matched[/green]" if step.get("matched") else "[dim]✘ no match[/dim]"
    out.print(f"  route [bold]{escape(str(step['route']))}[/bold]: {mark}")
    _lines([f"      {reason}" for reason in step.get("reasons", [])])
    repeat = step.get("repeat")
    if repeat:  # a route with repeat_interval: whether this repeat of the alert notifies
        _lines([f"      {repeat['result']}" + (f": {repeat['why']}" if repeat.get("why") else "")])
    for action in step.get("actions", []):
        name, target = escape(str(action.get("action"))), escape(str(action.get("target")))
        if "error" in action:
            out.print(f"    [red]✘ {name} → {target}: {escape(str(action['error']))}[/red]", soft_wrap=True)
            continue
        extra = f" ({action['not_sent']})" if action.get("not_sent") else ""
        if action.get("waiting"):
            extra += f" (waiting {action['waiting']})"
        if action.get("delivery"):
            extra += f", delivery {action['delivery']}"
        out.print(f"    → {name} on [bold]{target}[/bold]{escape(extra)}", soft_wrap=True)
        # The rendered fields as the target will get them: JSON, indented under their action.
        rendered = json.dumps(action.get("fields", {}), default=str, indent=2, ensure_ascii=False)
        _lines([f"      {line}" for line in rendered.splitlines()])


@events_app.command("list")
def events_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    status: Annotated[
        str | None, typer.Option(help="received, routed, unmatched, failed, suppressed, silenced or inhibited.")
    ] = None,
    config: ConfigOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """The newest events."""
    rows = _store_run(_choose(store, config), lambda s: s.list_events(limit, status))
    if as_json:
        _plain_json([_event_json(row) for row in rows])
        return
    table = Table(title=f"{len(rows)} event(s)")
    for column in ("id", "received (UTC)", "endpoint", "kind", "subject", "title", "status"):
        table.add_column(column, overflow="fold")
    for row in rows:
        e = row.event
        table.add_row(
            e.id,
            _when(e.received_at),
            escape(e.endpoint),
            escape(e.kind),
            escape(e.subject.id) if e.subject else "-",
            escape((e.title or "")[:40]),
            row.status,
        )
    out.print(table)


@events_app.command("show")
def events_show(
    event_id: str, config: ConfigOption = None, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """One event: its fields, its decision trace, its deliveries."""

    async def load(s: Store) -> Any:
        return await s.get_event(event_id), await s.list_deliveries(100, event_id=event_id)

    row, deliveries = _store_run(_choose(store, config), load)
    if row is None:
        err.print(f"[red]No event {escape(event_id)} in this store: alertbridge events list shows the newest.[/red]")
        raise typer.Exit(1)
    if as_json:
        _plain_json({**_event_json(row), "deliveries": [d.__dict__ for d in deliveries]})
        return
    out.rule(f"event {row.event.id} ({row.status})")
    fields = {k: v for k, v in to_dict(row.event).items() if v not in (None, [], {}) and k != "raw"}
    fields["received_at"] = _when(row.event.received_at)
    if row.routed_at:
        fields["routed_at"] = _when(row.routed_at)
    _field_table(fields)
    if row.event.raw is not None:
        out.rule("payload as received")
        _json(row.event.raw)
    out.rule("decision trace")
    _print_trace(row.trace or [{"result": "not routed yet"}])
    _delivery_table(deliveries)


def _field_table(fields: dict[str, Any]) -> None:
    """Field and value, nested values as indented lines."""
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in fields.items():
        shown = "\n".join(_text(value)) if isinstance(value, dict | list | tuple) else _scalar(value)
        table.add_row(escape(key), escape(shown))
    out.print(table)


def _delivery_table(deliveries: list[Any]) -> None:
    table = Table(title=f"{len(deliveries)} deliveries")
    for column in ("id", "event", "target", "action", "status", "attempts", "next / last (UTC)", "last error"):
        table.add_column(column, overflow="fold")
    for d in deliveries:
        when = _when(d.next_attempt_at) if d.status == "pending" else _when(d.updated_at)
        table.add_row(
            d.id,
            d.event_id,
            escape(d.target),
            escape(d.action),
            d.status,
            str(d.attempts),
            when,
            escape(d.last_error or ""),
        )
    out.print(table)


@deliveries_app.command("list")
def deliveries_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    status: Annotated[str | None, typer.Option(help="pending, waiting, in_flight, delivered or dead.")] = None,
    config: ConfigOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """The newest deliveries."""
    deliveries = _store_run(_choose(store, config), lambda s: s.list_deliveries(limit, status))
    if as_json:
        _plain_json([d.__dict__ for d in deliveries])
        return
    _delivery_table(deliveries)


_DELIVERY_TIMES = ("created_at", "updated_at", "next_attempt_at", "budget_from", "event_received_at")


@deliveries_app.command("show")
def deliveries_show(
    delivery_id: str, config: ConfigOption = None, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """One delivery with every attempt."""

    async def load(s: Store) -> Any:
        return await s.get_delivery(delivery_id), await s.attempts(delivery_id)

    delivery, attempts = _store_run(_choose(store, config), load)
    if delivery is None:
        err.print(
            f"[red]No delivery {escape(delivery_id)} in this store: alertbridge deliveries list shows the newest.[/red]"
        )
        raise typer.Exit(1)
    if as_json:
        _plain_json({**delivery.__dict__, "attempts": [a.__dict__ for a in attempts]})
        return
    out.rule(f"delivery {delivery.id} ({delivery.status})")
    fields = {k: v for k, v in delivery.__dict__.items() if v not in (None, [], {}) and k not in ("event", "claim")}
    if delivery.status in ("delivered", "dead"):
        fields.pop("next_attempt_at", None)  # there is none
    for name in _DELIVERY_TIMES:
        if name in fields:
            fields[name] = _when(fields[name])
    _field_table(fields)
    table = Table(title=f"{len(attempts)} attempt(s)")
    for column in ("#", "started (UTC)", "took", "outcome", "HTTP", "message"):
        table.add_column(column, overflow="fold")
    for a in attempts:
        table.add_row(
            str(a.number),
            _when(a.started_at),
            f"{a.duration * 1000:.0f} ms",
            a.outcome,
            str(a.status_code or "-"),
            escape(a.message),
        )
    out.print(table)


@app.command()
def export(
    since: Annotated[str | None, typer.Option(help="Only events received in the last DURATION (1h, 7d).")] = None,
    org: Annotated[str | None, typer.Option(help="Only this org's events.")] = None,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Every stored event as JSON lines (event, status, trace, deliveries), oldest first, on stdout."""
    from alertbridge.config import parse_duration

    try:
        after = time.time() - parse_duration(since) if since else None
    except ValueError as exc:
        err.print(f"[red]--since: {exc}[/red]")
        raise typer.Exit(2) from None

    async def dump(s: Store) -> int:
        seq, count = 0, 0
        while True:
            page = await s.export_events(seq, 500, since=after, org=org)
            if not page:
                return count
            for _, row, deliveries in page:
                kept = [{k: v for k, v in d.__dict__.items() if k not in ("event", "claim")} for d in deliveries]
                sys.stdout.write(json.dumps({**_event_json(row), "deliveries": kept}, default=str) + "\n")
                count += 1
            seq = page[-1][0]

    count = _store_run(_choose(store, config), dump)
    err.print(f"{count} event(s) exported")


silence_app = typer.Typer(help="Silences: mute the events that match, for a while.", no_args_is_help=True)
app.add_typer(silence_app, name="silence")


@silence_app.command("add")
def silence_add(
    matchers: Annotated[list[str], typer.Argument(help="name=value, name!=value, name=~regex, name!~regex.")],
    duration: Annotated[str, typer.Option(help="How long, e.g. 2h, 30m, 1d.")] = "1h",
    comment: Annotated[str, typer.Option(help="Why (shown in every trace it mutes).")] = "",
    author: Annotated[str | None, typer.Option(help="Who (default: $USER).")] = None,
    org: Annotated[str | None, typer.Option(help="The org (default: the server's org).")] = None,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Add a silence from now, for --duration; prints its id."""
    from alertbridge.config import parse_duration
    from alertbridge.routing.silences import Invalid, make, to_row

    now = time.time()
    try:
        seconds = parse_duration(duration)
        silence = make(
            org=org or _setting(config, "server", "org") or DEFAULT_ORG,
            matchers=matchers,
            starts_at=now,
            ends_at=now + seconds,
            created_by=author or os.environ.get("USER") or "alertbridge silence add",
            comment=comment,
            now=now,
        )
    except (Invalid, ValueError) as exc:
        err.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None
    _store_run(_choose(store, config), lambda s: s.add_silence(to_row(silence), now))
    print(silence.id)


@silence_app.command("list")
def silence_list(
    expired: Annotated[bool, typer.Option(help="Include expired silences.")] = False,
    config: ConfigOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Silences and maintenance windows made through the API or this command, newest first."""
    from alertbridge.routing.silences import from_row, iso

    now = time.time()
    found = [from_row(row) for row in _store_run(_choose(store, config), lambda s: s.silences())]
    found = [s for s in found if expired or s.state(now) != "expired"]
    if as_json:
        _plain_json(
            [
                {
                    "id": s.id,
                    "org": s.org,
                    "matchers": [str(m) for m in s.matchers],
                    "starts_at": iso(s.starts_at),
                    "ends_at": iso(s.ends_at),
                    "created_by": s.created_by,
                    "comment": s.comment,
                    "state": s.state(now),
                    "window": s.window.view() if s.window else None,
                }
                for s in found
            ]
        )
        return
    table = Table(title=f"{len(found)} silence(s)")
    for column in ("id", "matchers", "starts (UTC)", "ends (UTC)", "state", "created by", "comment"):
        table.add_column(column, overflow="fold")
    for s in found:
        ends = "never" if s.ends_at == float("inf") else _when(s.ends_at)
        state = s.state(now) + (f" (window {s.window.view()})" if s.window else "")
        table.add_row(
            s.id,
            escape(" ".join(str(m) for m in s.matchers)),
            _when(s.starts_at),
            ends,
            escape(state),
            escape(s.created_by),
            escape(s.comment),
        )
    out.print(table)


@silence_app.command("expire")
def silence_expire(
    ids: Annotated[list[str], typer.Argument(help="The silences to end now.")],
    org: Annotated[str | None, typer.Option(help="The org (default: the server's org).")] = None,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """End silences now; an id that is unknown or expired already exits 1."""
    chosen = org or _setting(config, "server", "org") or DEFAULT_ORG

    async def expire(s: Store) -> list[str]:
        return [i for i in ids if not await s.expire_silence(chosen, i, time.time())]

    missed = _store_run(_choose(store, config), expire)
    for i in missed:
        err.print(f"[red]No active or pending silence {escape(i)} in org {escape(chosen)}.[/red]")
    if missed:
        raise typer.Exit(1)


tokens_app = typer.Typer(help="API tokens for the admin API (/api/v1).", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Option(help="What the token is for, e.g. ci or grafana.")] = "admin",
    org: Annotated[str | None, typer.Option(help="The org it sees (default: the server's org).")] = None,
    role: Annotated[str, typer.Option(help="viewer (reads), member or admin (also replay).")] = "admin",
    user: Annotated[str | None, typer.Option(help="The user it acts for (the inbox is per user).")] = None,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Make an API token. It is shown once and kept only as a hash."""
    import secrets as random_secrets

    from alertbridge.auth import ROLES
    from alertbridge.security import token_hash

    if role not in ROLES:
        err.print(f"[red]Unknown role {role!r}: use {', '.join(ROLES)}.[/red]")
        raise typer.Exit(2)
    chosen_org = org or _setting(config, "server", "org") or DEFAULT_ORG
    token = "ab_" + random_secrets.token_urlsafe(32)

    async def make(s: Store) -> bool:
        if user is not None and await s.user(chosen_org, user) is None:
            return False
        await s.create_token(chosen_org, name, role, token_hash(token), time.time(), user.lower() if user else None)
        return True

    if not _store_run(_choose(store, config), make, create=True):
        err.print(
            f"[red]No user {escape(str(user))} in org {escape(chosen_org)}: alertbridge users create first.[/red]"
        )
        raise typer.Exit(1)
    if sys.stdout.isatty():
        err.print(f"API token [bold]{escape(name)}[/bold] ({role}, org {escape(chosen_org)}); shown once:")
    print(token)


users_app = typer.Typer(help="People who use the inbox and the console.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="Their email, which is their name to sign in.")],
    role: Annotated[str, typer.Option(help="admin, member or viewer.")] = "admin",
    org: Annotated[str | None, typer.Option(help="Their org (default: the server's org).")] = None,
    password: Annotated[
        str | None, typer.Option(help="Default: asked for, or $ALERTBRIDGE_PASSWORD.", hide_input=True)
    ] = None,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Create a user (the first admin, say). The password is kept as an argon2 hash."""
    from argon2 import PasswordHasher

    from alertbridge.auth import ROLES

    if role not in ROLES:
        err.print(f"[red]Unknown role {role!r}: use {', '.join(ROLES)}.[/red]")
        raise typer.Exit(2)
    secret = password or os.environ.get("ALERTBRIDGE_PASSWORD")
    if not secret:
        if not sys.stdin.isatty():  # a script or a container: there is nobody to ask
            err.print(
                "[red]No password: set ALERTBRIDGE_PASSWORD (or pass --password) when there is no terminal "
                "to ask on.[/red]",
                soft_wrap=True,
            )
            raise typer.Exit(2)
        secret = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(secret) < 10:
        err.print("[red]The password needs at least 10 characters.[/red]")
        raise typer.Exit(2)
    chosen_org = org or _setting(config, "server", "org") or DEFAULT_ORG
    hashed = PasswordHasher().hash(secret)
    created = _store_run(
        _choose(store, config), lambda s: s.create_user(chosen_org, email, hashed, role, time.time()), create=True
    )
    if not created:
        err.print(f"[red]{escape(email)} already exists in org {escape(chosen_org)}.[/red]")
        raise typer.Exit(1)
    out.print(f"user {escape(email.lower())} ({role}) created in org {escape(chosen_org)}")


@app.command()
def replay(
    ids: Annotated[list[str] | None, typer.Argument(help="Delivery ids, or event ids (all their deliveries).")] = None,
    target: Annotated[str | None, typer.Option(help="Or a selection: deliveries to this target …")] = None,
    status: Annotated[str, typer.Option(help="… with this status …")] = "dead",
    since: Annotated[str | None, typer.Option(help="… made in the last DURATION (30m, 2h, 1d).")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Replay a selection without asking.")] = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Send deliveries again: they become pending, due now, with a fresh retry budget.

    By id, or by selection (`--target pd-a --since 2h`: every dead letter of that target in the
    last two hours), which first shows how many it would send.
    """
    from alertbridge.config import parse_duration

    chosen = _choose(store, config)
    if not ids:
        if target is None and since is None:
            err.print("[red]Give delivery or event ids, or a selection: --target NAME and/or --since 2h.[/red]")
            raise typer.Exit(2)
        try:
            after = time.time() - parse_duration(since) if since else None
        except ValueError as exc:
            err.print(f"[red]--since: {exc}[/red]")
            raise typer.Exit(2) from None
        found = _store_run(chosen, lambda s: s.list_deliveries(1000, status, target=target, since=after))
        if not found:
            out.print(f"No {status} deliveries match: nothing to replay.")
            return
        _delivery_table(found)
        if not yes and not (sys.stdin.isatty() and typer.confirm(f"Replay these {len(found)}?")):
            out.print(f"{len(found)} would be replayed; run again with --yes to send them.")
            return
        ids = [d.id for d in found]
    wanted = list(ids)
    done = _store_run(chosen, lambda s: s.replay(wanted, time.time()))
    if not done:
        err.print("[red]Nothing to replay: no delivery or event with those ids (or they are in flight now).[/red]")
        raise typer.Exit(1)
    for delivery_id in done:
        out.print(f"queued {delivery_id}")
    out.print(f"{len(done)} delivery(ies) queued again; a running alertbridge sends them within a second.")


@app.command()
def migrate(config: ConfigOption = None, store: StoreOption = None) -> None:
    """Bring the store's schema up to date (serve does it too, at start): prints what it applied.

    Safe to run while replicas serve and from several places at once: on PostgreSQL the migrations
    are applied under an advisory lock, each in its own transaction.
    """
    url = _choose(store, config).url
    try:
        target = open_store(url)
        applied = asyncio.run(target.migrate())
    except (ValueError, StoreUnavailable) as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1) from None
    if not applied:
        out.print(f"{escape(masked(url))}: up to date, nothing to apply.")
        return
    table = Table("version", "what", title=f"applied to {escape(masked(url))}")
    for version, what in applied:
        table.add_row(str(version), escape(what))
    out.print(table)
    out.print(f"{len(applied)} migration(s) applied.")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
