"""What is saved in the store rather than the file goes live: seed 001's integration settings at
start-up and on change, and, when another replica commits a change (PostgreSQL's
`alertbridge_config` notification), its saved endpoints, targets and integrations here too."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, MutableMapping

from alertbridge import logs
from alertbridge.api.integrations import KIND as INTEGRATION_KIND
from alertbridge.api.integrations import apply as apply_integration
from alertbridge.api.objects.service import Objects
from alertbridge.sources.base import Endpoint
from alertbridge.store.base import Store
from alertbridge.vault import Vault, VaultUnavailable

log = logs.get("alertbridge.app")


class Reload:
    def __init__(
        self, store: Store, objects: Objects, endpoints: Callable[[], MutableMapping[str, Endpoint]], vault: Vault
    ) -> None:
        self.store = store
        self.objects = objects
        self.endpoints = endpoints  # the ingress's map by path, made after this
        self.vault = vault
        self._tasks: set[asyncio.Task[None]] = set()

    async def apply_integrations(self) -> None:
        store, vault = self.store, self.vault
        for org, kind, saved in await store.integrations():
            if kind == INTEGRATION_KIND:
                try:
                    apply_integration(self.endpoints(), org, saved, vault)
                except VaultUnavailable as exc:
                    log.error("integration_not_applied", org=org, kind=kind, error=str(exc))

    async def reload_config(self) -> None:
        try:
            await self.objects.sync()
            await self.apply_integrations()
        except Exception as exc:  # the store hiccuped: the next change, or a restart, brings it in
            log.error("config_reload_failed", error=str(exc))

    def config_changed(self) -> None:
        """Called by the store's subscription: reload in a task of its own, kept until it ends."""
        task = asyncio.get_running_loop().create_task(self.reload_config())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
