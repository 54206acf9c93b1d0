"""`did_you_mean`: the nearest known name to a misspelt one.

A leaf, so the registries (sources, targets) and the checker can all suggest a name without
importing each other."""

from __future__ import annotations

import difflib
from collections.abc import Sequence


def did_you_mean(word: str, options: Sequence[str]) -> str:
    """'; did you mean `x`?' for the closest option, or '' when none is close: a typo fixed at a glance."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    if not close:  # `trigger_incident` for `trigger`: a known name inside the word
        close = [o for o in sorted(options, key=len, reverse=True) if len(o) > 2 and o in word][:1]
    return f"; did you mean `{close[0]}`?" if close else ""
