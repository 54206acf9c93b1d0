"""What `alertbridge check` (and `serve`, which loads through the same path) finds wrong in a file.

Two kinds of problems, reported together so an operator fixes them in one pass: the shape of the
file (pydantic's errors, collected per endpoint, target, route and team, and per top-level block),
and what cannot work although it parses (an action a target type does not have, a match on a field
no event has, a table of target names naming none, a template reading a variable no template
sees). The semantic checks run on whatever parsed, so one bad block does not hide the others.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from jinja2 import TemplateSyntaxError, meta, nodes
from pydantic import BaseModel, TypeAdapter, ValidationError

from alertbridge import routing, sources
from alertbridge import targets as target_types
from alertbridge.config import (
    Config,
    EndpointConfig,
    InhibitRuleConfig,
    Located,
    MaintenanceConfig,
    RouteConfig,
    TargetConfig,
    TeamConfig,
    errors_of,
    format_loc,
    validate_teams,
)
from alertbridge.events import Event
from alertbridge.routing.routes import NAMED_FILTERS
from alertbridge.spelling import did_you_mean
from alertbridge.templating.templates import Templates

# The lists whose items are validated one by one: a bad item is reported, the others still checked.
_ITEMS: dict[str, type[BaseModel]] = {
    "endpoints": EndpointConfig,
    "targets": TargetConfig,
    "routes": RouteConfig,
    "teams": TeamConfig,
    "maintenance": MaintenanceConfig,
    "inhibit_rules": InhibitRuleConfig,
}

# What every template sees (templating.context); `tables` and Jinja's own globals come from the environment.
TEMPLATE_VARIABLES = ("event", "labels", "original", "links", "team")
RESPONSE_VARIABLES = ("events", "duplicate")  # only an endpoint's `response`
ON_DEAD_VARIABLES = ("dead",)  # only an action's `on_dead`: `dead.why`, filled in when the delivery dies

# Event fields that hold a mapping, and the keys a match or template may read below them.
# None: any key (what a sender, a label or an identifier may carry is open).
_NESTED: dict[str, tuple[str, ...] | None] = {
    "subject": ("system", "type", "id"),
    "service": ("id", "name"),
    "labels": None,
    "identifiers": None,
    "raw": None,
}
TEAM_FIELDS = ("name", "org", "matched_by", "identifier", "slack_channel")  # teams.TeamMatch.view()


def validate(data: Mapping[str, Any]) -> tuple[Config | None, list[Located]]:
    """The config built from whatever parsed, and every problem, shape and meaning together."""
    located: list[Located] = []
    kept: dict[str, Any] = {}
    positions: dict[str, list[int]] = {}  # a list's kept items → their index in the file
    for key, value in data.items():
        model = _ITEMS.get(key)
        if model is None or not isinstance(value, list):
            kept[key] = value
            continue
        good, where = [], []
        for i, item in enumerate(value):
            claims = _claim_problems(key, item)
            try:
                parsed = model.model_validate(item)
            except ValidationError as exc:
                located += errors_of(exc, (key, i))
            else:
                if not claims:  # a team with an unknown routing key is left out, as a bad item is
                    good.append(parsed)
                    where.append(i)
            located += [((key, i, *loc), message) for loc, message in claims]
        kept[key], positions[key] = good, where
    located += _priority_problems(kept.get("routing"))
    config = None
    for _ in range(len(kept) + 1):  # drop each block that fails, and build the rest
        try:
            config = Config.model_validate(kept)
            break
        except ValidationError as exc:
            bad = errors_of(exc)
            located += bad
            for loc, _message in bad:
                if loc:
                    kept.pop(loc[0], None)
                else:
                    kept.clear()
    if config is None:
        return None, located

    semantic = (
        sources.validate_endpoints(config)
        + target_types.validate_targets(config)
        + routing.validate_routes(config)
        + routing.validate_maintenance(config)
        + routing.validate_inhibit_rules(config)
        + validate_teams(config)
        + _meaning(config, _declared_targets(data), bool(data.get("teams")))
    )
    for loc, message in semantic:
        if len(loc) > 1 and loc[0] in positions and isinstance(loc[1], int):
            loc = (loc[0], positions[loc[0]][loc[1]], *loc[2:])
        located.append((loc, message))
    return config, located


def _claim_problems(key: str, item: Any) -> list[Located]:
    """A team's routing keys, checked against the claims the sources declare (`sources.CLAIM_KINDS`):
    the registry's part of the team's validation, which `config.TeamConfig` cannot import. Only a
    `routing` the model takes is checked, as its validator did."""
    if key != "teams" or not isinstance(item, Mapping) or not _fits(_ROUTING, item.get("routing")):
        return []
    problem = sources.unknown_claim_keys(item.get("routing"))
    return [(("routing",), problem)] if problem else []


def _priority_problems(block: Any) -> list[Located]:
    """`routing.priority` against the identifiers the sources' claims declare (the registry's part
    of `config.RoutingConfig`'s validation)."""
    if not isinstance(block, Mapping) or not _fits(_PRIORITY, block.get("priority")):
        return []
    problem = sources.unknown_priority(block.get("priority"))
    return [(("routing", "priority"), problem)] if problem else []


_ROUTING: TypeAdapter[Any] = TypeAdapter(dict[str, list[str]])
_PRIORITY: TypeAdapter[Any] = TypeAdapter(list[str])


def _fits(adapter: TypeAdapter[Any], value: Any) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


def _declared_targets(data: Mapping[str, Any]) -> set[str]:
    """Every target name the file declares, parsed or not, so a broken target is reported once
    (where it is) and not again at each action naming it."""
    items = data.get("targets")
    if not isinstance(items, list):
        return set()
    return {str(t["name"]) for t in items if isinstance(t, Mapping) and isinstance(t.get("name"), str)}


def _meaning(config: Config, declared: set[str], teams: bool) -> list[Located]:
    """The checks of what parses but cannot work."""
    problems: list[Located] = []
    templates = Templates(config.tables)
    types = {t.name: t.type for t in config.targets}
    names = sorted(declared | set(types))
    table_users: dict[str, str] = {}  # table → the first action that takes its target from it
    for i, route in enumerate(config.routes):
        loc: tuple[Any, ...] = ("routes", i)
        for path, spec in route.match.items():
            message = match_path_problem(path, teams) or _match_value_problem(config, path, spec)
            if message:
                problems.append(((*loc, "match", path), message))
        for j, action in enumerate(route.actions):
            aloc = (*loc, "actions", j)
            values = {"target": action.target, "key": action.key, **action.fields}
            for field_name, source in _templates_in(values):
                extra: Sequence[str] = ON_DEAD_VARIABLES if field_name == "on_dead" else ()
                for message in template_problems(templates, source, extra):
                    problems.append(((*aloc, field_name), message))
            if "{" in action.target:
                for table in tables_read(templates, action.target):
                    table_users.setdefault(table, format_loc((*aloc, "target")))
                continue  # which target is chosen per event; its table is checked below
            problems += _action_problems(aloc, action.target, action.action, action.fields, types, names)
            on_dead = action.fields.get("on_dead")
            if on_dead is not None:
                if not isinstance(on_dead, dict) or not isinstance(on_dead.get("target"), str):
                    problems.append(
                        ((*aloc, "on_dead"), "on_dead needs a `target` (a configured target) and an `action`")
                    )
                else:
                    dead = {k: v for k, v in on_dead.items() if k not in ("target", "action")}
                    problems += _action_problems(
                        (*aloc, "on_dead"), on_dead["target"], str(on_dead.get("action")), dead, types, names
                    )
    for n, spec in enumerate(config.delivery.failure_alert.actions):  # plain text with {target} and {reason}
        aloc = ("delivery", "failure_alert", "actions", n)
        if not isinstance(spec.get("target"), str):
            problems.append((aloc, "a failure alert action needs a `target` (a configured target) and an `action`"))
            continue
        fields = {k: v for k, v in spec.items() if k not in ("target", "action")}
        problems += _action_problems(aloc, spec["target"], str(spec.get("action")), fields, types, names)
    for table, user in table_users.items():
        for key, value in config.tables.get(table, {}).items():
            if isinstance(value, str) and value not in names:
                problems.append(
                    (
                        ("tables", table, key),
                        f"no target named {value!r} ({user} takes its target from this table)"
                        + did_you_mean(value, names),
                    )
                )
    for i, endpoint in enumerate(config.endpoints):
        blocks = (("labels", endpoint.labels, ()), ("response", endpoint.response or {}, RESPONSE_VARIABLES))
        for part, block, extra in blocks:
            for field_name, source in _templates_in(block):
                for message in template_problems(templates, source, extra):
                    problems.append((("endpoints", i, part, field_name), message))
    return problems


def _action_problems(
    loc: tuple[Any, ...],
    target: str,
    action: str,
    fields: Mapping[str, Any],
    types: Mapping[str, str],
    names: Sequence[str],
) -> list[Located]:
    """A named target that exists, an action its type has, and the fields that action needs."""
    if target not in names:
        return [((*loc, "target"), f"no target named {target!r}" + did_you_mean(target, names))]
    kind = target_types.REGISTRY.get(types.get(target, ""))
    if kind is None:
        return []  # the target itself is broken, and reported where it is declared
    if action not in kind.actions:
        message = f"{kind.name} has no action {action!r}; it has: {', '.join(kind.actions)}"
        return [((*loc, "action"), message + did_you_mean(action, list(kind.actions)))]
    problems: list[Located] = []
    # A field written in the file counts as given even if empty: an unset ${VAR} is reported on its own.
    given = {k for k, v in kind.actions[action].items() if v not in (None, "")} | set(fields)
    for alternatives in kind.required.get(action, ()):
        if not given & set(alternatives):
            needed = " or ".join(f"`{a}`" for a in alternatives)
            problems.append(
                (loc, f"{kind.name}'s {action} needs {needed} (see docs/targets/{kind.name.replace('_', '-')}.md)")
            )
    return problems


def match_path_problem(path: str, teams: bool = True) -> str | None:
    """Why no event can have the field a route matches on, or None when some can."""
    if path in NAMED_FILTERS:
        return None
    top, *rest = path.split(".")
    fields = [*Event.__struct_fields__, "team"]
    if top not in fields:
        return f"no event has a field {top!r}" + did_you_mean(top, fields) + f" (event fields: {', '.join(fields)})"
    if top == "team":
        if not teams:
            return "team.* is only set when teams are configured (docs/teams.md)"
        allowed: tuple[str, ...] | None = TEAM_FIELDS
    elif top in _NESTED:
        allowed = _NESTED[top]
    else:
        allowed = ()
    if not rest or allowed is None:
        return None
    if not allowed:
        return f"{top} has no fields of its own; match on {top!r} itself"
    if rest[0] not in allowed or len(rest) > 1:
        suggestion = did_you_mean(rest[0], allowed)
        return f"{top} has no field {'.'.join(rest)!r}{suggestion} (it has: {', '.join(allowed)})"
    return None


def _match_value_problem(config: Config, path: str, spec: Any) -> str | None:
    """A route that asks for an endpoint or a source that nothing can be, so it never matches."""
    if path == "source":
        known = sources.names()
    elif path == "endpoint" and config.endpoints:  # with none in the file, they are made through the API
        known = [e.name for e in config.endpoints]
    else:
        return None
    if isinstance(spec, dict) and len(spec) == 1:
        spec = spec.get("equals", spec.get("one_of"))
    for value in spec if isinstance(spec, list) else [spec]:
        if isinstance(value, str) and value.casefold() not in {k.casefold() for k in known}:
            return f"no {path} is called {value!r}{did_you_mean(value, known)} (known: {', '.join(known)})"
    return None


def template_problems(templates: Templates, source: str, extra: Sequence[str] = ()) -> list[str]:
    """Names a template reads that nothing provides: variables, tables, event fields no event has."""
    if "{" not in source:
        return []
    try:
        tree = templates.env.parse(source)
    except TemplateSyntaxError:
        return []  # reported by the syntax check, with Jinja's own words
    ours = [*TEMPLATE_VARIABLES, *extra, "tables"]
    known = [*ours, *templates.env.globals]  # and Jinja's own: range, dict, namespace …
    problems = [
        f"unknown variable {name!r} in the template{did_you_mean(name, known)} (templates see: {', '.join(ours)})"
        for name in sorted(meta.find_undeclared_variables(tree))
        if name not in known
    ]
    tables = list(templates.tables)
    for table in tables_read(templates, source):
        if table not in tables:
            problems.append(
                f"no table named {table!r}{did_you_mean(table, tables)} (tables: {', '.join(tables) or 'none'})"
            )
    fields = list(Event.__struct_fields__)
    for node in tree.find_all(nodes.Getattr):
        if (
            isinstance(node.node, nodes.Name)
            and node.node.name in ("event", "original")
            and node.attr not in fields
            and not hasattr(dict, node.attr)
        ):
            suggestion = did_you_mean(node.attr, fields)
            problems.append(f"no event has a field {node.attr!r} ({node.node.name}.{node.attr}){suggestion}")
    return problems


def tables_read(templates: Templates, source: str) -> list[str]:
    """The tables a template reads: `tables.x[...]`, `tables['x'][...]`, `... | lookup('x')`."""
    try:
        tree = templates.env.parse(source)
    except TemplateSyntaxError:
        return []
    found: list[str] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        name = None
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name == "tables":
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.node, nodes.Name) and node.node.name == "tables":
            name = node.arg.value if isinstance(node.arg, nodes.Const) else None
        elif isinstance(node, nodes.Filter) and node.name == "lookup" and node.args:
            name = node.args[0].value if isinstance(node.args[0], nodes.Const) else None
        if isinstance(name, str) and name not in found:
            found.append(name)
    return found


def _templates_in(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """(the top-level field it is under, template text) for every string inside `value`."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _templates_in(v, where or str(k))
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _templates_in(v, where)
