"""Action fields and endpoint labels as sandboxed Jinja2 templates.

A value that is exactly one expression (`"{{ event.assignees }}"`) renders to the native
value (a list stays a list, nothing becomes None); any other template renders to a string.
Undefined names are errors, so a typo in a route shows up in the decision trace instead of
paging with an empty summary.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.S)


class RenderError(Exception):
    """A template failed; the message names the field."""


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, reading `a.b` on a dict as the item straight away when `b` names no attribute.

    Every variable templates see is a dict, and the sandbox tries the attribute first: each
    `event.title` raised and caught an AttributeError, most of a small template's cost. Where `b`
    is also an attribute of the dict's class (`items`, `get`), the attribute still wins, as before:
    a sender's payload with a key `get` must not break `event.raw.get('x')`."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj and attribute not in _attributes_of(type(obj)):
            return obj[attribute]
        return super().getattr(obj, attribute)


@functools.cache
def _attributes_of(cls: type) -> frozenset[str]:
    return frozenset(dir(cls))


def _lookup(value: Any, table: Mapping[str, Any], default: Any = None) -> Any:
    """The first of `value` (a string or a list of them) found in `table`; keys compare without case."""
    items = value if isinstance(value, list | tuple) else [value]
    for item in items:
        if item is None:
            continue
        key = str(item)
        if key in table:
            return table[key]
        folded = key.casefold()
        for candidate, result in table.items():
            if str(candidate).casefold() == folded:
                return result
    return default


def _details(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event fields worth showing a responder, without the raw payload and empty values."""
    keep = (
        "kind",
        "source",
        "endpoint",
        "subject",
        "priority",
        "urgency",
        "severity",
        "status",
        "service",
        "teams",
        "assignees",
        "actor",
        "url",
        "tags",
        "labels",
        "occurred_at",
        "id",
    )
    return {name: event[name] for name in keep if event.get(name) not in (None, "", [], {}, ())}


class Bound:
    """Templates bound to one set of variables: every render through it shares one jinja context,
    made on first need (making it is most of a small template's cost)."""

    __slots__ = ("context", "jinja", "templates")

    def __init__(self, templates: Templates, context: Mapping[str, Any]) -> None:
        self.templates = templates
        self.context = context
        self.jinja: Any = None

    def render(self, value: Any, where: str = "") -> Any:
        return self.templates._render(value, self, where)

    def update(self, **variables: Any) -> None:
        """More variables for the renders still to come."""
        self.context = {**self.context, **variables}
        if self.jinja is not None:
            self.jinja.parent.update(variables)


class Templates:
    """Compiles once (at config load), renders many times."""

    def __init__(self, tables: Mapping[str, Mapping[str, Any]]) -> None:
        self.env = _Environment(undefined=StrictUndefined, autoescape=False)
        self.tables = {name: dict(table) for name, table in tables.items()}

        def lookup(value: Any, table: str, default: Any = None) -> Any:
            if table not in self.tables:
                raise RenderError(f"no table named {table!r}")
            return _lookup(value, self.tables[table], default)

        self.env.filters["lookup"] = lookup
        self.env.filters["details"] = _details
        self.env.globals["tables"] = self.tables
        # Every template here is made without globals of its own, so they all see these.
        self._globals = dict(self.env.globals)
        self._cache: dict[str, Any] = {}

    def compile(self, source: str) -> tuple[str, Any]:
        """Compile and cache; raises RenderError with the syntax problem.

        Returns ("literal", text), or ("expr" | "text", a jinja Template whose root render function
        is run against a context shared by every template of one render).
        """
        compiled = self._cache.get(source)
        if compiled is None:
            try:
                match = _EXPRESSION.match(source)
                if match and "{{" not in match.group("expr") and "{%" not in source:
                    # what compile_expression builds, kept as a template so its context can be shared
                    template = self.env.from_string(f"{{% set result = {match.group('expr')} %}}")
                    compiled = ("expr", template)
                elif "{" in source:
                    compiled = ("text", self.env.from_string(source))
                else:
                    compiled = ("literal", source)
            except TemplateError as exc:
                raise RenderError(f"template error: {exc}") from None
            self._cache[source] = compiled
        return compiled

    def render(self, value: Any, context: Mapping[str, Any], where: str = "") -> Any:
        """Render strings, and the strings inside lists and mappings, against `context`."""
        return self._render(value, Bound(self, context), where)

    def bind(self, context: Mapping[str, Any]) -> Bound:
        """For several renders against the same variables (one event's actions)."""
        return Bound(self, context)

    def _new_context(self, variables: Mapping[str, Any]) -> Any:
        # What Template.new_context builds, without merging a ChainMap of globals on every call
        # (that merge was most of a label's or a response's cost).
        return self.env.context_class(self.env, {**self._globals, **variables}, None, {})

    def _render(self, value: Any, run: Bound, where: str) -> Any:
        if isinstance(value, str):
            mode, compiled = self.compile(value)
            if mode == "literal":
                return compiled
            if run.jinja is None:
                run.jinja = self._new_context(run.context)
            ctx = run.jinja
            try:
                if mode == "expr":
                    for _ in compiled.root_render_func(ctx):
                        pass
                    result = ctx.vars.pop("result", None)
                    ctx.exported_vars.discard("result")
                else:
                    result = self.env.concat(compiled.root_render_func(ctx))
            except RenderError as exc:
                raise RenderError(f"{where}: {exc}") from None
            except Exception as exc:  # jinja raises many kinds; all mean "this template failed"
                raise RenderError(f"{where}: {type(exc).__name__}: {exc}") from None
            if isinstance(result, Undefined):
                raise RenderError(f"{where}: {value!r} is undefined for this event")
            return result
        if isinstance(value, Mapping):
            return {k: self._render(v, run, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._render(v, run, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    def check(self, value: Any, where: str) -> list[tuple[str, str]]:
        """Syntax problems in every template inside `value`, as (where, message)."""
        problems = []
        if isinstance(value, str):
            try:
                self.compile(value)
            except RenderError as exc:
                problems.append((where, str(exc)))
        elif isinstance(value, Mapping):
            for k, v in value.items():
                problems += self.check(v, f"{where}.{k}")
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                problems += self.check(v, f"{where}[{i}]")
        return problems
