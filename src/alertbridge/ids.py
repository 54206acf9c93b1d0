"""Identifiers: ULIDs (time-ordered, 26 characters), made without a library's per-call overhead.

Ordered by time so that `ORDER BY id` is arrival order; random in the low 80 bits so that
replicas never collide. They are not secrets: nothing is authorised by knowing an id.
"""

from __future__ import annotations

import os
import random

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32, as ULID specifies
_SHIFTS = range(125, -1, -5)
_random = random.Random()
# A process forked after this import (a pre-forking server, the tests' forkserver) must not repeat
# its parent's sequence, or two replicas make the same ids: the child reseeds from the OS.
os.register_at_fork(after_in_child=_random.seed)


def new_id(now: float) -> str:
    """A ULID for the given time (seconds since the epoch)."""
    value = (int(now * 1000) << 80) | _random.getrandbits(80)
    return "".join([_ALPHABET[(value >> shift) & 31] for shift in _SHIFTS])
