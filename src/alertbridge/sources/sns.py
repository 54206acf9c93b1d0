"""Amazon SNS HTTP(S) subscriptions, and the CloudWatch alarms they carry.

SNS signs every message with a certificate of its own: `Signature` is the base64 RSA signature
(SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) of a canonical string, the name and value of
certain fields, each followed by a newline, in byte order: for a Notification `Message`,
`MessageId`, `Subject` (when present), `Timestamp`, `TopicArn`, `Type`; for a
SubscriptionConfirmation or UnsubscribeConfirmation `Message`, `MessageId`, `SubscribeURL`,
`Timestamp`, `Token`, `TopicArn`, `Type`. The certificate is fetched from `SigningCertURL` only
over https from SNS's own hosts (`sns.<region>.amazonaws.com`, `.amazonaws.com.cn`, and the
isolated regions' `c2s.ic.gov` and `sc2s.sgov.gov`) or the hosts the endpoint's `cert_hosts`
names, and kept by URL, so it is fetched once, not per message. A topic not in `topics` is
refused (403) before anything is fetched. The body is the whole truth: SNS's `x-amz-sns-*`
headers are not signed and not read.

A SubscriptionConfirmation for an allowed topic is a handshake: once its signature checks and its
`SubscribeURL` is on an allowed host, alertbridge visits that URL (which confirms the
subscription), logs it and answers 200 without storing an event. An UnsubscribeConfirmation is
verified and stored (`sns.unsubscribed`), and not acted on. SNS redelivers a message with the same
`MessageId`, which is the delivery key.

The fetches are synchronous, within `fetch_timeout` (seconds), because `verify` is: the certificate
once per URL per process (SNS rotates it rarely), the confirmation once per subscription. A fetch
that failed is answered 503 at once for `RETRY_AFTER` seconds rather than tried again per message.

| event field  | from the message                                                              |
| ------------ | ----------------------------------------------------------------------------- |
| kind         | a CloudWatch alarm (`Message` is JSON with `AlarmName` and `NewStateValue`): ALARM → `sns.alarm`, OK → `sns.ok`, INSUFFICIENT_DATA → `sns.insufficient_data`; any other Notification → `sns.notification`; an UnsubscribeConfirmation → `sns.unsubscribed` |
| delivery_key | `MessageId`                                                                   |
| subject      | alarm: `{cloudwatch, alarm, AlarmArn}` (else `<AWSAccountId>:<Region>:<AlarmName>`) |
| title        | alarm: `AlarmName`; other: `Subject`                                          |
| description  | alarm: `NewStateReason`; other: `Message`                                     |
| status       | alarm: `NewStateValue` in lower case (`alarm`, `ok`, `insufficient_data`)      |
| severity     | alarm: ALARM → error, INSUFFICIENT_DATA → warning, OK → info                  |
| occurred_at  | alarm: `StateChangeTime`; other: `Timestamp`                                  |
| dedup_key    | alarm: the same as the subject's id                                           |
| identifiers  | `sns_topic_arn`; alarm: `aws_account_id` (`AWSAccountId`), `aws_region` (from `AlarmArn`, else `Region`), `cloudwatch_alarm_name`, `cloudwatch_alarm_arn`, `cloudwatch_namespace` and `cloudwatch_metric` (`Trigger.Namespace`, `Trigger.MetricName`) |
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import threading
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from alertbridge import logs
from alertbridge.events import Subject
from alertbridge.sources.base import (
    BadPayload,
    Endpoint,
    Event,
    Incoming,
    Refused,
    Reply,
    Source,
    Unauthorized,
    body_digest,
    decode_json,
    obj,
    text,
)

log = logs.get("alertbridge.sources.sns")

TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
# The fields each type signs, in byte order (AWS, "Verifying the signatures of Amazon SNS messages").
SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
OPTIONAL = frozenset({"Subject"})
# URLs that act when visited (unsubscribe the endpoint, subscribe it again) and the token they carry:
# not kept in the event, where everyone who may read events would hold them.
CAPABILITIES = frozenset({"UnsubscribeURL", "SubscribeURL", "Token"})
HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
# SNS's own hosts, over https: the commercial regions, China, and the isolated (ISO) regions.
# The label after `sns.` is a region (us-east-1, us-gov-west-1, cn-north-1, us-iso-east-1): never a
# bucket-style name such as `sns.s3-website-…`, which someone other than AWS could serve.
SNS_HOST = re.compile(
    r"sns\.[a-z]{2}(?:-[a-z]+)+-\d+\.(?:amazonaws\.com|amazonaws\.com\.cn|c2s\.ic\.gov|sc2s\.sgov\.gov)"
)
# Where SNS keeps its signing certificates, as AWS's own validators require.
CERT_PATH = re.compile(r"/SimpleNotificationService-[0-9a-f]+\.pem")
MAX_CERTIFICATE_BYTES = 64 * 1024
CACHED_CERTIFICATES = 64
RETRY_AFTER = 10  # seconds before a certificate whose fetch failed is fetched again

STATES = {
    "ALARM": ("sns.alarm", "error"),
    "OK": ("sns.ok", "info"),
    "INSUFFICIENT_DATA": ("sns.insufficient_data", "warning"),
}


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The TopicArns this endpoint takes; any other topic is refused, and never confirmed.
    topics: list[str] = Field(min_length=1)
    # Where a SigningCertURL or SubscribeURL may point: host names (https), or origins written out
    # (`https://host:port`, or `http://127.0.0.1:8900` for a local stand-in, only when written so).
    # None: SNS's own hosts over https.
    cert_hosts: list[str] | None = None
    fetch_timeout: float = Field(3.0, gt=0, le=30)

    @field_validator("topics", "cert_hosts", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("topics")
    @classmethod
    def _arns(cls, value: list[str]) -> list[str]:
        for arn in value:
            if not arn.startswith("arn:") or arn.count(":") < 5:
                raise ValueError(f"{arn!r} is not a topic ARN (arn:aws:sns:<region>:<account>:<name>)")
        return value

    @field_validator("cert_hosts")
    @classmethod
    def _origins(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("name at least one host, or leave cert_hosts out for SNS's own")
            for entry in value:
                _origin_of(entry)
        return value

    def origins(self) -> list[tuple[str, str, int]] | None:
        return None if self.cert_hosts is None else [_origin_of(entry) for entry in self.cert_hosts]


def _origin_of(entry: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a `cert_hosts` entry: a bare host is https on 443."""
    parts = urlsplit(entry if "://" in entry else f"https://{entry}")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"{entry!r} is not a host name or an origin such as https://host[:port]")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"{entry!r}: only a scheme, a host and a port")
    return parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def allowed_url(url: str, settings: Settings) -> bool:
    """Whether alertbridge may fetch `url`: https from SNS's hosts, or an origin `cert_hosts` names."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.username or parts.password or not parts.hostname:
        return False
    origins = settings.origins()
    if origins is None:
        return parts.scheme == "https" and port in (None, 443) and SNS_HOST.fullmatch(parts.hostname) is not None
    origin = (parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80))
    return origin in origins


def canonical(message: dict[str, Any]) -> bytes:
    """The string SNS signs for this message's type; BadPayload if a field it signs is missing."""
    kind = message.get("Type")
    lines = []
    for name in SIGNED[kind if isinstance(kind, str) and kind in SIGNED else "Notification"]:
        value = message.get(name)
        if value is None and name in OPTIONAL:
            continue
        if not isinstance(value, str):
            raise BadPayload(f"not an SNS message: {name} must be a string")
        lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode()


class _Certificates:
    """Signing certificates by URL, fetched once each (a few; SNS rotates them rarely). A fetch that
    failed is not tried again for `RETRY_AFTER` seconds: the fetch holds the server's event loop, so
    while a host is down only one request per URL and window waits for it, the rest are refused at once."""

    def __init__(self) -> None:
        self._keys: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._failed: OrderedDict[str, tuple[float, Refused]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, url: str, timeout: float) -> x509.Certificate:
        with self._lock:
            found = self._keys.get(url)
            if found is not None:
                return found
            failed = self._failed.get(url)
            if failed is not None and time.monotonic() < failed[0]:
                raise failed[1]
            try:
                found = _fetch_certificate(url, timeout)
            except Refused as exc:
                self._failed[url] = (time.monotonic() + RETRY_AFTER, exc)
                _bound(self._failed)
                raise
            self._failed.pop(url, None)
            self._keys[url] = found
            _bound(self._keys)
            return found


def _bound(cache: OrderedDict[str, Any]) -> None:
    while len(cache) > CACHED_CERTIFICATES:
        cache.popitem(last=False)


CERTIFICATES = _Certificates()


def _fetch_certificate(url: str, timeout: float) -> x509.Certificate:
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client, client.stream("GET", url) as answer:
            if answer.status_code >= 500:
                raise _unavailable(f"the signing certificate's host answered {answer.status_code}")
            if answer.status_code != 200:
                raise Unauthorized(
                    403, "bad_certificate", f"no signing certificate at SigningCertURL ({answer.status_code})"
                )
            pem = b""
            for chunk in answer.iter_bytes():
                pem += chunk
                if len(pem) > MAX_CERTIFICATE_BYTES:
                    raise Unauthorized(403, "bad_certificate", "SigningCertURL serves no certificate (too large)")
    except httpx.HTTPError as exc:
        raise _unavailable(f"the signing certificate could not be fetched ({type(exc).__name__})") from None
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise Unauthorized(403, "bad_certificate", "SigningCertURL serves no PEM certificate") from None


def _unavailable(message: str) -> Refused:
    return Refused(503, "certificate_unavailable", f"{message}; try again", [("retry-after", str(RETRY_AFTER))])


def _message(request: Incoming) -> dict[str, Any]:
    body = decode_json(request.body)
    if not isinstance(body, dict) or body.get("Type") not in TYPES:
        raise BadPayload(f"not an SNS message: expected a JSON object whose Type is one of {', '.join(TYPES)}")
    return body


def verify(request: Incoming, endpoint: Endpoint) -> None:
    check(_message(request), endpoint)


def check(message: dict[str, Any], endpoint: Endpoint) -> None:
    """Return when SNS signed this message for a topic this endpoint takes; raise otherwise."""
    settings: Settings = endpoint.settings
    topic = message.get("TopicArn")
    if topic not in settings.topics:
        raise Unauthorized(403, "topic_not_allowed", f"this endpoint does not take messages of topic {topic!r}")
    signature = message.get("Signature")
    cert_url = message.get("SigningCertURL")
    if not isinstance(signature, str) or not signature or not isinstance(cert_url, str) or not cert_url:
        raise Unauthorized(401, "missing_signature", "an SNS message carries Signature and SigningCertURL")
    algorithm = HASHES.get(str(message.get("SignatureVersion")))
    if algorithm is None:
        raise Unauthorized(403, "bad_signature", "SignatureVersion must be 1 or 2")
    if not allowed_url(cert_url, settings) or not CERT_PATH.fullmatch(urlsplit(cert_url).path):
        raise Unauthorized(
            403,
            "bad_certificate_url",
            "SigningCertURL is not an SNS certificate on an SNS host (nor one of cert_hosts)",
        )
    try:
        signed = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise Unauthorized(403, "bad_signature", "Signature is not base64") from None
    string_to_sign = canonical(message)
    certificate = CERTIFICATES.get(cert_url, settings.fetch_timeout)
    now = dt.datetime.fromtimestamp(endpoint.clock(), dt.UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise Unauthorized(403, "bad_certificate", "the signing certificate is not valid now")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise Unauthorized(403, "bad_certificate", "the signing certificate's key is not RSA")
    try:
        key.verify(signed, string_to_sign, padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise Unauthorized(403, "bad_signature", "the signature does not match the message") from None


class _Confirmed:
    """SubscriptionConfirmation MessageIds already confirmed here, so a redelivery is not confirmed again."""

    def __init__(self, size: int = 256) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def add(self, message_id: str) -> bool:
        with self._lock:
            if message_id in self._ids:
                return False
            self._ids[message_id] = None
            while len(self._ids) > self._size:
                self._ids.popitem(last=False)
            return True

    def discard(self, message_id: str) -> None:
        with self._lock:
            self._ids.pop(message_id, None)


CONFIRMED = _Confirmed()


def handshake(request: Incoming, endpoint: Endpoint) -> Reply | None:
    """A SubscriptionConfirmation: verified, confirmed by visiting its SubscribeURL, answered, not stored."""
    if b"SubscriptionConfirmation" not in request.body:
        return None
    message = _message(request)
    if message["Type"] != "SubscriptionConfirmation":
        return None
    check(message, endpoint)
    settings: Settings = endpoint.settings
    url = message["SubscribeURL"]  # a string: `check` signed it
    if not allowed_url(url, settings):
        raise Unauthorized(403, "bad_subscribe_url", "SubscribeURL is not on an SNS host (nor one of cert_hosts)")
    topic = message["TopicArn"]
    message_id = message["MessageId"]
    if CONFIRMED.add(message_id):
        try:
            _confirm(url, settings.fetch_timeout)
        except Refused:
            CONFIRMED.discard(message_id)
            raise
        log.info("sns_subscription_confirmed", endpoint=endpoint.name, topic=topic)
    return Reply(200, {"ok": True, "confirmed": topic})


def _confirm(url: str, timeout: float) -> None:
    try:
        answer = httpx.get(url, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        problem = type(exc).__name__
    else:
        if answer.is_success:
            return
        problem = f"SNS answered {answer.status_code}"
    raise Refused(503, "confirm_failed", f"the subscription could not be confirmed ({problem}); try again")


def parse(request: Incoming, endpoint: Endpoint) -> list[Event]:
    message = _message(request)
    kind = message["Type"]
    if kind == "SubscriptionConfirmation":
        raise BadPayload("a SubscriptionConfirmation is confirmed when SNS sends it, not stored as an event")
    kept = {name: value for name, value in message.items() if name not in CAPABILITIES}
    topic = text(message.get("TopicArn"))
    delivery_key = text(message.get("MessageId")) or body_digest(request.body)
    identifiers = {"sns_topic_arn": topic} if topic else {}
    if kind == "UnsubscribeConfirmation":
        return [
            endpoint.event(
                kind="sns.unsubscribed",
                delivery_key=delivery_key,
                title=f"Unsubscribed from {topic}" if topic else "Unsubscribed",
                description=text(message.get("Message")),
                occurred_at=text(message.get("Timestamp")),
                identifiers=identifiers,
                raw=kept,
            )
        ]
    alarm = _alarm(message.get("Message"))
    if alarm is not None:
        return [_alarm_event(alarm, kept, delivery_key, identifiers, endpoint)]
    return [
        endpoint.event(
            kind="sns.notification",
            delivery_key=delivery_key,
            title=text(message.get("Subject")),
            description=text(message.get("Message")),
            occurred_at=text(message.get("Timestamp")),
            identifiers=identifiers,
            raw=kept,
        )
    ]


def _alarm(body: Any) -> dict[str, Any] | None:
    """A CloudWatch alarm's state change, if that is what the Message holds."""
    if not isinstance(body, str) or "AlarmName" not in body:
        return None
    try:
        alarm = obj(decode_json(body, "the Message"))
    except BadPayload:
        return None
    return alarm if text(alarm.get("AlarmName")) and text(alarm.get("NewStateValue")) in STATES else None


def _alarm_event(
    alarm: dict[str, Any], message: dict[str, Any], delivery_key: str, identifiers: dict[str, str], endpoint: Endpoint
) -> Event:
    """`message` is the SNS message as it is kept (without its CAPABILITIES)."""
    state = str(text(alarm.get("NewStateValue")))
    kind, severity = STATES[state]
    name = str(text(alarm.get("AlarmName")))
    arn = text(alarm.get("AlarmArn"))
    account = text(alarm.get("AWSAccountId"))
    arn_parts = arn.split(":") if arn else []
    region = (arn_parts[3] if len(arn_parts) > 5 and arn_parts[3] else None) or text(alarm.get("Region"))
    trigger = obj(alarm.get("Trigger"))
    alarm_id = arn or f"{account or ''}:{region or ''}:{name}"
    found = {
        "aws_account_id": account,
        "aws_region": region,
        "cloudwatch_alarm_name": name,
        "cloudwatch_alarm_arn": arn,
        "cloudwatch_namespace": text(trigger.get("Namespace")),
        "cloudwatch_metric": text(trigger.get("MetricName")),
    }
    return endpoint.event(
        kind=kind,
        delivery_key=delivery_key,
        subject=Subject("cloudwatch", "alarm", alarm_id),
        title=name,
        description=text(alarm.get("NewStateReason")),
        status=state.lower(),
        severity=severity,
        occurred_at=text(alarm.get("StateChangeTime")) or text(message.get("Timestamp")),
        dedup_key=alarm_id,
        identifiers={**identifiers, **{k: v for k, v in found.items() if v}},
        raw=message,
    )


SOURCE = Source(name="sns", settings=Settings, parse=parse, verify=verify, handshake=handshake)
