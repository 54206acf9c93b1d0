"""The registry of sources: adding a sender is adding its module to `_MODULES`."""

from __future__ import annotations

from pydantic import ValidationError

from alertbridge.config import Config, Located, errors_of
from alertbridge.sources import agent, generic, github, incidentio, opsgenie, pagerduty, slack, thena
from alertbridge.sources.base import BadPayload, Endpoint, Incoming, Reply, Source, Unauthorized
from alertbridge.spelling import did_you_mean

__all__ = ["BadPayload", "Endpoint", "Incoming", "Reply", "Source", "Unauthorized", "get", "names"]

_MODULES = (thena, pagerduty, opsgenie, slack, github, incidentio, generic, agent)
REGISTRY: dict[str, Source] = {module.SOURCE.name: module.SOURCE for module in _MODULES}


def names() -> list[str]:
    return sorted(REGISTRY)


def get(name: str) -> Source:
    return REGISTRY[name]


def validate_endpoints(config: Config) -> list[Located]:
    """Second-pass checks: a known source, its own settings, unique names and paths."""
    problems: list[Located] = []
    seen_names: set[str] = set()
    seen_paths: set[str] = set()
    for i, endpoint in enumerate(config.endpoints):
        loc: tuple = ("endpoints", i)
        if endpoint.name in seen_names:
            problems.append(((*loc, "name"), f"duplicate endpoint name {endpoint.name!r}"))
        if endpoint.path in seen_paths:
            problems.append(((*loc, "path"), f"another endpoint already serves {endpoint.path}"))
        seen_names.add(endpoint.name)
        seen_paths.add(endpoint.path)
        source = REGISTRY.get(endpoint.source)
        if source is None:
            known = f"known: {', '.join(names())}{did_you_mean(endpoint.source, names())}"
            problems.append(((*loc, "source"), f"unknown source {endpoint.source!r}; {known}"))
            continue
        try:
            source.settings.model_validate(endpoint.extra)
        except ValidationError as exc:
            problems += errors_of(exc, loc)
    return problems
