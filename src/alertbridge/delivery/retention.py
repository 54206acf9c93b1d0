"""Retention: old history is deleted in the background, a small batch per transaction, so the
writer serves ingress between batches and no sender waits behind a clean-up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from alertbridge import logs
from alertbridge.config import RetentionConfig
from alertbridge.store.base import Records

log = logs.get("alertbridge.retention")


class Janitor:
    def __init__(self, store: Records, config: RetentionConfig, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.config = config
        self.clock = clock

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.config.every)
            try:
                await self.sweep()
            except Exception as exc:  # the store hiccuped: try again next round
                log.error("retention_failed", error=str(exc))

    async def sweep(self) -> tuple[int, int]:
        now = self.clock()
        events_before = now - self.config.events if self.config.events is not None else None
        attempts_before = now - self.config.attempts if self.config.attempts is not None else None
        total_events = total_attempts = 0
        while True:
            events, attempts = await self.store.purge(events_before, attempts_before, self.config.batch)
            total_events += events
            total_attempts += attempts
            if events < self.config.batch and attempts < self.config.batch:
                break
            await asyncio.sleep(0)  # let ingress in between batches
        if total_events or total_attempts:
            log.info("retention", events_deleted=total_events, attempts_deleted=total_attempts)
        return total_events, total_attempts
