"""When to try a failed delivery again, and when to give up. Retry schedules are data."""

from __future__ import annotations

import random

from alertbridge.config import RetryPolicy


def next_delay(policy: RetryPolicy, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
    """Seconds before attempt `attempt + 1`: exponential with full jitter, or what the receiver asked.

    A Retry-After from the receiver is honoured as a floor (sending sooner is wasted), capped at
    the policy's cap so a hostile header cannot park a page for a day.
    """
    ceiling = min(policy.backoff_cap, policy.backoff_base * (2 ** max(0, attempt - 1)))
    delay = rng.uniform(ceiling / 2, ceiling)  # "equal jitter": never immediate, never in lockstep
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.backoff_cap))
    return delay


def exhausted(policy: RetryPolicy, attempts: int, budget_from: float, now: float) -> str | None:
    """Why a delivery should be given up after `attempts` attempts, or None to keep trying."""
    if attempts >= policy.max_attempts:
        return f"gave up after {attempts} attempts"
    if now - budget_from >= policy.max_age:
        return f"gave up after {int(now - budget_from)} s (max_age {int(policy.max_age)} s)"
    return None
