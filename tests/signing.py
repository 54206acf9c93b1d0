"""Request signing for tests, written from the providers' documentation, independent of the product's verifiers."""

from __future__ import annotations

import hashlib
import hmac


def pagerduty_signature(body: bytes, *secrets: str) -> str:
    """X-PagerDuty-Signature: one `v1=<hex HMAC-SHA256 of the raw body>` per secret, comma-separated.

    PagerDuty developer docs, "Verifying Signatures" (webhooks/04-Signatures.md).
    """
    return ",".join("v1=" + hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in secrets)
