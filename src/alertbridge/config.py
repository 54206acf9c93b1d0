"""The YAML configuration, validated into pydantic models.

Errors carry the file, line and field (`alertbridge.yaml:12: routes[0].match.kind: ...`),
so `alertbridge check` can point at the exact place. `${VAR}` and `${VAR:-default}` are read
from the environment at load time; secrets that come from the environment stay there and
are kept as `SecretStr` so they never print.

Sources and targets own the settings specific to them (a Thena token, a PagerDuty routing
key): each module declares a pydantic model, and the endpoint or target block is validated
against it in a second pass, with errors mapped to lines the same way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

DEFAULT_ORG = "default"
DEFAULT_MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class Problem:
    line: int | None
    field: str
    message: str


@dataclass
class ConfigError(Exception):
    """Every problem found in one file, so an operator fixes them all in one pass."""

    path: str
    problems: list[Problem] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        for p in self.problems:
            where = f"{self.path}:{p.line}" if p.line else self.path
            out.append(f"{where}: {p.field}: {p.message}" if p.field else f"{where}: {p.message}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like '30s', '5m', '2h', '1d'."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '24h'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration: use seconds or a string like '30s', '5m', '24h'")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RateLimit(Model):
    """At most `limit` requests in any window of `per` seconds (PagerDuty counts a rolling minute)."""

    limit: int = Field(gt=0)
    per: float = 60.0

    _per = field_validator("per", mode="before")(lambda v: parse_duration(v))


class RetryPolicy(Model):
    """When a failed delivery is tried again, and when it is given up (dead-lettered)."""

    max_attempts: int = Field(default=12, ge=1)
    max_age: float = 24 * 3600.0
    backoff_base: float = 1.0
    backoff_cap: float = 600.0

    @field_validator("max_age", "backoff_base", "backoff_cap", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> float:
        return parse_duration(value)


class FailureAlertConfig(Model):
    """When a target keeps failing, operators are told once (not per event), and again when it recovers."""

    threshold: float = Field(default=0.5, gt=0, le=1)  # the failure rate over the last `window` attempts
    window: int = Field(default=20, ge=1)
    min_attempts: int = Field(default=5, ge=1)  # no rate-based alarm on fewer attempts (a dead letter always)
    actions: list[dict[str, Any]] = []  # e.g. {target: slack, action: post, channel: C…, text: "{target}: {reason}"}


class DeliveryConfig(Model):
    paused: bool = False  # hold deliveries (maintenance); events are still accepted and routed
    concurrency: int = Field(default=32, ge=1)
    lease: float = 60.0  # how long a claimed delivery stays with its dispatcher before another may take it
    # On stop, how long sends under way may take to finish and be recorded before they are cut off.
    shutdown_grace: float = Field(default=10.0, ge=0)
    retry: RetryPolicy = RetryPolicy()
    # How long an action waits for a link it needs (the create it depends on is still retrying).
    link_wait: float = 24 * 3600.0
    # How long after alertbridge changes an object its webhook counts as our own echo.
    echo_window: float = 600.0
    failure_alert: FailureAlertConfig = FailureAlertConfig()

    _lease = field_validator("lease", "shutdown_grace", mode="before")(lambda v: parse_duration(v))
    _link_wait = field_validator("link_wait", "echo_window", mode="before")(lambda v: parse_duration(v))


class ServerConfig(Model):
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY, gt=0)
    org: str = DEFAULT_ORG
    # How long a sender waits for its event to be durable before it is told 503 (try again).
    # Below PagerDuty's 5 s budget; a commit that lands later is deduplicated on redelivery.
    ingest_timeout: float = 4.0

    _ingest_timeout = field_validator("ingest_timeout", mode="before")(lambda v: parse_duration(v))


class EndpointConfig(BaseModel):
    """A configured instance of a source. Unknown keys are the source's own settings."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    source: str
    path: str
    org: str | None = None
    max_body_bytes: int | None = Field(default=None, gt=0)
    labels: dict[str, str] = {}
    response: dict[str, Any] | None = None
    # Changes made by these users (id or name) are alertbridge's own, come back as webhooks:
    # they are stored and not routed (seed 002's PAGERDUTY_USER). Links catch echoes without it.
    ignore_actors: list[str] = []

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("a path starts with '/'")
        return value.rstrip("/") or "/"

    @property
    def extra(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TargetConfig(BaseModel):
    """A configured destination. Unknown keys are the target type's own settings."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    type: str
    timeout: float = 10.0
    rate_limit: RateLimit | None = None
    retry: RetryPolicy | None = None

    _timeout = field_validator("timeout", mode="before")(lambda v: parse_duration(v))

    @property
    def extra(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ActionConfig(BaseModel):
    """One operation on a target. Keys other than these are the action's fields (templates)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    target: str
    action: str
    key: str | None = None  # idempotency key template: one delivery per distinct value, ever

    @property
    def fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class RouteConfig(Model):
    name: str
    match: dict[str, Any] = {}
    actions: list[ActionConfig] = []
    continue_: bool = Field(default=False, alias="continue")


class TeamConfig(Model):
    """A team: who owns which routing identifiers, its token, and where its errors go."""

    name: str
    org: str | None = None
    token: SecretStr  # the team's bearer token (GET/PUT /api/v1/config/me); sent to its agent; stored hashed
    slack_channel: str | None = None  # where the team is told its agent could not be reached
    # Plural keys as seed 004 writes them; which keys exist is the sources' (`sources.CLAIM_KINDS`,
    # checked by `checks.validate`).
    routing: dict[str, list[str]] = {}


class RoutingConfig(Model):
    """How an event finds its team, and how long a replica holds an event it is routing."""

    # None: the sources' own order (`sources.DEFAULT_PRIORITY`); names checked by `checks.validate`.
    priority: list[str] | None = None
    internal_token: SecretStr | None = None  # for POST /api/v1/internal/routing/lookup
    # On PostgreSQL: how long an event being routed stays with its replica before another may route
    # it (the first died). Routing takes milliseconds; the lease only matters after a crash.
    lease: float = Field(default=30.0, gt=0)

    _lease = field_validator("lease", mode="before")(lambda v: parse_duration(v))

    @field_validator("priority", mode="before")
    @classmethod
    def _given(cls, value: Any) -> Any:
        if value is None:  # only the default means "the sources' order"; a null is refused as before
            raise ValueError("Input should be a valid list")
        return value


class RetentionConfig(Model):
    """How long history is kept. An event goes once it is older than `events` and none of its
    deliveries is still to be sent; attempts go after `attempts`. None keeps forever."""

    events: float | None = 30 * 86400.0
    attempts: float | None = 30 * 86400.0
    every: float = 600.0  # seconds between clean-ups
    batch: int = Field(default=500, ge=1)  # rows per transaction, so ingress never waits long

    _durations = field_validator("events", "attempts", "every", mode="before")(
        lambda v: None if v is None else parse_duration(v)
    )


class Config(Model):
    store: str | None = None
    server: ServerConfig = ServerConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    tables: dict[str, dict[str, Any]] = {}
    endpoints: list[EndpointConfig] = []
    targets: list[TargetConfig] = []
    routes: list[RouteConfig] = []
    teams: list[TeamConfig] = []
    routing: RoutingConfig = RoutingConfig()
    retention: RetentionConfig = RetentionConfig()

    def endpoint(self, name: str) -> EndpointConfig:
        for endpoint in self.endpoints:
            if endpoint.name == name:
                return endpoint
        raise KeyError(name)


# ---------------------------------------------------------------------------------------------
# Loading


_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """`${VAR}` and `${VAR:-default}` from `env`; `$$` is a literal `$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None and ":-" in match.group(0)):
            if default is None:
                raise KeyError(name)
            return default
        return value

    return _VAR.sub(replace, text)


def _plain(node: Any, env: Mapping[str, str], loc: tuple[Any, ...], problems: list[Located]) -> Any:
    """A plain-Python copy of the YAML tree with the environment filled in."""
    if isinstance(node, Mapping):
        return {key: _plain(value, env, (*loc, key), problems) for key, value in node.items()}
    if isinstance(node, Sequence) and not isinstance(node, str):
        return [_plain(value, env, (*loc, i), problems) for i, value in enumerate(node)]
    if isinstance(node, str) and "$" in node:
        try:
            return interpolate(node, env)
        except KeyError as missing:
            problems.append((loc, f"environment variable {missing.args[0]} is not set"))
            return ""
    return node


def _line_of(tree: Any, loc: Sequence[Any]) -> int | None:
    """The 1-based line of the deepest node on `loc` that the YAML tree knows."""
    node, line = tree, None
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    if line is None and isinstance(tree, CommentedMap | CommentedSeq):
        line = tree.lc.line + 1
    return line


def format_loc(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


Located = tuple[tuple[Any, ...], str]  # (path in the file, message)


def errors_of(error: ValidationError, prefix: tuple[Any, ...] = ()) -> list[Located]:
    """pydantic's errors as (path, message), with messages an operator can act on."""
    located = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; see docs/configuration.md)"
        located.append(((*prefix, *item["loc"]), message))
    return located


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate a configuration file, or raise `ConfigError`."""
    env = os.environ if env is None else env
    path = str(path)
    tree = _read_tree(path)

    from alertbridge import checks  # imported late: it reads the source, target and routing registries

    located: list[Located] = []
    data = _plain(tree, env, (), located)
    config, problems = checks.validate(data)
    located += problems
    if located or config is None:
        found = [Problem(_line_of(tree, loc), format_loc(loc), msg) for loc, msg in located]
        raise ConfigError(path, sorted(found, key=lambda p: p.line or 0))
    return config


def _read_tree(path: str) -> Mapping[Any, Any]:
    """The file's YAML tree (with its line numbers), or `ConfigError` if it cannot be read as a mapping."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(path, [Problem(None, "", f"cannot read the file: {exc.strerror}")]) from None
    try:
        tree = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(path, [Problem(line, "", f"not valid YAML: {exc.problem}")]) from None
    if tree is None:
        tree = CommentedMap()
    if not isinstance(tree, Mapping):
        raise ConfigError(path, [Problem(1, "", "the file must be a mapping (key: value) at the top")])
    return tree


def read_setting(path: str | Path, loc: Sequence[str], env: Mapping[str, str] | None = None) -> str | None:
    """One string setting (`store`, `server.org`) read without validating the rest of the file.

    Commands that only read the store must work during an incident on a machine where the
    endpoints' secrets (`${WEBHOOK_TOKEN}`…) are not set: only this value's own variables must be."""
    env = os.environ if env is None else env
    path = str(path)
    tree = _read_tree(path)
    node: Any = tree
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if node is None:
        return None
    problems: list[Located] = []
    value = _plain(node, env, tuple(loc), problems)
    if not problems and not isinstance(value, str):
        problems.append((tuple(loc), "must be a string"))
    if problems:
        raise ConfigError(path, [Problem(_line_of(tree, where), format_loc(where), msg) for where, msg in problems])
    return str(value) or None


def validate_teams(config: Config) -> list[Located]:
    """One name per team in an org, and one team per identifier per org (seed 004's rule)."""
    problems: list[Located] = []
    owners: dict[tuple[str, str, str], str] = {}
    names: set[tuple[str, str]] = set()
    for i, team in enumerate(config.teams):
        org = team.org or config.server.org
        if (org, team.name) in names:
            problems.append((("teams", i, "name"), f"another team in org {org!r} is called {team.name!r}"))
        names.add((org, team.name))
        for key, values in team.routing.items():
            for j, value in enumerate(values):
                claim = (org, key, value)  # a key names one identifier kind
                if claim in owners and owners[claim] != team.name:
                    problems.append(
                        (
                            ("teams", i, "routing", key, j),
                            f"{value!r} already belongs to team {owners[claim]!r}: an identifier has one team per org",
                        )
                    )
                owners.setdefault(claim, team.name)
    return problems


def default_config() -> Config:
    """What `alertbridge serve` runs with no file: the store in the working directory, nothing routed."""
    return Config()


def secret_value(value: SecretStr | str | None) -> str | None:
    if value is None:
        return None
    return value.get_secret_value() if isinstance(value, SecretStr) else value
