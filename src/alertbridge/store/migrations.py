"""What a migration does, in a few words, for `alertbridge migrate` to print."""

from __future__ import annotations

import re

_DDL = re.compile(r"\b(CREATE (?:UNIQUE )?INDEX|CREATE TABLE|ALTER TABLE)\s+(?:IF NOT EXISTS\s+)?(\w+)", re.IGNORECASE)


def summary(sql: str) -> str:
    """`CREATE TABLE events …; CREATE INDEX …; ALTER TABLE deliveries …` →
    `new tables events; changed deliveries; 1 index`."""
    created: list[str] = []
    changed: list[str] = []
    indexes = 0
    for verb, name in _DDL.findall(sql):
        verb = " ".join(verb.upper().split())
        if verb == "CREATE TABLE":
            created.append(name)
        elif verb == "ALTER TABLE":
            if name not in changed:
                changed.append(name)
        else:
            indexes += 1
    parts = []
    if created:
        parts.append(f"new table{'s' if len(created) > 1 else ''} {', '.join(created)}")
    if changed:
        parts.append(f"changed {', '.join(changed)}")
    if indexes:
        parts.append(f"{indexes} index{'es' if indexes > 1 else ''}")
    return "; ".join(parts)
