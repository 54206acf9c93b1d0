"""Routing: routes and matchers, templates, the decision, and the router task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alertbridge.config import Config, Located
from alertbridge.routing.routes import Route, compile_route, condition
from alertbridge.routing.templates import Templates


@dataclass(frozen=True)
class Rules:
    """Everything a decision needs, compiled once from the configuration."""

    routes: list[Route]
    templates: Templates


def compile_rules(config: Config) -> Rules:
    return Rules(routes=[compile_route(r) for r in config.routes], templates=Templates(config.tables))


def validate_routes(config: Config) -> list[Located]:
    """Tests, targets, actions and template syntax, checked before anything runs."""
    from alertbridge import targets as target_types

    problems: list[Located] = []
    templates = Templates(config.tables)
    known = {t.name: t.type for t in config.targets}
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
            if "{" in action.target:
                continue  # chosen per event; checked when it renders
            if action.target not in known:
                problems.append(((*aloc, "target"), f"no target named {action.target!r}"))
                continue
            on_dead = action.fields.get("on_dead")
            if on_dead is not None:
                if not isinstance(on_dead, dict) or on_dead.get("target") not in known:
                    problems.append(((*aloc, "on_dead"), "on_dead needs a `target` (a configured target) and `action`"))
                else:
                    dead_kind = target_types.REGISTRY.get(known[on_dead["target"]])
                    if dead_kind is not None and on_dead.get("action") not in dead_kind.actions:
                        problems.append(
                            ((*aloc, "on_dead", "action"), f"{dead_kind.name} has no action {on_dead.get('action')!r}")
                        )
            kind = target_types.REGISTRY.get(known[action.target])
            if kind is not None and action.action not in kind.actions:
                problems.append(
                    (
                        (*aloc, "action"),
                        f"{kind.name} has no action {action.action!r}; it has: {', '.join(kind.actions)}",
                    )
                )
    for i, endpoint in enumerate(config.endpoints):
        for where, message in templates.check({"labels": endpoint.labels, "response": endpoint.response}, ""):
            parts = where.lstrip(".").split(".")
            problems.append((("endpoints", i, *parts[:2]), message))
    return problems
