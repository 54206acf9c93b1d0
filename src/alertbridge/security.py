"""Secret comparison and signatures, in one place so every source uses the constant-time path."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from typing import Any


def same_secret(given: str | bytes, expected: str | bytes) -> bool:
    """Constant-time equality, so response timing does not leak how much of a token matched."""
    a = given.encode() if isinstance(given, str) else given
    b = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)


def any_secret(given: str | bytes, candidates: Iterable[str | bytes]) -> bool:
    """True if `given` equals one of `candidates`; every candidate is compared (rotation)."""
    found = False
    for candidate in candidates:
        found |= same_secret(given, candidate)
    return found


def hmac_sha256_hex(key: str | bytes, message: bytes) -> str:
    k = key.encode() if isinstance(key, str) else key
    return hmac.new(k, message, hashlib.sha256).hexdigest()


def fingerprint(secret: str) -> str:
    """A short, non-reversible tag for a secret, for logs that must tell two secrets apart."""
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def signing_key(secret: str) -> bytes:
    """Standard Webhooks keys are `whsec_` + base64; anything else is used as it is."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_") + "==")
    return secret.encode()


def standard_webhooks_signature(secret: str, message_id: str, timestamp: str | int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, as Standard Webhooks signs (and incident.io)."""
    digest = hmac.new(signing_key(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def secret_values(value: Any, skip_empty: bool = False) -> list[str]:
    """The plain values of a setting that holds one secret or several (a list while rotating).

    With `skip_empty`, an empty one (an unset `${VAR:-}`) counts as none.
    """
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    plain = [v.get_secret_value() for v in values]
    return [v for v in plain if v] if skip_empty else plain


def callback_token(secret: str, event_id: str) -> str:
    """What an agent presents (as a bearer token) to answer about `event_id` later."""
    return hmac.new(signing_key(secret), f"callback:{event_id}".encode(), hashlib.sha256).hexdigest()


def token_hash(token: str) -> str:
    """How team tokens are stored: a SHA-256 digest. Tokens are long and random, so a fast hash is
    enough to make a stolen database useless for calling the API (unlike a password)."""
    return hashlib.sha256(token.encode()).hexdigest()
