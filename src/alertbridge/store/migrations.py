"""What a migration does, in a few words, for `alertbridge migrate` to print."""

from __future__ import annotations

import re

_DDL = re.compile(r"\b(CREATE (?:UNIQUE )?(?:TABLE|INDEX)|ALTER TABLE)\s+(?:IF NOT EXISTS\s+)?(\w+)", re.IGNORECASE)


def summary(sql: str) -> str:
    """`CREATE TABLE events …; CREATE INDEX …` → `create table events, create index events_unrouted`."""
    seen: list[str] = []
    for verb, name in _DDL.findall(sql):
        item = f"{' '.join(verb.lower().split())} {name}"
        if item not in seen:
            seen.append(item)
    return ", ".join(seen)
