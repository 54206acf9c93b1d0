"""Secrets at rest: what operators type into the API (an API key, a webhook secret) is stored
encrypted with a key from the environment, `ALERTBRIDGE_SECRET_KEY` (Fernet: AES-128-CBC with an
HMAC, from the cryptography package). Without the key, nothing secret can be saved.

The variable is any string of 32 characters or more (the design's contract); the Fernet key is
derived from it with SHA-256. A Fernet key itself is used as it is, so what was sealed with one
stays readable.

    python -c "import secrets; print(secrets.token_urlsafe(32))"
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.fernet import Fernet, InvalidToken

ENV = "ALERTBRIDGE_SECRET_KEY"
MIN_LENGTH = 32


class VaultUnavailable(Exception):
    pass


class Vault:
    def __init__(self, key: str | None = None) -> None:
        key = key if key is not None else os.environ.get(ENV)
        self._fernet = Fernet(_fernet_key(key)) if key else None

    @property
    def available(self) -> bool:
        return self._fernet is not None

    def seal(self, secret: str) -> str:
        if self._fernet is None:
            raise VaultUnavailable(
                f"set {ENV} (any string of 32 characters or more) to store secrets: see docs/configuration.md"
            )
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        if self._fernet is None:
            raise VaultUnavailable(f"set {ENV} to read stored secrets")
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise VaultUnavailable(f"a stored secret cannot be read with this {ENV}") from None


def _fernet_key(key: str) -> bytes:
    """The Fernet key itself, or one derived from any string long enough to be a secret."""
    try:
        Fernet(key.encode())
        return key.encode()
    except ValueError:
        pass
    if len(key) < MIN_LENGTH:
        raise VaultUnavailable(f"{ENV} must be {MIN_LENGTH} characters or more")
    return base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest())


def mask(secret: str | None) -> str | None:
    """What the API shows of a saved secret: enough to recognise it, not to use it."""
    if not secret:
        return None
    return "••••" + secret[-4:] if len(secret) > 8 else "••••"
