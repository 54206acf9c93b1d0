"""What templates see as `links`: the objects in other systems linked to the event's subject.

`links.pagerduty.incident` is the id of the PagerDuty incident linked to (say) the Opsgenie
alert an event is about. When there is none yet, the value is a `MissingLink`: false in a
test (`links.x.y or fallback` works), and, if an action cannot be sent without it, the
delivery waits for the link instead of failing (its create may still be being retried).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Ref = tuple[str, str, str]


class MissingLink:
    __slots__ = ("of", "system", "type")

    def __init__(self, system: str, type_: str, of: Ref | None) -> None:
        self.system, self.type, self.of = system, type_, of

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return self.marker

    @property
    def marker(self) -> str:
        """Stands in the delivery's fields until the link exists; unique per subject, for ordering."""
        of = ":".join(self.of) if self.of else "?"
        return f"⧼{self.system}.{self.type} linked to {of}⧽"

    def __repr__(self) -> str:
        return self.marker


class _Types(dict[str, Any]):
    def __init__(self, system: str, of: Ref | None, found: dict[str, str], misses: list[MissingLink]) -> None:
        super().__init__(found)
        self.system, self.of, self.misses = system, of, misses

    def __missing__(self, type_: str) -> MissingLink:
        missing = MissingLink(self.system, type_, self.of)
        self.misses.append(missing)
        return missing


class Links(dict[str, Any]):
    """{system: {type: id}} of what is linked to the event's subject.

    `misses` lists every missing link a template asked for: while it is empty, no rendered field
    can hold one, and the fields need not be searched."""

    def __init__(self, of: Ref | None, linked: Sequence[Ref]) -> None:
        by_system: dict[str, dict[str, str]] = {}
        for system, type_, object_id in linked:
            by_system.setdefault(system, {}).setdefault(type_, object_id)
        self.misses: list[MissingLink] = []
        super().__init__({system: _Types(system, of, found, self.misses) for system, found in by_system.items()})
        self.of = of

    def __missing__(self, system: str) -> _Types:
        return _Types(system, self.of, {}, self.misses)


def missing_in(value: Any, found: list[MissingLink] | None = None) -> list[MissingLink]:
    """Every MissingLink in rendered fields: as a value, or as a marker inside a string."""
    found = [] if found is None else found
    if isinstance(value, MissingLink):
        found.append(value)
    elif isinstance(value, str) and "⧼" in value:
        found.append(_parse_marker(value))
    elif isinstance(value, dict):
        for item in value.values():
            missing_in(item, found)
    elif isinstance(value, list | tuple):
        for item in value:
            missing_in(item, found)
    return found


def _parse_marker(text: str) -> MissingLink:
    inner = text[text.index("⧼") + 1 : text.index("⧽")]
    want, _, of = inner.partition(" linked to ")
    system, _, type_ = want.partition(".")
    parts = of.split(":", 2)
    return MissingLink(system, type_, (parts[0], parts[1], parts[2]) if len(parts) == 3 else None)


def as_markers(value: Any) -> Any:
    """The fields with every MissingLink value turned into its marker string (storable as JSON)."""
    if isinstance(value, MissingLink):
        return value.marker
    if isinstance(value, dict):
        return {k: as_markers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_markers(v) for v in value]
    return value
