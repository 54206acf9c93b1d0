"""Grafana Alerting's webhook contact point: Alertmanager's notification shape, one event per alert.

Authentication, one or more of, each compared in constant time:
- `hmac`: Grafana's HMAC signature (the contact point's "HMAC Signature" settings): the hex
  HMAC-SHA256 of the raw body, with the shared `secret`, in `header` (default
  `X-Grafana-Alerting-Signature`). With a `timestamp_header`, Grafana puts the Unix time in it and
  signs `timestamp + ":" + body`; a timestamp further than `tolerance` seconds (default 300) from
  now is refused, so a captured request cannot be replayed later;
- `token`: the contact point's "Authorization Header" (`scheme`, default `Bearer`, and credentials),
  or a token in a header of its own (`token_header`, one of its "Extra Headers");
- `username`/`password`: its basic auth.
Missing → 401, wrong or stale → 403.

The alerts are read as Alertmanager's are (`sources/alertmanager.py`): identity the fingerprint,
delivery key status, fingerprint and `startsAt`, so Grafana's repeated group notifications store
each alert state once.

| event field  | from the payload                                                                  |
| ------------ | --------------------------------------------------------------------------------- |
| kind         | the alert's `status`: `grafana.firing` or `grafana.resolved` (the group's `status` when the alert has none) |
| subject      | `{grafana, alert, fingerprint}`                                                   |
| dedup_key    | the alert's `fingerprint`, else the fingerprint of its `labels`                   |
| delivery_key | status, fingerprint and `startsAt`                                                |
| title        | `annotations.summary`, else `labels.alertname`                                    |
| description  | `annotations.description`                                                         |
| severity     | `labels.severity`, normalised as for Alertmanager                                 |
| status       | the alert's `status` (`firing`, `resolved`)                                       |
| service      | `{name: labels.service, else labels.job}`                                         |
| url          | the alert's `panelURL`, else `dashboardURL`, else `generatorURL` (the rule)       |
| occurred_at  | `startsAt` (resolved: `endsAt`)                                                   |
| labels       | the alert's `labels` (`grafana_folder` among them)                                |
| identifiers  | `alertname`, `alertmanager_fingerprint`, `alertmanager_receiver`, `service`, `grafana_org_id` (`orgId`), `grafana_folder` |
| raw          | the group's fields without `alerts` (`orgId`, `title`, `state`, `message`, `externalURL` …), and this alert as `alert` (`values`, `valueString`, `silenceURL`, `imageURL` …) |
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from alertbridge.security import same_secret, secret_values
from alertbridge.sources.alertmanager import Credentials, check_credentials, parse_group
from alertbridge.sources.base import Endpoint, Event, Incoming, Source, Unauthorized, obj, text


class Signature(BaseModel):
    """The contact point's "HMAC Signature" settings, as Grafana names them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: SecretStr | list[SecretStr]  # a list while rotating
    header: str = "X-Grafana-Alerting-Signature"
    timestamp_header: str | None = None  # Grafana has no default: set the same name in both
    tolerance: float = Field(300.0, gt=0)  # seconds a timestamp may be away from now

    def secrets(self) -> list[str]:
        return secret_values(self.secret, skip_empty=True)


class Settings(Credentials):
    hmac: Signature | None = None

    @model_validator(mode="after")
    def _some_credential(self) -> Settings:
        if not self.any_credential() and self.hmac is None:
            raise ValueError(
                "a Grafana endpoint needs a credential: `hmac` (the contact point's HMAC signature),"
                " `token` (its Authorization header), or `username` and `password` (its basic auth)"
            )
        return self


def verify(request: Incoming, endpoint: Endpoint) -> None:
    settings: Settings = endpoint.settings
    if settings.any_credential():
        check_credentials(request, settings, "contact point's authorization")
    if settings.hmac is not None:
        _check_signature(request, settings.hmac, endpoint.clock())


def _check_signature(request: Incoming, signature: Signature, now: float) -> None:
    given = request.headers.get(signature.header.lower())
    if not given:
        raise Unauthorized(401, "missing_signature", f"the {signature.header} header is required (HMAC signature)")
    signed = request.body
    if signature.timestamp_header:
        stamp = request.headers.get(signature.timestamp_header.lower())
        if not stamp:
            raise Unauthorized(401, "missing_timestamp", f"the {signature.timestamp_header} header is required")
        if not (stamp.strip().isascii() and stamp.strip().isdigit() and len(stamp.strip()) <= 12):
            raise Unauthorized(403, "bad_timestamp", f"{signature.timestamp_header} is not a Unix time in seconds")
        if abs(now - int(stamp)) > signature.tolerance:
            raise Unauthorized(
                403,
                "stale_timestamp",
                f"{signature.timestamp_header} is more than {signature.tolerance:g} s from now (a replay, or a clock off)",
            )
        signed = stamp.strip().encode() + b":" + request.body
    matched = False
    for secret in signature.secrets():
        matched |= same_secret(given.strip(), hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest())
    if not matched:
        raise Unauthorized(403, "bad_signature", "the signature does not match the body")


def _grafana_fields(group: dict[str, Any], alert: dict[str, Any]) -> dict[str, Any]:
    """What Grafana adds to Alertmanager's shape: its organisation, folder, and links to the panel."""
    identifiers = {
        key: value
        for key, value in (
            ("grafana_org_id", text(group.get("orgId"))),
            ("grafana_folder", text(obj(alert.get("labels")).get("grafana_folder"))),
        )
        if value
    }
    url = text(alert.get("panelURL")) or text(alert.get("dashboardURL")) or text(alert.get("generatorURL"))
    return {"identifiers": identifiers, "url": url}


def parse(request: Incoming, endpoint: Endpoint) -> list[Event]:
    return parse_group(request, endpoint, _grafana_fields)


SOURCE = Source(
    name="grafana",
    settings=Settings,
    parse=parse,
    verify=verify,
    episodes={"grafana.firing": "restart", "grafana.resolved": "close"},  # as Alertmanager's
)
