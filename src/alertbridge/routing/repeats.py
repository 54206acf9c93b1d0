"""Deduplication over time: a route's `repeat_interval`, with Alertmanager's meaning.

A sender repeats a firing alert (Alertmanager every `repeat_interval` of its own, a monitor on each
check). Within an open episode a repeat belongs to that episode, so an action's `key:` already
sends nothing new for it. A route's `repeat_interval` makes that explicit and lets a long-firing
alert page again: the time since the episode opened is cut into intervals, and a repeat in the
n-th interval after the first renders its keys with `#repeat-n`, so the first repeat in each
interval notifies again and the others in it send nothing new. Counting from the opening rather
than from the last notification keeps the decision a pure function of the stored episode (routing
an event twice gives the same keys) at the cost of Alertmanager's exact spacing: two
notifications are at least one interval apart only on average. On such a route an action without
`key:` gets one per alert, route and action, so that repeats are deduplicated there too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class InEpisode:
    """An event of an alert whose episode is open: which, since when, and whether this event opened it."""

    alert: str
    number: int
    opened_at: float
    opens: bool


def repeat_of(interval: float, where: InEpisode, now: float) -> tuple[int, dict[str, Any]]:
    """(the interval the event falls in since the episode opened, 0 the first; the trace step)."""
    since = max(0.0, now - where.opened_at)
    number = int(since // interval)
    step: dict[str, Any] = {"repeat_interval": interval, "since_opened": round(since, 3), "repeat": number}
    if where.opens:
        step["result"] = f"first notification of episode {where.number}"
    elif number == 0:
        step["result"] = "repeat within repeat_interval: nothing new"
        step["why"] = f"episode {where.number} opened {since:.0f}s ago, less than repeat_interval ({interval:g}s)"
    else:
        step["result"] = "repeat after repeat_interval: notify again"
        step["why"] = (
            f"episode {where.number} opened {since:.0f}s ago: repeat {number} (one per {interval:g}s;"
            " a later repeat in the same interval sends nothing new)"
        )
    return number, step


def per_repeat(key: str, number: int) -> str:
    """An idempotency key in the n-th repeat interval of its episode (unchanged in the first)."""
    return f"{key}#repeat-{number}" if number > 0 else key
