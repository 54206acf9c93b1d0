"""Secrets at rest: what operators type into the API (an API key, a webhook secret) is stored
encrypted with a key from the environment, `ALERTBRIDGE_SECRET_KEY` (Fernet: AES-128-CBC with an
HMAC, from the cryptography package). Without the key, nothing secret can be saved.

    python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"
"""

from __future__ import annotations

import os

from cryptography.fernet import Fernet, InvalidToken

ENV = "ALERTBRIDGE_SECRET_KEY"


class VaultUnavailable(Exception):
    pass


class Vault:
    def __init__(self, key: str | None = None) -> None:
        key = key if key is not None else os.environ.get(ENV)
        try:
            self._fernet = Fernet(key.encode()) if key else None
        except ValueError:
            raise VaultUnavailable(f"{ENV} is not a Fernet key (32 url-safe base64-encoded bytes)") from None

    @property
    def available(self) -> bool:
        return self._fernet is not None

    def seal(self, secret: str) -> str:
        if self._fernet is None:
            raise VaultUnavailable(f"set {ENV} to store secrets (see alertbridge.vault)")
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        if self._fernet is None:
            raise VaultUnavailable(f"set {ENV} to read stored secrets")
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise VaultUnavailable(f"a stored secret cannot be read with this {ENV}") from None


def mask(secret: str | None) -> str | None:
    """What the API shows of a saved secret: enough to recognise it, not to use it."""
    if not secret:
        return None
    return "••••" + secret[-4:] if len(secret) > 8 else "••••"
