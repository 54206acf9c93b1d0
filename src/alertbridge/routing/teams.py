"""Which team owns what an event is about (seed 004): routing identifiers, claimed by teams.

Sources put routing identifiers on events (`slack_channel_id`, `github_repo`,
`pagerduty_service_id`, …; each source's page lists its own). Teams claim identifiers, in the
configuration or through `PUT /api/v1/config/me`; one identifier belongs to one team per org.
When an event carries identifiers of several teams, the configured priority order decides
(seed 004's order by default) and the decision trace records which identifier matched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alertbridge.config import Config
from alertbridge.events import Event
from alertbridge.sources import CLAIM_KINDS, DEFAULT_PRIORITY, EXAMPLE_CLAIM
from alertbridge.store.base import Routing


@dataclass(frozen=True)
class TeamMatch:
    org: str
    name: str
    matched_by: str
    identifier: str
    slack_channel: str | None

    def view(self) -> dict[str, Any]:
        """What templates see (never the token)."""
        return {
            "name": self.name,
            "org": self.org,
            "matched_by": self.matched_by,
            "identifier": self.identifier,
            "slack_channel": self.slack_channel,
        }


class TeamDirectory:
    def __init__(self, config: Config) -> None:
        self.priority = list(DEFAULT_PRIORITY if config.routing.priority is None else config.routing.priority)
        self.default_org = config.server.org
        self.teams = {(t.org or config.server.org, t.name): t for t in config.teams}

    @property
    def enabled(self) -> bool:
        return bool(self.teams)

    def token(self, org: str, name: str) -> str | None:
        team = self.teams.get((org, name))
        return team.token.get_secret_value() if team else None

    def provisioning(self) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str, str]]]:
        from alertbridge.security import token_hash

        teams = [(org, t.name, token_hash(t.token.get_secret_value())) for (org, _), t in self.teams.items()]
        claims = [
            (org, CLAIM_KINDS[key], value, t.name)
            for (org, _), t in self.teams.items()
            for key, values in t.routing.items()
            for value in values
        ]
        return teams, claims

    def identifiers_of(self, event: Event) -> list[tuple[str, str]]:
        """The event's routing identifiers, in priority order."""
        found = dict(event.identifiers)
        if "service" not in found and event.service is not None:
            service = event.service.name or event.service.id
            if service:
                found["service"] = service
        return [(kind, found[kind]) for kind in self.priority if found.get(kind)]

    def choose(self, org: str, owned: Sequence[tuple[str, str, str]]) -> TeamMatch | None:
        ranked = sorted(owned, key=lambda item: self.priority.index(item[0]))
        if not ranked:
            return None
        kind, value, name = ranked[0]
        team = self.teams.get((org, name))
        return TeamMatch(org, name, kind, value, team.slack_channel if team else None)

    async def find(self, store: Routing, org: str, pairs: Sequence[tuple[str, str]]) -> TeamMatch | None:
        return self.choose(org, await store.find_teams(org, pairs)) if pairs else None


def plural_view(claims: Sequence[tuple[str, str, str]]) -> dict[str, list[str]]:
    """A team's claims in seed 004's shape: {"slack_channel_ids": [...], ...}."""
    by_kind: dict[str, list[str]] = {key: [] for key in CLAIM_KINDS}
    names = {kind: key for key, kind in CLAIM_KINDS.items()}
    for kind, value, _ in claims:
        by_kind[names[kind]].append(value)
    return by_kind


def parse_claims(routing: Any) -> tuple[dict[str, list[str]], str | None]:
    """{identifier kind: values} from a PUT body's `routing`, or an error message."""
    if not isinstance(routing, Mapping):
        return {}, f'the body must be {{"routing": {{"{EXAMPLE_CLAIM.key}": [...], ...}}}}'
    claims: dict[str, list[str]] = {}
    for key, values in routing.items():
        if key not in CLAIM_KINDS:
            return {}, f"unknown routing key {key!r}; known: {', '.join(CLAIM_KINDS)}"
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            return {}, f"{key} must be a list of non-empty strings"
        claims[CLAIM_KINDS[key]] = list(dict.fromkeys(values))
    return claims, None
