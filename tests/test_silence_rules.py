"""Matchers and maintenance windows, the pure parts of silences (`routing/silences.py`): Alertmanager's
matcher semantics, and windows given instants (no clock, no sleeping), across both DST changes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from alertbridge.events import Event, Service
from alertbridge.routing.silences import (
    Invalid,
    Silence,
    instant,
    make,
    parse_matcher,
    parse_matchers,
    silencer,
    window,
)

BERLIN = "Europe/Berlin"


def event(labels: dict[str, Any] | None = None, **fields: Any) -> Event:
    base: dict[str, Any] = {
        "id": "e1",
        "org": "default",
        "endpoint": "prometheus",
        "source": "alertmanager",
        "kind": "alertmanager.firing",
        "received_at": 0.0,
        "delivery_key": "k",
    }
    return Event(**{**base, **fields}, labels=labels or {})


def utc(*parts: int) -> float:
    return dt.datetime(*parts, tzinfo=dt.UTC).timestamp()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("alertname=DiskFull", {"alertname": "DiskFull"}, True),
        ('alertname="DiskFull"', {"alertname": "DiskFull"}, True),
        ("alertname=DiskFull", {"alertname": "DiskFull2"}, False),
        ("alertname!=DiskFull", {"alertname": "DiskFull"}, False),
        ("alertname!=DiskFull", {}, True),
        ('severity=~"warn|crit"', {"severity": "warn"}, True),
        ('severity=~"warn|crit"', {"severity": "warning"}, False),  # anchored: not a substring
        ('severity!~"warn|crit"', {"severity": "warning"}, True),
        ('team=""', {}, True),  # a missing label is the empty string, as in Alertmanager
        ('team!=""', {}, False),
        ('team=~".*"', {}, True),
        ('summary="a \\"quoted\\" word"', {"summary": 'a "quoted" word'}, True),
    ],
)
def test_label_matchers_follow_alertmanager(text: str, labels: dict[str, Any], expected: bool) -> None:
    assert parse_matcher(text).matches(event(labels)) is expected


def test_event_fields_are_read_under_event() -> None:
    e = event({"severity": "page"}, severity="critical", service=Service(name="checkout"))
    assert parse_matcher("event.severity=critical").matches(e)
    assert not parse_matcher("severity=critical").matches(e)  # the label says page
    assert parse_matcher("event.service=checkout").matches(e)
    assert parse_matcher("event.kind=~alertmanager\\..*").matches(e)
    assert parse_matcher("event.endpoint!=other").matches(e)
    assert not parse_matcher('event.title!=""').matches(e)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (["alertname=~(unclosed"], "the regex does not compile"),
        (["alertname<>x"], "is not a matcher"),
        ([{"name": "a", "op": "~=", "value": "x"}], "unknown matcher operator '~='"),
        ([], "at least one matcher"),
        (["event.nonsense=x"], "unknown event field 'event.nonsense'"),
    ],
)
def test_bad_matchers_are_refused_with_the_reason(given: list[Any], message: str) -> None:
    with pytest.raises(Invalid, match=message.replace("(", r"\(")):
        parse_matchers(given)


def test_alertmanager_matcher_objects() -> None:
    (m,) = parse_matchers([{"name": "cluster", "value": "eu-.*", "isRegex": True, "isEqual": False}])
    assert (m.op, m.value) == ("!~", "eu-.*")
    assert m.matches(event({"cluster": "us-1"})) and not m.matches(event({"cluster": "eu-1"}))


def test_a_silence_mutes_in_its_org_between_its_start_and_end() -> None:
    s = make(
        org="default",
        matchers=["alertname=DiskFull"],
        starts_at=100.0,
        ends_at=200.0,
        created_by="ops@example.com",
        comment="disk swap",
        now=50.0,
    )
    e = event({"alertname": "DiskFull"})
    assert silencer([s], e, 99.0) is None  # pending
    step = silencer([s], e, 150.0)
    assert step is not None and step["silence"] == s.id and step["by"] == "ops@example.com"
    assert step["comment"] == "disk swap" and step["until"] == "1970-01-01T00:03:20Z"
    assert silencer([s], e, 200.0) is None  # ended
    assert silencer([s], event({"alertname": "DiskFull"}, org="other"), 150.0) is None


def test_a_silence_that_cannot_work_is_refused() -> None:
    with pytest.raises(Invalid, match="must be after starts_at"):
        make(org="o", matchers=["a=b"], starts_at=10, ends_at=5, created_by="x", comment="", now=0)
    with pytest.raises(Invalid, match="in the past"):
        make(org="o", matchers=["a=b"], starts_at=1, ends_at=5, created_by="x", comment="", now=10)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((["mon"], "25:00", 3600, BERLIN), "start: '25:00' is not a time of day"),
        ((["mon"], "01:60", 3600, BERLIN), "is not a time of day"),
        ((["mon"], "01:30", 0, BERLIN), "duration: 0 must be more than zero"),
        ((["mon"], "01:30", -60, BERLIN), "must be more than zero"),
        ((["someday"], "01:30", 3600, BERLIN), "days: unknown day 'someday'"),
        ((["mon"], "01:30", 3600, "Europe/Atlantis"), "timezone: unknown time zone 'Europe/Atlantis'"),
        ((["mon"], "01:30", 8 * 86400, BERLIN), "at most a week"),
    ],
)
def test_impossible_windows_are_refused(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(Invalid, match=message):
        window(*args)


def _muted(w_start: str, duration: float, instant: float) -> bool:
    return window(["sun"], w_start, duration, BERLIN).active(instant) is not None


def test_a_window_on_the_night_clocks_go_forward() -> None:
    """Berlin, Sunday 29 March 2026: at 02:00 CET the clocks jump to 03:00 CEST. The window starts at
    01:30 CET (00:30 UTC) and lasts one real hour, to 01:30 UTC (03:30 CEST)."""
    assert not _muted("01:30", 3600, utc(2026, 3, 29, 0, 29, 59))
    assert _muted("01:30", 3600, utc(2026, 3, 29, 0, 30))
    assert _muted("01:30", 3600, utc(2026, 3, 29, 1, 0))  # 03:00 CEST, just after the jump
    assert _muted("01:30", 3600, utc(2026, 3, 29, 1, 29, 59))
    assert not _muted("01:30", 3600, utc(2026, 3, 29, 1, 30))
    # A start inside the gap (02:30 does not exist that night) begins where the clocks jump to.
    assert not _muted("02:30", 1800, utc(2026, 3, 29, 0, 59, 59))
    assert _muted("02:30", 1800, utc(2026, 3, 29, 1, 30))  # 02:30 CET read on: 03:30 CEST
    assert not _muted("02:30", 1800, utc(2026, 3, 29, 2, 0))


def test_a_window_on_the_night_clocks_go_back() -> None:
    """Berlin, Sunday 25 October 2026: at 03:00 CEST the clocks go back to 02:00 CET, so 02:30 happens
    twice. A window from 01:30 CEST (23:30 UTC on Saturday) for an hour ends at 00:30 UTC; one from
    02:30 starts at its first occurrence (00:30 UTC) and mutes one hour, not two."""
    assert not _muted("01:30", 3600, utc(2026, 10, 24, 23, 29, 59))
    assert _muted("01:30", 3600, utc(2026, 10, 24, 23, 30))  # Saturday in UTC, Sunday in Berlin
    assert not _muted("01:30", 3600, utc(2026, 10, 25, 0, 30))
    assert not _muted("02:30", 3600, utc(2026, 10, 25, 0, 29, 59))
    assert _muted("02:30", 3600, utc(2026, 10, 25, 1, 29, 59))  # the second 02:30 … 03:00 too
    assert not _muted("02:30", 3600, utc(2026, 10, 25, 1, 30))


def test_a_window_recurs_on_its_days_only_and_crosses_midnight() -> None:
    w = window(["fri"], "23:00", 2 * 3600, "UTC")
    assert w.active(utc(2026, 12, 4, 23, 30)) is not None  # Friday
    assert w.active(utc(2026, 12, 5, 0, 59)) is not None  # Saturday, still Friday's window
    assert w.active(utc(2026, 12, 5, 1, 0)) is None
    assert w.active(utc(2026, 12, 3, 23, 30)) is None  # Thursday
    assert w.active(utc(2026, 12, 11, 23, 0)) is not None  # the next Friday


def test_a_window_silence_names_its_window_in_the_trace() -> None:
    w = window(["sun"], "01:30", 3600, BERLIN)
    s = Silence(
        "maintenance:db",
        "default",
        tuple(parse_matchers(["alertname=~Disk.*"])),
        0.0,
        float("inf"),
        "configuration",
        "db upgrade",
        0.0,
        w,
        "db",
    )
    step = silencer([s], event({"alertname": "DiskFull"}), utc(2026, 3, 29, 0, 45))
    assert step is not None and step["window"] == "db" and step["until"] == "2026-03-29T01:30:00Z"
    assert silencer([s], event({"alertname": "CPU"}), utc(2026, 3, 29, 0, 45)) is None


def test_times_beyond_year_9999_are_refused_not_crashed_on() -> None:
    with pytest.raises(Invalid, match="ends by 9999"):
        make(org="o", matchers=["a=b"], starts_at=0, ends_at=1e300, created_by="x", comment="", now=0)
    with pytest.raises(Invalid, match="between 1970 and 9999"):
        instant(1e300, "ends_at")
    assert instant("2026-03-29T01:30:00+01:00", "starts_at") == utc(2026, 3, 29, 0, 30)
