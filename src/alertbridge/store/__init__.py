"""Storage: one interface (`base.Store`), a backend per database."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from alertbridge.store.base import Store, StoreUnavailable
from alertbridge.store.urls import masked

__all__ = [
    "DEFAULT_URL",
    "Store",
    "StoreChoice",
    "StoreUnavailable",
    "choose_store",
    "masked",
    "open_store",
    "store_url",
]

DEFAULT_URL = "sqlite:///./alertbridge.db"


@dataclass(frozen=True)
class StoreChoice:
    """A store URL and where it came from, so that "no store there" can say how it was chosen."""

    url: str
    source: str  # --store, ALERTBRIDGE_STORE, the config's store:, or the default

    @property
    def sqlite_path(self) -> str | None:
        """The file a SQLite URL names (None for PostgreSQL)."""
        if not self.url.startswith("sqlite:"):
            return None
        from alertbridge.store.sqlite import path_of

        return path_of(self.url)


def choose_store(
    option: str | None = None, configured: str | None = None, env: Mapping[str, str] | None = None
) -> StoreChoice:
    """The one rule every command follows (serve, migrate, the CLI's readers), so they cannot drift:
    --store, else ALERTBRIDGE_STORE, else the config file's `store:`, else ./alertbridge.db."""
    env = os.environ if env is None else env
    if option:
        return StoreChoice(option, "--store")
    if env.get("ALERTBRIDGE_STORE"):
        return StoreChoice(env["ALERTBRIDGE_STORE"], "ALERTBRIDGE_STORE")
    if configured:
        return StoreChoice(configured, "the config's store:")
    return StoreChoice(DEFAULT_URL, "default")


def store_url(configured: str | None = None) -> str:
    """The store URL `serve` uses: ALERTBRIDGE_STORE, else the config file's, else SQLite here."""
    return choose_store(None, configured).url


def open_store(url: str) -> Store:
    """The backend the URL names: `sqlite:///path.db`, or `postgresql://…` (also `postgres://…`)."""
    if url.startswith("sqlite:"):
        from alertbridge.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from alertbridge.store.postgres import PostgresStore

        # A stable name for this replica lets it release its own claims when it restarts.
        return PostgresStore(url, replica=os.environ.get("ALERTBRIDGE_REPLICA") or None)
    raise ValueError(
        f"unsupported store URL {masked(url)!r}: use sqlite:///path/to/file.db or postgresql://user@host/database"
    )
