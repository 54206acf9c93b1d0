"""Request signing for tests, written from the providers' documentation, independent of the product's verifiers."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any


def pagerduty_signature(body: bytes, *secrets: str) -> str:
    """X-PagerDuty-Signature: one `v1=<hex HMAC-SHA256 of the raw body>` per secret, comma-separated.

    PagerDuty developer docs, "Verifying Signatures" (webhooks/04-Signatures.md).
    """
    return ",".join("v1=" + hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in secrets)


def standard_webhooks_valid(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Verify a Standard Webhooks signature as a receiver would (standardwebhooks.com spec, "Verifying").

    The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the key is the base64 part of a
    `whsec_` secret; `webhook-signature` holds space-separated `v1,<base64>` signatures.
    """
    key = base64.b64decode(secret.split("_", 1)[1]) if secret.startswith("whsec_") else secret.encode()
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [part.split(",", 1)[1] for part in headers.get("webhook-signature", "").split() if part.startswith("v1,")]
    return any(hmac.compare_digest(expected, g) for g in given)


def sns_string_to_sign(message: dict[str, str]) -> bytes:
    """What Amazon SNS signs, per "Verifying the signatures of Amazon SNS messages" (SNS developer guide):
    name, newline, value, newline, for these fields in byte order. A Notification signs Message,
    MessageId, Subject (only if the message has one), Timestamp, TopicArn, Type; a
    SubscriptionConfirmation or UnsubscribeConfirmation signs Message, MessageId, SubscribeURL,
    Timestamp, Token, TopicArn, Type."""
    if message["Type"] == "Notification":
        names = ["Message", "MessageId"] + (["Subject"] if "Subject" in message else []) + ["Timestamp", "TopicArn"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn"]
    names.append("Type")
    assert names == sorted(names), "byte order"
    return "".join(name + "\n" + message[name] + "\n" for name in names).encode("utf-8")


def sns_sign(message: dict[str, str], private_key: Any, version: str = "1") -> dict[str, str]:
    """`message` with SignatureVersion and Signature as SNS sets them: the base64 SHA1withRSA (version 1)
    or SHA256withRSA (version 2) signature, PKCS #1 v1.5, of `sns_string_to_sign`."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = private_key.sign(sns_string_to_sign(message), padding.PKCS1v15(), digest)
    return {**message, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode()}


def stripe_signature(secret: str, body: bytes, timestamp: int, *more_secrets: str) -> str:
    """Stripe-Signature: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}.{body}">`, one v1 per secret.

    Stripe docs, "Check the webhook signatures" → "Verify manually" (stripe.com/docs/webhooks/signatures): the
    signed payload is the timestamp, a `.`, and the raw body; several v1 entries appear while a secret
    is rolled.
    """
    signed = f"{timestamp}.".encode() + body
    v1 = [hmac.new(s.encode(), signed, hashlib.sha256).hexdigest() for s in (secret, *more_secrets)]
    return ",".join([f"t={timestamp}", *(f"v1={sig}" for sig in v1)])


def sentry_signature(client_secret: str, body: bytes) -> str:
    """Sentry-Hook-Signature: hex HMAC-SHA256 of the body with the integration's client secret.

    Sentry docs, Integration Platform → Webhooks → "Sentry-Hook-Signature"
    (docs.sentry.io/organization/integrations/integration-platform/webhooks/).
    """
    return hmac.new(client_secret.encode(), body, hashlib.sha256).hexdigest()
