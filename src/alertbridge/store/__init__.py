"""Storage: one interface (`base.Store`), a backend per database."""

from __future__ import annotations

import os

from alertbridge.store.base import Store, StoreUnavailable
from alertbridge.store.urls import masked

__all__ = ["DEFAULT_URL", "Store", "StoreUnavailable", "masked", "open_store", "store_url"]

DEFAULT_URL = "sqlite:///./alertbridge.db"


def store_url(configured: str | None = None) -> str:
    """The store URL: the environment's ALERTBRIDGE_STORE, else the config file's, else SQLite here."""
    return os.environ.get("ALERTBRIDGE_STORE") or configured or DEFAULT_URL


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
