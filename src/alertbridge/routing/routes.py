"""Routes and their matchers: the whole routing model.

A route is a list of conditions (all must hold) and a list of actions. Routes are tried in
order; the first that matches wins, unless it says `continue: true`. Each condition names
an event field by dotted path (`kind`, `labels.service_group`, `subject.id`,
`identifiers.github_repo`) and a test:

    kind: ticket.created                 equality (strings compare without case)
    kind: [ticket.created, ticket.updated]   one of
    priority: {at_least: P2}             threshold on priority (P1 highest), urgency, severity
    title: {regex: "(?i)database"}       search with a regular expression
    assignees: {exists: true}            present and not empty
    kind: {not_one_of: [...]}, {equals: x}, {not_equals: x}

Seed 003's filter names work as conditions too: `event_types: [...]`, `allowed_services: [id or
name, ...]`, `allowed_teams: [...]`, `min_priority: P2`, `min_urgency: high`.

A condition on a list field (assignees, teams, tags) holds if any element satisfies it.
Every test explains itself, so the decision trace says why a route did or did not match.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from alertbridge.config import ActionConfig, RouteConfig
from alertbridge.events import PRIORITIES, SEVERITIES, URGENCIES, rank

OPERATORS = ("equals", "not_equals", "one_of", "not_one_of", "regex", "exists", "at_least", "at_most")
_SCALES = (PRIORITIES, URGENCIES, SEVERITIES)

_MISSING = object()


def field_value(event: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path in the event's dict view, or _MISSING."""
    value: Any = event
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            return _MISSING
    return value


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _show(value: Any) -> str:
    return "missing" if value is _MISSING else repr(value)


@dataclass(frozen=True)
class Condition:
    path: str
    operator: str
    operand: Any
    test: Callable[[Any], bool]

    def check(self, event: Mapping[str, Any]) -> tuple[bool, str]:
        value = field_value(event, self.path)
        if self.operator == "exists":
            present = value not in (_MISSING, None, "", [], {}, ())
            ok = present == bool(self.operand)
            return ok, f"{self.path} is {'present' if present else 'missing'}"
        if value is _MISSING or value is None:
            return False, f"{self.path} is missing"
        values = value if isinstance(value, list | tuple) else [value]
        ok = any(self.test(v) for v in values)
        if self.operator.startswith("not_"):
            ok = all(self.test(v) for v in values)
        verb = {
            "equals": "=",
            "not_equals": "≠",
            "one_of": "in",
            "not_one_of": "not in",
            "regex": "~",
            "at_least": "≥",
            "at_most": "≤",
        }[self.operator]
        return ok, f"{self.path} {_show(value)} {'' if ok else 'NOT '}{verb} {self.operand!r}"


def _scale_of(operand: Any) -> tuple[str, ...] | None:
    for scale in _SCALES:
        if rank(scale, str(operand)) is not None:
            return scale
    return None


def _named_filter(name: str, value: Any) -> Condition:
    """Seed 003's filters, as conditions on the event fields they mean."""
    if name in ("event_types", "allowed_teams", "allowed_services") and not isinstance(value, list):
        raise ValueError(f"{name} takes a list")
    if name == "event_types":
        return condition("kind", {"one_of": value})
    if name == "allowed_teams":
        return condition("teams", {"one_of": value})
    if name == "allowed_services":
        options = {_fold(str(v)) for v in value}
        return Condition(
            "service",
            "one_of",
            value,
            lambda s: isinstance(s, Mapping) and bool({_fold(s.get("id")), _fold(s.get("name"))} & options),
        )
    return condition("priority" if name == "min_priority" else "urgency", {"at_least": value})


NAMED_FILTERS = ("event_types", "allowed_services", "allowed_teams", "min_priority", "min_urgency")


def condition(path: str, spec: Any) -> Condition:
    """Compile one `path: spec` entry; raises ValueError with an operator-readable message."""
    if path in NAMED_FILTERS:
        return _named_filter(path, spec)
    if isinstance(spec, list):
        spec = {"one_of": spec}
    elif not isinstance(spec, dict):
        spec = {"equals": spec}
    if len(spec) != 1:
        raise ValueError(f"one test per field, one of: {', '.join(OPERATORS)}")
    ((operator, operand),) = spec.items()
    if operator == "equals":
        target = _fold(operand)
        return Condition(path, operator, operand, lambda v: _fold(v) == target)
    if operator == "not_equals":
        target = _fold(operand)
        return Condition(path, operator, operand, lambda v: _fold(v) != target)
    if operator in ("one_of", "not_one_of"):
        if not isinstance(operand, list):
            raise ValueError(f"{operator} takes a list")
        options = {_fold(o) for o in operand}
        if operator == "one_of":
            return Condition(path, operator, operand, lambda v: _fold(v) in options)
        return Condition(path, operator, operand, lambda v: _fold(v) not in options)
    if operator == "regex":
        try:
            pattern = re.compile(str(operand))
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        return Condition(path, operator, operand, lambda v: pattern.search(str(v)) is not None)
    if operator == "exists":
        return Condition(path, operator, bool(operand), lambda v: True)
    if operator in ("at_least", "at_most"):
        scale = _scale_of(operand)
        if scale is None:
            raise ValueError(
                f"{operator} takes a priority (P1…P5), an urgency (high, low) or a severity "
                "(critical, error, warning, info)"
            )
        limit = rank(scale, str(operand))
        assert limit is not None

        def within(v: Any) -> bool:
            position = rank(scale, str(v))
            if position is None:
                return False
            return position <= limit if operator == "at_least" else position >= limit

        return Condition(path, operator, operand, within)
    raise ValueError(f"unknown test {operator!r}; use one of: {', '.join(OPERATORS)}")


@dataclass(frozen=True)
class Route:
    name: str
    conditions: tuple[Condition, ...]
    actions: tuple[ActionConfig, ...]
    continue_: bool
    repeat_interval: float | None = None  # see `routing/repeats.py`

    def check(self, event: Mapping[str, Any]) -> tuple[bool, list[str]]:
        """Whether every condition holds, and the reason for each (all are evaluated, for the trace)."""
        matched, reasons = True, []
        for cond in self.conditions:
            ok, reason = cond.check(event)
            matched &= ok
            reasons.append(reason)
        return matched, reasons


def compile_route(config: RouteConfig) -> Route:
    return Route(
        name=config.name,
        conditions=tuple(condition(path, spec) for path, spec in config.match.items()),
        actions=tuple(config.actions),
        continue_=config.continue_,
        repeat_interval=config.repeat_interval,
    )
