"""Pacing per target: at most `limit` sends in any rolling window of `per` seconds.

A sliding log rather than a token bucket, because PagerDuty counts a rolling minute: a
bucket's burst on top of its rate would still be refused there.
"""

from __future__ import annotations

from collections import deque


class SlidingWindow:
    def __init__(self, limit: int, per: float) -> None:
        self.limit = limit
        self.per = per
        self._sent: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - self.per:
            self._sent.popleft()

    def available(self, now: float) -> int:
        self._trim(now)
        return self.limit - len(self._sent)

    def take(self, now: float) -> bool:
        self._trim(now)
        if len(self._sent) >= self.limit:
            return False
        self._sent.append(now)
        return True

    def free_at(self, now: float) -> float:
        """When the next send will be allowed."""
        self._trim(now)
        if len(self._sent) < self.limit:
            return now
        return self._sent[0] + self.per
