"""The YAML configuration, validated into pydantic models.

Errors carry the file, line and field (`alertbridge.yaml:12: routes[0].match.kind: ...`),
so `alertbridge check` can point at the exact place. `${VAR}` and `${VAR:-default}` are read
from the environment at load time (`alertbridge.loading`); secrets that come from the environment
stay there and are kept as `SecretStr` so they never print.

Sources and targets own the settings specific to them (a Thena token, a PagerDuty routing
key): each module declares a pydantic model, and the endpoint or target block is validated
against it in a second pass, with errors mapped to lines the same way.

Pure data: this module imports no registry, so sources, targets and routing can all read it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from alertbridge.events import EpisodeEffect

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


class EpisodesConfig(Model):
    """Which event kinds open an alert's episode and which close it, for an endpoint whose source
    cannot know (the generic source), or to change what its source declares (`{}` turns them off)."""

    open: list[str] = []
    close: list[str] = []

    @model_validator(mode="after")
    def _apart(self) -> EpisodesConfig:
        both = sorted(set(self.open) & set(self.close))
        if both:
            raise ValueError(f"a kind cannot both open and close an episode: {', '.join(both)}")
        return self

    def effects(self) -> dict[str, EpisodeEffect]:
        """Event kind → what it does to its alert's episode."""
        return {**dict.fromkeys(self.open, "open"), **dict.fromkeys(self.close, "close")}


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
    # Which kinds open and close an alert episode, instead of what the source declares (None).
    episodes: EpisodesConfig | None = None

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
    # Alertmanager's meaning: an alert still firing notifies again once this long has passed in its
    # episode; a repeat sooner sends nothing new (`routing/repeats.py`). None: a repeat sends nothing new.
    repeat_interval: float | None = Field(default=None, gt=0)

    _repeat = field_validator("repeat_interval", mode="before")(lambda v: None if v is None else parse_duration(v))


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


class MaintenanceConfig(Model):
    """A maintenance window: a recurring silence. What the values mean (days, a local start time, a
    time zone, matchers) is checked by `routing.validate_maintenance`, so the file's problems and
    the API's are worded alike."""

    name: str
    matchers: list[str | dict[str, Any]]
    days: list[str]
    start: str  # HH:MM, local time in `timezone`
    duration: float
    timezone: str  # IANA, e.g. Europe/Berlin
    org: str | None = None
    comment: str = ""

    _duration = field_validator("duration", mode="before")(lambda v: parse_duration(v))


class InhibitRuleConfig(Model):
    """Alertmanager's inhibit rule: while an alert matching `source_matchers` fires, events matching
    `target_matchers` with the same `equal` labels are muted. The matchers' meaning is checked by
    `routing.validate_inhibit_rules`, worded as the silences' are."""

    name: str | None = None  # shown in traces; default: the rule's place in the list
    source_matchers: list[str | dict[str, Any]]
    target_matchers: list[str | dict[str, Any]]
    equal: list[str] = []


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
    maintenance: list[MaintenanceConfig] = []
    inhibit_rules: list[InhibitRuleConfig] = []

    def endpoint(self, name: str) -> EndpointConfig:
        for endpoint in self.endpoints:
            if endpoint.name == name:
                return endpoint
        raise KeyError(name)


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
