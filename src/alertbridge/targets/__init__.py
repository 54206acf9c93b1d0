"""The registry of target types: adding a destination is adding its module to `_MODULES`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, ValidationError, WithJsonSchema
from pydantic_core import PydanticCustomError

from alertbridge.config import Config, Located, RateLimit, RetryPolicy, TargetConfig, errors_of
from alertbridge.spelling import did_you_mean
from alertbridge.targets import forward, inbox, opsgenie, pagerduty_events, pagerduty_rest, slack
from alertbridge.targets.base import KeyTest, Outcome, OutgoingRequest, Target

__all__ = ["ConfiguredTarget", "Outcome", "OutgoingRequest", "Target", "configure", "configure_one", "get", "names"]

_MODULES = (pagerduty_events, pagerduty_rest, opsgenie, slack, forward, inbox)
REGISTRY: dict[str, Target] = {module.TARGET.name: module.TARGET for module in _MODULES}
# The API keys the console can test, by kind (`POST /api/v1/integrations/test`).
KEY_TESTS: dict[str, KeyTest] = {t.key_test.kind: t.key_test for t in REGISTRY.values() if t.key_test}


def key_kind(value: Any) -> Any:
    """A pydantic validator of a key test's `kind`: one of `KEY_TESTS`, refused as a Literal would be."""
    if not isinstance(value, str) or value not in KEY_TESTS:
        quoted = [repr(kind) for kind in KEY_TESTS]
        expected = " or ".join([", ".join(quoted[:-1]), quoted[-1]]) if len(quoted) > 1 else "".join(quoted)
        raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
    return value


# A key test's `kind` in a request model: a string the registry knows, shown as an enum in OpenAPI.
KeyKind = Annotated[str, BeforeValidator(key_kind), WithJsonSchema({"type": "string", "enum": list(KEY_TESTS)})]


def names() -> list[str]:
    return sorted(REGISTRY)


def get(name: str) -> Target:
    return REGISTRY[name]


@dataclass(frozen=True)
class ConfiguredTarget:
    """A target from the configuration, with its type's settings validated and its policies resolved."""

    config: TargetConfig
    type: Target
    settings: Any
    rate_limit: RateLimit | None
    retry: RetryPolicy
    org: str | None = None  # made through the API by this org (only its events reach it); None: from the file

    @property
    def name(self) -> str:
        return self.config.name


def configure(config: Config) -> dict[str, ConfiguredTarget]:
    """Every configured target by name (the config has been validated already)."""
    return {target.name: configure_one(target, config.delivery.retry) for target in config.targets}


def configure_one(target: TargetConfig, retry: RetryPolicy, org: str | None = None) -> ConfiguredTarget:
    """One validated target, with its type's default rate limit and the server's retry policy filled in."""
    kind = REGISTRY[target.type]
    rate_limit = target.rate_limit
    if rate_limit is None and kind.default_rate_limit:
        rate_limit = RateLimit(limit=kind.default_rate_limit[0], per=kind.default_rate_limit[1])
    return ConfiguredTarget(
        config=target,
        type=kind,
        settings=kind.settings.model_validate(target.extra),
        rate_limit=rate_limit,
        retry=target.retry or retry,
        org=org,
    )


def validate_targets(config: Config) -> list[Located]:
    """Second-pass checks: a known type, its own settings, unique names."""
    problems: list[Located] = []
    seen: set[str] = set()
    for i, target in enumerate(config.targets):
        loc: tuple = ("targets", i)
        if target.name in seen:
            problems.append(((*loc, "name"), f"duplicate target name {target.name!r}"))
        seen.add(target.name)
        kind = REGISTRY.get(target.type)
        if kind is None:
            known = f"known: {', '.join(names())}{did_you_mean(target.type, names())}"
            problems.append(((*loc, "type"), f"unknown target type {target.type!r}; {known}"))
            continue
        try:
            settings = kind.settings.model_validate(target.extra)
        except ValidationError as exc:
            problems += errors_of(exc, loc)
            continue
        for name in kind.refers_to:
            other = getattr(settings, name, None)
            if other and other not in {t.name for t in config.targets}:
                problems.append(((*loc, name), f"no target named {other!r}"))
    return problems
