"""`alertbridge serve` with parts switched off, for the diagnostic rows of `run.py`.

    ALERTBRIDGE_BENCH_WITHOUT=router        python bench/parts.py serve --config …
    ALERTBRIDGE_BENCH_WITHOUT=router,store  python bench/parts.py serve --config …

They answer one question: of what ingest costs, how much is the router working in the same
process, and how much is the store. Not a way to run alertbridge: without the router nothing is
routed, and without the store the 200 is a lie (nothing is kept).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

from alertbridge.cli import main
from alertbridge.events import Event
from alertbridge.routing.router import Router
from alertbridge.store.base import Stored
from alertbridge.store.sqlite import SQLiteStore

WITHOUT = {part for part in os.environ.get("ALERTBRIDGE_BENCH_WITHOUT", "").split(",") if part}
unknown = WITHOUT - {"router", "store"}
if unknown:
    sys.exit(f"ALERTBRIDGE_BENCH_WITHOUT: no part named {', '.join(sorted(unknown))} (router, store)")


async def router_idle(self: Router) -> None:
    self.running = True  # so /readyz answers 200
    await asyncio.Event().wait()


async def store_nothing(self: SQLiteStore, events: Sequence[Event]) -> list[Stored]:
    return [Stored(e.id, None) for e in events]


if "router" in WITHOUT:
    Router.run = router_idle  # type: ignore[method-assign]
if "store" in WITHOUT:
    SQLiteStore.add_events = store_nothing  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.argv[0] = "alertbridge"
    main()
