"""Alert episodes: an alert that resolves and later fires again is a new episode, and pages again.

A source declares which of its event kinds open and which close an episode (`Source.episodes`); an
endpoint's `episodes:` says it instead (the generic source). The alert is the event's `dedup_key` at its endpoint,
else its subject. The router reads where the alert is (`store.episode`) and `advance` says which
episode the event belongs to and where it leaves the alert: an event that opens starts the next
episode unless one is open; one that closes closes the current one; any other belongs to the
current one. `key:` values of episode 2 and later carry the episode (`per_episode`), so a fire
after a resolve is a new delivery while a repeat within one episode is not; episode 1's keys are
the keys alertbridge always made.
"""

from __future__ import annotations

from alertbridge.events import EpisodeEffect, Event
from alertbridge.store.base import Episode


def alert_of(event: Event) -> str | None:
    """The alert whose episodes the event counts: its dedup key at its endpoint (two senders may use
    the same keys for different things, as delivery keys are per endpoint), else its subject; None:
    neither."""
    if event.dedup_key:
        return f"dedup:{event.endpoint}:{event.dedup_key}"
    if event.subject:
        return f"subject:{event.subject.system}/{event.subject.type}/{event.subject.id}"
    return None


def advance(
    was: Episode, effect: EpisodeEffect | None, kind: str, event_id: str | None = None
) -> tuple[int, Episode, str]:
    """(the episode the event belongs to, where it leaves the alert, why: for the decision trace).
    `event_id`: the event's, so that a `restart` routed again (after a silence) stays in the episode
    it opened."""
    current = max(was.number, 1)
    if effect == "restart" and was.open:
        if event_id is not None and was.event_id == event_id:
            return was.number, was, f"{kind}: episode {was.number} is the one this firing opened"
        number = was.number + 1
        why = f"{kind} opens episode {number} (episode {was.number} was still open: its resolve never came)"
        return number, Episode(number, True, event_id=event_id), why
    if effect == "restart":
        effect = "open"
    if effect == "open":
        if was.open:
            return was.number, was, f"{kind}: episode {was.number} is open already, so this belongs to it"
        number = was.number + 1
        after = f" (episode {was.number} was closed)" if was.number else ""
        return number, Episode(number, True, event_id=event_id), f"{kind} opens episode {number}{after}"
    if effect == "close":
        if was.open:
            return current, Episode(current, False), f"{kind} closes episode {current}"
        if was.number == 0:
            return 1, Episode(1, False), f"{kind} closes episode 1 (its opening was not seen)"
        return current, was, f"{kind}: episode {current} is closed already, so this belongs to it"
    state = "open" if was.open else "closed" if was.number else "not seen opening"
    return current, was, f"{kind} belongs to episode {current} ({state})"


def per_episode(key: str, episode: int | None) -> str:
    """An action's idempotency key in the event's episode: as it always was in episode 1 (and for
    events without episodes), with the episode after it in later ones."""
    return f"{key}#episode-{episode}" if episode and episode > 1 else key
