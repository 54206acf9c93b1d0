"""The router task: routes stored events and writes their deliveries, in the background.

It wakes when ingress commits (or, on PostgreSQL, when another replica's ingress does), and looks
at the store every half second anyway, so events stored by another process (`alertbridge send`)
or left over from a crash are routed too. Events are claimed for a lease while they are routed,
so replicas sharing a database do not route the same event at once.
A batch's decisions are recorded in one transaction; routing the same event twice (a crash in
between) writes nothing new because delivery keys are unique. An event that opens or closes an
alert's episode moves the alert in that transaction too, and only from where the router read it
(`routing/episodes.py`), so that routing it twice cannot open two episodes.
An event that a silence or a maintenance window mutes when it is routed (`routing/silences.py`:
the active ones are read from the store for each batch, so a silence made on any replica counts
from the next batch on) is stored `silenced` with no deliveries, so it uses up no action's key.
An event that an inhibit rule mutes (`routing/inhibition.py`: an alert matching its source matchers
fires, that is, its episode is open, with the same `equal` labels) is stored `inhibited` the same
way, its trace naming the rule and the alert; the open alerts are read for each batch too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import time
from collections.abc import Callable, Collection, Mapping, MutableMapping, Sequence
from typing import Any

import msgspec

from alertbridge import logs
from alertbridge.events import EpisodeEffect, Event, fingerprint
from alertbridge.metrics import Metrics
from alertbridge.routing import Rules
from alertbridge.routing.decide import Decision, decide
from alertbridge.routing.episodes import advance, alert_of
from alertbridge.routing.inhibition import Inhibitor
from alertbridge.routing.repeats import InEpisode
from alertbridge.routing.silences import Invalid, Silence, from_row, silencer, values_of
from alertbridge.routing.teams import TeamDirectory
from alertbridge.sources import change_of, episodes_of, refs, through_api
from alertbridge.store.base import Decided, Episode, EpisodeStep, Routing
from alertbridge.targets import ConfiguredTarget

log = logs.get("alertbridge.router")

BATCH = 256
IDLE_POLL = 0.5


class Router:
    def __init__(
        self,
        store: Routing,
        rules: Rules,
        targets: Mapping[str, ConfiguredTarget],
        metrics: Metrics,
        on_deliveries: Callable[[], None],
        clock: Callable[[], float] = time.time,
        ignore_actors: Mapping[str, Collection[str]] | None = None,
        echo_systems: Collection[str] = (),
        echo_window: float = 600.0,
        teams: TeamDirectory | None = None,
        lease: float = 30.0,
        episodes: Mapping[str, Mapping[str, EpisodeEffect]] | None = None,
    ) -> None:
        self.teams = teams
        self.lease = lease  # how long other replicas leave an event this router claimed
        self.store = store
        self.rules = rules
        self.targets = targets
        self.ignore_actors = {
            name: frozenset(a.casefold() for a in actors if a) for name, actors in (ignore_actors or {}).items()
        }
        self.echo_systems = frozenset(echo_systems)
        self.echo_window = echo_window
        # Endpoint → the kinds that open and close episodes, where its `episodes:` replaces its source's.
        self.episodes = dict(episodes or {})
        # Links are looked up only when some template can use them: most setups never pay the read.
        self.uses_links = _mentions_links(rules, targets)
        self.metrics = metrics
        self.on_deliveries = on_deliveries
        self.clock = clock
        self._wake = asyncio.Event()
        self.running = False

    def wake(self) -> None:
        self._wake.set()

    def endpoint_changed(
        self,
        name: str,
        source: str | None,
        ignore_actors: Collection[str] = (),
        episodes: Mapping[str, EpisodeEffect] | None = None,
    ) -> None:
        """An endpoint saved through the API (source None: removed): whose changes are our own echoes,
        and its own episode kinds, if it sets them."""
        self.episodes.pop(name, None)
        if source is None:
            self.ignore_actors.pop(name, None)
            return
        if episodes is not None:
            self.episodes[name] = episodes
        self.ignore_actors[name] = frozenset(a.casefold() for a in ignore_actors if a)
        self.echo_systems = self.echo_systems | {source}

    def targets_changed(self) -> None:
        """The target map changed in place: a new target type may use links."""
        self.uses_links = _mentions_links(self.rules, self.targets)

    async def run(self) -> None:
        self.running = True
        try:
            while True:
                self._wake.clear()
                try:
                    routed = await self.route_pending()
                except Exception as exc:  # the store hiccuped: the events wait, nothing is lost
                    log.error("routing_failed", error=str(exc))
                    routed = 0
                if routed < BATCH:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), IDLE_POLL)
        finally:
            self.running = False

    async def route_pending(self) -> int:
        events = await self.store.unrouted_events(BATCH, self.clock(), self.lease)
        if not events:
            return 0
        writes: list[tuple[Event, Decision, int | None, EpisodeStep | None]] = []
        used: set[int] = set()  # expectations this batch has already matched: each absorbs one echo
        alerts: dict[tuple[str, str], Episode] = {}  # where this batch's events leave each alert
        silences = await self.silences()
        inhibitor = await self.inhibitor()
        for event in events:
            echo_id, decision, moved = await self._route(event, used, alerts, silences, inhibitor)
            if echo_id is not None:
                used.add(echo_id)
            writes.append((event, decision, echo_id, moved))
        results = await self.store.record_decisions(
            [
                Decided(e.id, d.status, d.trace, d.deliveries, echo_id, moved, d.repeat_at)
                for e, d, echo_id, moved in writes
            ],
            self.clock(),
        )
        created = 0
        for (event, decision, echo_id, moved), existing in zip(writes, results, strict=True):
            if existing is None:  # another replica took that expectation first, or moved the alert: again
                log.info(
                    "routed_meanwhile",
                    event_id=event.id,
                    expectation=echo_id,
                    alert=moved.alert if moved else None,
                )
                self._wake.set()
                continue
            created += sum(1 for x in existing if x is None)
            self.metrics.routed.labels(decision.status).inc()
            if decision.status == "silenced":
                self.metrics.silenced.labels(event.endpoint).inc()
            elif decision.status == "inhibited":
                self.metrics.inhibited.labels(event.endpoint).inc()
            log.info(
                "routed",
                event_id=event.id,
                kind=event.kind,
                status=decision.status,
                deliveries=[d.id for d, x in zip(decision.deliveries, existing, strict=True) if x is None],
                already_done=[x for x in existing if x],
            )
        if created:
            self.on_deliveries()
        return len(events)

    async def preview(self, event: Event) -> Decision:
        """What routing would decide for this event now, writing nothing (`send --dry-run`)."""
        return (await self._route(event, silences=await self.silences(), inhibitor=await self.inhibitor()))[1]

    async def silences(self) -> list[Silence]:
        """The file's maintenance windows and the silences and windows active in the store now. A
        stored row that no longer parses (made by a newer version) is logged and skipped."""
        found = list(self.rules.windows)
        for row in await self.store.active_silences(self.clock()):
            try:
                found.append(from_row(row))
            except (Invalid, KeyError, TypeError) as exc:
                log.error("bad_silence", silence=row.get("id"), error=str(exc))
        return found

    async def inhibitor(self) -> Inhibitor | None:
        """The file's inhibit rules with the alerts firing now (None: no rules, nothing read)."""
        if not self.rules.inhibit:
            return None
        return Inhibitor.of(self.rules.inhibit, await self.store.open_alerts())

    async def _route(
        self,
        event: Event,
        used: Collection[int] = (),
        alerts: MutableMapping[tuple[str, str], Episode] | None = None,
        silences: Sequence[Silence] = (),
        inhibitor: Inhibitor | None = None,
    ) -> tuple[int | None, Decision, EpisodeStep | None]:
        """The decision for one event: our own echo suppressed, else muted by an inhibit rule or a
        silence, else the routes' (the expectation it used), and the step it takes in its alert's
        episodes. An echo moves the alert too: an alert we closed is closed; a muted alert still fires
        (and still inhibits others)."""
        if event.filtered:  # the source kept it from routing (an endpoint's integration filter)
            return None, Decision("suppressed", [{"result": "not routed", "why": event.filtered}]), None
        event, moved, episode, in_episode = await self._episode(event, {} if alerts is None else alerts)
        if inhibitor is not None and moved is not None:
            inhibitor.moved((moved.org, moved.alert), moved.now.open, event.id, moved.labels or {})
        echo_id, decision, step = await self._echo(event, used)
        muted = None
        # A resolve is never inhibited: what paged before its source alert fired must be able to clear.
        resolves = moved is not None and not moved.now.open
        if decision is None and inhibitor is not None and not resolves:
            own = alert_of(event)  # an alert never inhibits itself
            muted = inhibitor.mutes(event, None if own is None else (event.org, own))
            if muted is not None:
                decision = Decision("inhibited", [muted])
        if decision is None:
            muted = silencer(silences, event, self.clock())
            if muted is not None:
                decision = Decision("silenced", [muted])
        if muted is not None and decision is not None and step is not None:
            decision.trace.insert(0, step)
        if decision is None:
            decision = await self._decide(event, in_episode)
            if step is not None:
                decision.trace.insert(0, step)
        if episode is not None:  # last: the steps before it keep their places (an echo's comes first)
            decision.trace.append(episode)
        return echo_id, decision, moved

    async def _episode(
        self, event: Event, alerts: MutableMapping[tuple[str, str], Episode]
    ) -> tuple[Event, EpisodeStep | None, dict[str, Any] | None, InEpisode | None]:
        """The event in its alert's episode (`event.episode`), the step it takes there (if it opens or
        closes one), the trace step that says which episode and why, and, while the episode is open,
        since when (for `repeat_interval`). `alerts`: where the batch's earlier events left each
        alert, since their steps are recorded with the batch."""
        kinds = self.episodes.get(event.endpoint)
        if kinds is None:
            kinds = episodes_of(event.source)
        alert = alert_of(event) if kinds else None
        if alert is None:
            return event, None, None, None
        key = (event.org, alert)
        was = alerts[key] if key in alerts else await self.store.episode(event.org, alert)
        effect = kinds.get(event.kind)
        number, now, why = advance(was, effect, event.kind, event.id)
        opens = now.open and (not was.open or now.number != was.number)  # a restart opens one while open
        if opens:
            now = dataclasses.replace(now, opened_at=self.clock())
        alerts[key] = now
        moved = EpisodeStep(event.org, alert, event.id, was, now, values_of(event)) if effect else None
        trace = {"result": f"episode {number} of alert {alert}", "why": why, "episode": number, "alert": alert}
        in_episode = None
        if now.open and now.opened_at is not None:
            in_episode = InEpisode(alert, number, now.opened_at, opens)
        return msgspec.structs.replace(event, episode=number), moved, trace, in_episode

    async def _decide(self, event: Event, in_episode: InEpisode | None = None) -> Decision:
        original = None
        in_reply_to = event.identifiers.get("in_reply_to")
        if in_reply_to:
            row = await self.store.get_event(in_reply_to)
            original = row.event if row else None
        subject = refs(event)
        linked = await self.store.links_of(event.org, subject) if self.uses_links and subject else []
        team, step = await self._team(event)
        decision = decide(
            event,
            self.rules.routes,
            self.targets,
            self.rules.templates,
            self.clock,
            original,
            linked,
            team,
            in_episode,
        )
        if step is not None:
            decision.trace.insert(0, step)
        return decision

    async def _team(self, event: Event) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The team that owns what the event is about, and the trace step that says how it was found."""
        if self.teams is None or not self.teams.enabled:
            return None, None
        pairs = self.teams.identifiers_of(event)
        match = await self.teams.find(self.store, event.org, pairs)
        if match is None:
            self.metrics.team_lookups.labels(event.source, "not_found").inc()
            shown = ", ".join(f"{kind}={value!r}" for kind, value in pairs) or "none"
            log.warning("no_team", event_id=event.id, source=event.source, identifiers=dict(pairs))
            return None, {"team": None, "why": f"no team owns any of this event's identifiers ({shown})"}
        self.metrics.team_lookups.labels(event.source, "found").inc()
        self.metrics.team_events.labels(event.source, match.name, match.matched_by).inc()
        step = {"team": match.name, "matched_by": match.matched_by, "identifier": match.identifier}
        return match.view(), step

    async def _echo(
        self, event: Event, used: Collection[int] = ()
    ) -> tuple[int | None, Decision | None, dict[str, Any] | None]:
        """Is this webhook the echo of a change alertbridge made? (expectation id, the decision) if so;
        else, where alertbridge made that change but this is not it, the trace step that says why."""
        ignored = self.ignore_actors.get(event.endpoint)
        if ignored:
            for who in (event.actor, event.actor_name):
                if who and who.casefold() in ignored:
                    why = f"made by {who!r}, one of endpoint {event.endpoint!r}'s ignore_actors"
                    return None, Decision("suppressed", [{"result": "echo suppressed", "why": why}]), None
        change = change_of(event)
        if change is None or event.subject is None or event.subject.system not in self.echo_systems:
            return None, None, None
        since = self.clock() - self.echo_window
        rows = [r for r in await self.store.open_echoes(event.org, refs(event), change, since) if r["id"] not in used]
        if not rows:
            return None, None, None
        content = fingerprint(event.note)
        rejected = []
        for row in rows:
            differs = _differs(row, event, content)
            if differs is None:
                why = f"{_made(row)}{_alike(row, event, content)}; this webhook reports that change"
                return int(row["id"]), Decision("suppressed", [{"result": "echo suppressed", "why": why}]), None
            rejected.append(f"{_made(row)}, {differs}")
        why = "; ".join(rejected) + "; so this webhook is someone else's change"
        return None, None, {"result": "not an echo", "why": why}


def _made(row: Mapping[str, Any]) -> str:
    return (
        f"alertbridge itself {row['change']} {row['system']} {row['type']} {row['object_id']}"
        f" (delivery {row['delivery_id']} to {row['target']})"
    )


def _named(event: Event) -> list[str]:
    return [who for who in (event.actor_name, event.actor) if who]


def _differs(row: Mapping[str, Any], event: Event, content: str | None) -> str | None:
    """Why the webhook is not this expectation's echo (other content, someone else), or None."""
    if row.get("fingerprint") and content and row["fingerprint"] != content:
        return "but with other content than this webhook's"
    actor, named = row.get("actor"), _named(event)
    if actor and named and actor.casefold() not in {n.casefold() for n in named} and not through_api(event):
        who = f"{named[0]!r} ({named[1]})" if len(named) > 1 and named[1] != named[0] else repr(named[0])
        return f"as {actor!r}, but this webhook names {who}"
    return None


def _alike(row: Mapping[str, Any], event: Event, content: str | None) -> str:
    """What the echo was recognised by, beyond object and change."""
    parts = []
    if row.get("fingerprint"):
        parts.append(" with the same content" if content else " (this webhook carries no content to compare)")
    if row.get("actor") and row["actor"].casefold() in {n.casefold() for n in _named(event)}:
        parts.append(f" as {row['actor']!r}")
    return "".join(parts)


_LINKS = re.compile(r"\blinks\s*[.\[]")


def _mentions_links(rules: Rules, targets: Mapping[str, ConfiguredTarget]) -> bool:
    """Whether any template reads `links.…` (a field merely named "links" does not count)."""
    texts = [json.dumps([action.fields for action in route.actions], default=str) for route in rules.routes]
    texts += [json.dumps(t.type.actions) for t in targets.values()]
    return any(_LINKS.search(text) for text in texts)
