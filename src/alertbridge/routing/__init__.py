"""Routing: routes and matchers, templates, the decision, and the router task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alertbridge.config import Config, Located
from alertbridge.routing.inhibition import InhibitRule
from alertbridge.routing.routes import Route, compile_route, condition
from alertbridge.routing.silences import Invalid, Silence, parse_matchers, window, window_problems
from alertbridge.templating.templates import Templates


@dataclass(frozen=True)
class Rules:
    """Everything a decision needs, compiled once from the configuration."""

    routes: list[Route]
    templates: Templates
    windows: tuple[Silence, ...] = ()  # the file's maintenance windows
    inhibit: tuple[InhibitRule, ...] = ()  # the file's inhibit rules


def compile_rules(config: Config) -> Rules:
    return Rules(
        routes=[compile_route(r) for r in config.routes],
        templates=Templates(config.tables),
        windows=tuple(maintenance_windows(config)),
        inhibit=tuple(inhibit_rules(config)),
    )


def inhibit_rules(config: Config) -> list[InhibitRule]:
    """The file's `inhibit_rules:` (`validate_inhibit_rules` passed), named by `name` or place."""
    return [
        InhibitRule(
            name=item.name or f"inhibit_rules[{i}]",
            sources=tuple(parse_matchers(item.source_matchers)),
            targets=tuple(parse_matchers(item.target_matchers)),
            equal=tuple(item.equal),
        )
        for i, item in enumerate(config.inhibit_rules)
    ]


def validate_inhibit_rules(config: Config) -> list[Located]:
    """Each rule's matchers (at least one on each side: none would mute everything) and `equal` names."""
    problems: list[Located] = []
    seen: set[str] = set()
    for i, item in enumerate(config.inhibit_rules):
        if item.name is not None:
            if item.name in seen:
                problems.append((("inhibit_rules", i, "name"), f"duplicate inhibit rule name {item.name!r}"))
            seen.add(item.name)
        for side in ("source_matchers", "target_matchers"):
            try:
                parse_matchers(getattr(item, side))
            except Invalid as exc:
                problems.append((("inhibit_rules", i, side), str(exc).replace("a silence needs", f"{side} needs")))
        for j, name in enumerate(item.equal):
            try:
                parse_matchers([f"{name}=x"])
            except Invalid:
                problems.append((("inhibit_rules", i, "equal", j), f"{name!r} is not a label name or event.<field>"))
    return problems


def maintenance_windows(config: Config) -> list[Silence]:
    """The file's `maintenance:` windows as silences that never end (`validate_maintenance` passed)."""
    return [
        Silence(
            id=f"maintenance:{item.name}",
            org=item.org or config.server.org,
            matchers=tuple(parse_matchers(item.matchers)),
            starts_at=0.0,
            ends_at=float("inf"),
            created_by="configuration",
            comment=item.comment or f"maintenance window {item.name}",
            updated_at=0.0,
            window=window(item.days, item.start, item.duration, item.timezone),
            name=item.name,
        )
        for item in config.maintenance
    ]


def validate_maintenance(config: Config) -> list[Located]:
    """Each window's matchers, days, start time, duration and time zone; one name per window."""
    problems: list[Located] = []
    seen: set[str] = set()
    for i, item in enumerate(config.maintenance):
        if item.name in seen:
            problems.append((("maintenance", i, "name"), f"duplicate maintenance window name {item.name!r}"))
        seen.add(item.name)
        try:
            parse_matchers(item.matchers)
        except Invalid as exc:
            problems.append((("maintenance", i, "matchers"), str(exc)))
        for part, message in window_problems(item.days, item.start, item.duration, item.timezone):
            problems.append((("maintenance", i, part), message))
    return problems


def validate_routes(config: Config) -> list[Located]:
    """Route names, tests and template syntax, checked before anything runs (what targets and
    actions are named, and what templates read, is `alertbridge.checks`' part)."""
    problems: list[Located] = []
    templates = Templates(config.tables)
    seen: set[str] = set()
    for i, route in enumerate(config.routes):
        loc: tuple[Any, ...] = ("routes", i)
        if route.name in seen:
            problems.append(((*loc, "name"), f"duplicate route name {route.name!r}"))
        seen.add(route.name)
        for path, spec in route.match.items():
            try:
                condition(path, spec)
            except ValueError as exc:
                problems.append(((*loc, "match", path), str(exc)))
        for j, action in enumerate(route.actions):
            aloc = (*loc, "actions", j)
            for where, message in templates.check({"target": action.target, "key": action.key, **action.fields}, ""):
                problems.append(((*aloc, where.lstrip(".").split(".")[0]), message))
    for i, endpoint in enumerate(config.endpoints):
        for where, message in templates.check({"labels": endpoint.labels, "response": endpoint.response}, ""):
            parts = where.lstrip(".").split(".")
            problems.append((("endpoints", i, *parts[:2]), message))
    return problems
