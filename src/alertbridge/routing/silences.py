"""Silences and maintenance windows: which events are muted now, and by what.

Pure: no I/O, the instant is passed in. The router reads the active silences from the store and
asks `silencer` which one (if any) mutes an event; `alertbridge check`, the API and the CLI parse
matchers and windows here, so every door refuses the same things with the same words.

**Matchers** are Alertmanager's: `name=value`, `name!=value`, `name=~regex`, `name!~regex`, the
value optionally in double quotes. Regexes are fully anchored (Python `re.fullmatch`). A name reads
the event's `labels` (where the Alertmanager and Grafana sources put an alert's labels), except the
names under `event.`, which read the event's own fields (`EVENT_FIELDS`). A missing label or field
is the empty string, as in Alertmanager: `team=""` matches an event without `team`. A silence
mutes an event when every one of its matchers matches.

**Windows** recur: on the given days of the week, from a local time of day in an IANA time zone,
for a duration of elapsed time. A start that falls in a DST gap begins where the clocks jump to
(Python's `fold=0`), an ambiguous one at its first occurrence; either way the window lasts its
duration in real time, so it mutes exactly that long.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alertbridge.events import Event

OPERATORS = ("=", "!=", "=~", "!~")
# The event fields a matcher can read as `event.<name>`; `event.service` is the service's name.
EVENT_FIELDS = (
    "kind",
    "source",
    "endpoint",
    "org",
    "severity",
    "priority",
    "urgency",
    "status",
    "service",
    "title",
    "dedup_key",
    "subject",
)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = {
    **{d: i for i, d in enumerate(DAYS)},
    **{n: i for i, n in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))},
}
MAX_WINDOW = 7 * 86400.0  # a window longer than a week would overlap itself
LATEST = 253402300799.0  # 9999-12-31T23:59:59Z: the last instant a silence can end

_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.:]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.DOTALL)
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")


class Invalid(ValueError):
    """A matcher, a silence or a window that cannot work: the message says which part and why."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str
    pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @property
    def is_regex(self) -> bool:
        return self.op in ("=~", "!~")

    @property
    def is_equal(self) -> bool:
        return self.op in ("=", "=~")

    def matches(self, event: Event) -> bool:
        return self.holds(value_of(event, self.name))

    def holds(self, found: str) -> bool:
        """Whether the value a matcher reads (`value_of`, or a stored `values_of`) satisfies it."""
        if self.pattern is not None:
            return (self.pattern.fullmatch(found) is not None) == self.is_equal
        return (found == self.value) == self.is_equal

    def __str__(self) -> str:
        quoted = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{quoted}"'

    def view(self) -> dict[str, Any]:
        return {"name": self.name, "op": self.op, "value": self.value}


def matcher(name: str, op: str, value: str) -> Matcher:
    """A checked matcher: a known operator, a name that can be read, a regex that compiles."""
    if op not in OPERATORS:
        raise Invalid(f"unknown matcher operator {op!r}: use one of {', '.join(OPERATORS)}")
    if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:]*", name):
        raise Invalid(f"matcher name {name!r} is not a label name or event.<field>")
    if name.startswith("event.") and name.removeprefix("event.") not in EVENT_FIELDS:
        raise Invalid(f"unknown event field {name!r}: matchers read event.{', event.'.join(EVENT_FIELDS)}")
    pattern = None
    if op in ("=~", "!~"):
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise Invalid(f"matcher {name}{op}{value!r}: the regex does not compile: {exc}") from None
    return Matcher(name, op, value, pattern)


def parse_matcher(text: str) -> Matcher:
    """`name op value` in Alertmanager's (and amtool's) syntax, e.g. `severity=~"warn|crit"`."""
    found = _MATCHER.match(text)
    if found is None:
        raise Invalid(f"{text!r} is not a matcher: write name=value, name!=value, name=~regex or name!~regex")
    name, op, value = found.groups()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    return matcher(name, op, value)


def parse_matchers(given: Iterable[Any]) -> list[Matcher]:
    """Matchers as strings or as `{name, op, value}` (or Alertmanager's `{name, value, isRegex,
    isEqual}`); at least one, since a silence without matchers would mute everything."""
    out = []
    for item in given:
        if isinstance(item, str):
            out.append(parse_matcher(item))
        elif isinstance(item, Mapping):
            out.append(_from_mapping(item))
        else:
            raise Invalid(f"a matcher is a string like 'name=value' or an object, not {item!r}")
    if not out:
        raise Invalid("a silence needs at least one matcher (none would mute every event)")
    return out


def _from_mapping(item: Mapping[str, Any]) -> Matcher:
    name, value = item.get("name"), item.get("value")
    if not isinstance(name, str) or not isinstance(value, str):
        raise Invalid("a matcher object needs a string `name` and a string `value`")
    op = item.get("op")
    if op is None:
        regex, equal = item.get("isRegex", False), item.get("isEqual", True)
        if not isinstance(regex, bool) or not isinstance(equal, bool):
            raise Invalid("isRegex and isEqual are true or false")
        op = ("=~" if regex else "=") if equal else ("!~" if regex else "!=")
    if not isinstance(op, str):
        raise Invalid(f"unknown matcher operator {op!r}: use one of {', '.join(OPERATORS)}")
    return matcher(name, op, value)


def value_of(event: Event, name: str) -> str:
    """What a matcher compares: a label, or an event field under `event.`; missing is ''."""
    if name.startswith("event."):
        wanted = name.removeprefix("event.")
        if wanted == "service":
            found: Any = event.service.name if event.service else None
        elif wanted == "subject":
            found = event.subject.id if event.subject else None
        else:
            found = getattr(event, wanted, None)
    else:
        found = event.labels.get(name)
    if found is None:
        return ""
    return found if isinstance(found, str) else str(found)


def values_of(event: Event) -> dict[str, str]:
    """Everything a matcher can read of the event, by matcher name (labels, and `event.<field>` for
    the fields it has): kept with an open alert, so that inhibit rules match it later."""
    found = {name: value_of(event, name) for name in event.labels if not name.startswith("event.")}
    for name in EVENT_FIELDS:
        value = value_of(event, f"event.{name}")
        if value:
            found[f"event.{name}"] = value
    return found


# ---- windows


@dataclass(frozen=True)
class Window:
    """A recurring silence: `days` (0 = Monday), from `start` local time in `zone`, for `duration` s."""

    days: frozenset[int]
    start: dt.time
    duration: float
    zone: str

    def active(self, instant: float) -> tuple[float, float] | None:
        """The (start, end) Unix times of the occurrence `instant` falls in, or None."""
        tz = ZoneInfo(self.zone)
        today = dt.datetime.fromtimestamp(instant, tz).date()
        back = int(self.duration // 86400) + 1  # an occurrence that began up to this many days ago
        for offset in range(back + 1):
            day = today - dt.timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            begins = dt.datetime.combine(day, self.start, tzinfo=tz).timestamp()  # fold=0, real instant
            if begins <= instant < begins + self.duration:
                return begins, begins + self.duration
        return None

    def view(self) -> dict[str, Any]:
        return {
            "days": [DAYS[d] for d in sorted(self.days)],
            "start": self.start.strftime("%H:%M"),
            "duration": self.duration,
            "timezone": self.zone,
        }


def window(days: Sequence[Any], start: Any, duration: Any, zone: Any) -> Window:
    """A checked window; `Invalid` names the first part that is wrong (`window_problems`: all)."""
    problems = window_problems(days, start, duration, zone)
    if problems:
        raise Invalid(f"{problems[0][0]}: {problems[0][1]}")
    hours, minutes = str(start).strip().split(":")
    return Window(frozenset(_day_numbers(days)), dt.time(int(hours), int(minutes)), float(duration), zone)


def window_problems(days: Sequence[Any], start: Any, duration: Any, zone: Any) -> list[tuple[str, str]]:
    """Every part of a window that cannot work, as (part, message): for `alertbridge check`."""
    problems = []
    if isinstance(days, str) or not days:
        problems.append(("days", "a list of days of the week (mon … sun), at least one"))
    else:
        unknown = [day for day in days if str(day).strip().lower() not in _DAY_NAMES]
        if unknown:
            problems.append(("days", f"unknown day {unknown[0]!r}: use {', '.join(DAYS)}"))
    found = _TIME.match(start.strip()) if isinstance(start, str) else None
    if found is None or int(found[1]) > 23 or int(found[2]) > 59:
        problems.append(("start", f"{start!r} is not a time of day: write HH:MM, 00:00 to 23:59"))
    if isinstance(duration, bool) or not isinstance(duration, int | float) or duration <= 0:
        problems.append(("duration", f"{duration!r} must be more than zero"))
    elif duration > MAX_WINDOW:
        problems.append(("duration", "at most a week (7d)"))
    if not isinstance(zone, str) or not zone:
        problems.append(("timezone", "an IANA time zone such as Europe/Berlin"))
    else:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(("timezone", f"unknown time zone {zone!r} (an IANA name such as Europe/Berlin)"))
    return problems


def _day_numbers(days: Sequence[Any]) -> set[int]:
    return {_DAY_NAMES[str(day).strip().lower()] for day in days}


# ---- what mutes an event


@dataclass(frozen=True)
class Silence:
    """A silence (one-off: `window` None) or a maintenance window, with who made it and why."""

    id: str
    org: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    updated_at: float
    window: Window | None = None
    name: str | None = None  # a window's name (from the file, or given through the API)

    def state(self, now: float) -> str:
        if now >= self.ends_at:
            return "expired"
        return "pending" if now < self.starts_at else "active"

    def mutes(self, event: Event, now: float) -> tuple[float, float] | None:
        """(from, until) if this silence mutes the event at `now`, else None."""
        if event.org != self.org or self.state(now) != "active":
            return None
        if not all(m.matches(event) for m in self.matchers):
            return None
        if self.window is None:
            return self.starts_at, self.ends_at
        return self.window.active(now)


def silencer(silences: Iterable[Silence], event: Event, now: float) -> dict[str, Any] | None:
    """The trace step of the first silence or window that mutes the event now, or None."""
    for silence in silences:
        span = silence.mutes(event, now)
        if span is None:
            continue
        until = dt.datetime.fromtimestamp(span[1], dt.UTC).isoformat().replace("+00:00", "Z")
        step: dict[str, Any] = {"result": "silenced", "until": until, "by": silence.created_by}
        if silence.window is not None:
            step["window"] = silence.name or silence.id
            what = f"maintenance window {silence.name or silence.id!r}"
        else:
            what = f"silence {silence.id}"
        step["silence"] = silence.id
        step["comment"] = silence.comment
        step["matchers"] = [str(m) for m in silence.matchers]
        step["why"] = f"{what} by {silence.created_by} ({silence.comment or 'no comment'}) mutes it until {until}"
        return step
    return None


def from_row(row: Mapping[str, Any]) -> Silence:
    """A silence or window as the store keeps it (`Silences` role), checked again as it is read."""
    recurrence = row.get("recurrence")
    return Silence(
        id=row["id"],
        org=row["org"],
        matchers=tuple(parse_matchers(row["matchers"])),
        starts_at=float(row["starts_at"]),
        ends_at=float(row["ends_at"]),
        created_by=row["created_by"],
        comment=row["comment"],
        updated_at=float(row["updated_at"]),
        window=None if recurrence is None else window(**recurrence),
        name=row.get("name"),
    )


def to_row(silence: Silence) -> dict[str, Any]:
    """What the store keeps of a silence (the inverse of `from_row`)."""
    recurrence = None
    if silence.window is not None:
        view = silence.window.view()
        recurrence = {
            "days": view["days"],
            "start": view["start"],
            "duration": view["duration"],
            "zone": view["timezone"],
        }
    return {
        "id": silence.id,
        "org": silence.org,
        "matchers": [m.view() for m in silence.matchers],
        "starts_at": silence.starts_at,
        "ends_at": silence.ends_at,
        "created_by": silence.created_by,
        "comment": silence.comment,
        "recurrence": recurrence,
        "name": silence.name,
    }


def instant(value: Any, what: str) -> float:
    """A Unix time from a number or an ISO 8601 string (Alertmanager's `startsAt`, `2026-03-29T01:30:00Z`)."""
    if isinstance(value, bool):
        raise Invalid(f"{what}: {value!r} is not a time")
    if isinstance(value, int | float):
        moment = float(value)
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise Invalid(f"{what}: {value!r} is not an ISO 8601 time (2026-03-29T01:30:00Z)") from None
        if parsed.tzinfo is None:
            raise Invalid(f"{what}: {value!r} has no time zone (add Z for UTC)")
        moment = parsed.timestamp()
    else:
        raise Invalid(f"{what}: {value!r} is not a time")
    if not 0 <= moment <= LATEST:
        raise Invalid(f"{what}: {value!r} is not between 1970 and 9999")
    return moment


def iso(moment: float) -> str:
    """A Unix time as Alertmanager writes times (UTC, milliseconds, Z)."""
    if moment == float("inf"):
        return "9999-12-31T23:59:59.000Z"
    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make(
    *,
    org: str,
    matchers: Iterable[Any],
    starts_at: float,
    ends_at: float,
    created_by: str,
    comment: str,
    now: float,
    recurrence: Mapping[str, Any] | None = None,
    name: str | None = None,
    silence_id: str | None = None,
) -> Silence:
    """A new silence (or window, with `recurrence`: days, start, duration, zone), checked: matchers,
    an end after its start and after now."""
    checked = tuple(parse_matchers(matchers))
    if recurrence is None and not ends_at <= LATEST:
        raise Invalid("ends_at: a silence ends by 9999 (a maintenance window may recur until expired)")
    if ends_at <= starts_at:
        raise Invalid(f"ends_at ({iso(ends_at)}) must be after starts_at ({iso(starts_at)})")
    if ends_at <= now:
        raise Invalid(f"ends_at ({iso(ends_at)}) is in the past: the silence would never mute anything")
    recurs = None
    if recurrence is not None:
        unknown = set(recurrence) - {"days", "start", "duration", "zone"}
        if unknown:
            raise Invalid(f"window: unknown field {sorted(unknown)[0]!r} (days, start, duration, timezone)")
        recurs = window(
            recurrence.get("days") or [], recurrence.get("start"), recurrence.get("duration"), recurrence.get("zone")
        )
    return Silence(
        id=silence_id or str(uuid.uuid4()),
        org=org,
        matchers=checked,
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=created_by,
        comment=comment,
        updated_at=now,
        window=recurs,
        name=name,
    )
