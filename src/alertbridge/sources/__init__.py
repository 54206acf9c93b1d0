"""The registry of sources: adding a sender is adding its module to `_MODULES`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from alertbridge import events
from alertbridge.config import Config, Located, errors_of
from alertbridge.events import EpisodeEffect, Event
from alertbridge.sources import (
    agent,
    alertmanager,
    generic,
    github,
    grafana,
    incidentio,
    opsgenie,
    opsgenie_api,
    pagerduty,
    pagerduty_events,
    slack,
    sns,
    thena,
)
from alertbridge.sources.base import (
    Accepted,
    BadPayload,
    Claim,
    Endpoint,
    Incoming,
    Integration,
    Refused,
    Reply,
    Source,
    Unauthorized,
)
from alertbridge.spelling import did_you_mean

__all__ = [
    "Accepted",
    "BadPayload",
    "Claim",
    "Endpoint",
    "Incoming",
    "Integration",
    "Refused",
    "Reply",
    "Source",
    "Unauthorized",
    "get",
    "names",
]

_MODULES = (
    thena,
    pagerduty,
    opsgenie,
    opsgenie_api,
    slack,
    github,
    incidentio,
    generic,
    agent,
    sns,
    alertmanager,
    grafana,
    pagerduty_events,
)
REGISTRY: dict[str, Source] = {module.SOURCE.name: module.SOURCE for module in _MODULES}

# What the sources declare, gathered once. Claims in their lookup order (seed 004's: the most
# specific identifier decides when an event carries several teams' identifiers).
CLAIMS: tuple[Claim, ...] = tuple(sorted((c for s in REGISTRY.values() for c in s.claims), key=lambda c: c.rank))
CLAIM_KINDS: dict[str, str] = {claim.key: claim.identifier for claim in CLAIMS}  # plural key → identifier
DEFAULT_PRIORITY: tuple[str, ...] = tuple(CLAIM_KINDS.values())
ALIASES: dict[str, tuple[str, str]] = {k: v for s in REGISTRY.values() for k, v in s.aliases.items()}
CHANGES: dict[str, str] = {k: v for s in REGISTRY.values() for k, v in s.changes.items()}
EPISODES: dict[str, Mapping[str, EpisodeEffect]] = {name: s.episodes for name, s in REGISTRY.items() if s.episodes}
THROUGH_API: dict[str, str] = {k: v for s in REGISTRY.values() for k, v in s.through_api.items()}
EXAMPLE_CLAIM = slack.SOURCE.claims[0]  # the one error messages show (seed 004's docs use it)
INTEGRATIONS: dict[str, Source] = {s.integration.kind: s for s in REGISTRY.values() if s.integration}


def names() -> list[str]:
    return sorted(REGISTRY)


def get(name: str) -> Source:
    return REGISTRY[name]


def integration() -> tuple[Source, Integration]:
    """The console's integration (seed 001's) and its source: the one a source declares."""
    ((source, found),) = [(s, s.integration) for s in INTEGRATIONS.values() if s.integration]
    return source, found


def refs(event: Event) -> list[tuple[str, str, str]]:
    """Every (system, type, id) the event's subject is known by, the sources' aliases included."""
    return events.refs(event, ALIASES)


def change_of(event: Event) -> str | None:
    """The change the event reports, in the words every system shares, if a source declares it."""
    return CHANGES.get(event.kind)


def episodes_of(source: str) -> Mapping[str, EpisodeEffect]:
    """Event kind → what it does to its alert's episode, as the source declares (empty: no episodes)."""
    return EPISODES.get(source, {})


def through_api(event: Event) -> bool:
    """The event says its change came through an API, so the actor it names proves nothing."""
    return any((event.identifiers.get(name) or "").casefold() == value for name, value in THROUGH_API.items())


def commands() -> dict[str, str]:
    """Source name → its CLI app ("module:attribute"), for `alertbridge NAME …`."""
    return {name: source.command for name, source in REGISTRY.items() if source.command}


def unknown_claim_keys(routing: Any) -> str | None:
    """Why a team's `routing:` names a key no source declares, or None (also for a shape the
    model refuses on its own)."""
    if not isinstance(routing, Mapping):
        return None
    unknown = [k for k in routing if k not in CLAIM_KINDS]
    return f"unknown routing key {unknown[0]!r}; known: {', '.join(CLAIM_KINDS)}" if unknown else None


def unknown_priority(priority: Any) -> str | None:
    """Why `routing.priority` names an identifier no source's claims declare, or None."""
    if not isinstance(priority, Sequence) or isinstance(priority, str):
        return None
    unknown = [k for k in priority if k not in DEFAULT_PRIORITY]
    return f"unknown identifier {unknown[0]!r}; known: {', '.join(DEFAULT_PRIORITY)}" if unknown else None


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
