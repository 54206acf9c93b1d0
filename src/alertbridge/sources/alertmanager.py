"""Prometheus Alertmanager's webhook receiver (`webhook_configs`, payload version 4): one event per alert.

Alertmanager signs nothing. The endpoint takes the credentials its `http_config` sends, compared in
constant time: a token as `Authorization: Bearer …` (`authorization.credentials`; another
`authorization.type` is set as `scheme`), basic auth (`basic_auth.username`/`password`), or a token
in a header of its own (`token_header`, for releases that send `http_headers`). Missing → 401,
wrong → 403.

A notification is a group: every alert of it, firing and resolved, each time the group is sent
(`group_interval`, `repeat_interval`, and retries after a failure). Each alert becomes an event of
its own, identified by its fingerprint (a digest of its labels, computed as Alertmanager does when a
sender gives none), and its delivery key is its status, fingerprint and `startsAt`: an alert already
stored in the same state is a redelivery, stored once, whichever notification carries it again.

| event field  | from the payload                                                                  |
| ------------ | --------------------------------------------------------------------------------- |
| kind         | the alert's `status`: `alertmanager.firing` or `alertmanager.resolved` (the group's `status` when the alert has none) |
| subject      | `{alertmanager, alert, fingerprint}`                                              |
| dedup_key    | the alert's `fingerprint`, else the fingerprint of its `labels` (as Alertmanager computes it) |
| delivery_key | status, fingerprint and `startsAt`                                                |
| title        | `annotations.summary`, else `labels.alertname`                                    |
| description  | `annotations.description`                                                         |
| severity     | `labels.severity`: critical, error, warning or info (common synonyms mapped: page → critical, warn → warning …); another value stays in `labels.severity` only |
| status       | the alert's `status` (`firing`, `resolved`)                                       |
| service      | `{name: labels.service, else labels.job}`                                         |
| url          | `generatorURL`                                                                    |
| occurred_at  | `startsAt` (resolved: `endsAt`)                                                   |
| labels       | the alert's `labels` (a route matches `labels.severity: critical`); an endpoint's own `labels:` are added |
| identifiers  | `alertname`, `alertmanager_fingerprint`, `alertmanager_receiver`, `service`       |
| raw          | the group's fields without `alerts`, and this alert as `alert`: `{{ event.raw.alert.annotations.runbook_url }}`, `{{ event.raw.commonLabels.cluster }}`, `{{ event.raw.externalURL }}` |
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from alertbridge.events import Service, Subject
from alertbridge.security import any_secret, same_secret, secret_values
from alertbridge.sources.base import (
    BadPayload,
    Endpoint,
    Event,
    Incoming,
    Source,
    Unauthorized,
    body_digest,
    decode_json,
    obj,
    text,
)

STATUSES = ("firing", "resolved")
# Severity label values seen in the field (Prometheus rules, kube-prometheus, Grafana) → the event's.
SEVERITY = {
    **dict.fromkeys(("critical", "crit", "page", "fatal", "emergency", "emerg", "alert", "p1", "high"), "critical"),
    **dict.fromkeys(("error", "err", "major", "p2"), "error"),
    **dict.fromkeys(("warning", "warn", "minor", "medium", "p3"), "warning"),
    **dict.fromkeys(("info", "informational", "notice", "low", "none", "debug", "p4", "p5"), "info"),
}
_NEVER = "0001-01-01T00:00:00Z"  # Go's zero time: Alertmanager's `endsAt` of an alert still firing


class Credentials(BaseModel):
    """What Alertmanager's (and Grafana's) `http_config` can send: a token in `Authorization`, basic
    auth, or a token in a header of its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr | list[SecretStr] | None = None  # a list while rotating
    scheme: str = "Bearer"  # `authorization.type` in Alertmanager, "Authentication Header Scheme" in Grafana
    token_header: str | None = None  # a custom header that carries the token instead
    username: str | None = None
    password: SecretStr | None = None

    @model_validator(mode="after")
    def _pairs(self) -> Credentials:
        if (self.username is None) != (self.password is None):
            raise ValueError("basic auth needs both `username` and `password`")
        return self

    def tokens(self) -> list[str]:
        """The configured tokens; an empty one (an unset `${VAR:-}`) is no token at all."""
        return secret_values(self.token, skip_empty=True)

    def any_credential(self) -> bool:
        return bool(self.tokens()) or self.password is not None


class Settings(Credentials):
    @model_validator(mode="after")
    def _some_credential(self) -> Settings:
        if not self.any_credential():
            raise ValueError(
                "an Alertmanager endpoint needs a credential: `token` (sent as `authorization` in the"
                " receiver's http_config), or `username` and `password` (its `basic_auth`)"
            )
        return self


def check_credentials(request: Incoming, settings: Credentials, sender: str) -> None:
    """Returns when the request carries one of the configured credentials; Unauthorized otherwise
    (401 none given, 403 wrong). `sender` names the sender in the 401's advice."""
    auth = request.headers.get("authorization", "")
    scheme, _, given_auth = auth.partition(" ")
    if settings.password is not None and scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(given_auth.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise Unauthorized(403, "bad_credentials", "unreadable basic auth") from None
        ok_user = same_secret(user, settings.username or "")
        ok_password = same_secret(password, settings.password.get_secret_value())
        if not (ok_user and ok_password):
            raise Unauthorized(403, "bad_credentials", "wrong user name or password")
        return
    given: str | None = None
    if settings.tokens():
        if settings.token_header:
            given = request.headers.get(settings.token_header.lower())
        if given is None and auth and scheme.lower() == settings.scheme.lower():
            given = given_auth.strip()
    if given is None:
        raise Unauthorized(401, "missing_token", _what_to_send(settings, sender))
    if not any_secret(given, settings.tokens()):
        raise Unauthorized(403, "bad_token", "invalid token")


def _what_to_send(settings: Credentials, sender: str) -> str:
    """The 401's message: the credentials this endpoint takes (header names, never a secret)."""
    ways = []
    if settings.tokens():
        way = f"`Authorization: {settings.scheme} <token>`"
        if settings.token_header:
            way += f" or a `{settings.token_header}` header"
        ways.append(way)
    if settings.password is not None:
        ways.append("basic auth with this endpoint's user name and password")
    return f"no credential: set the {sender} to send " + ", or ".join(ways)


def verify(request: Incoming, endpoint: Endpoint) -> None:
    check_credentials(request, endpoint.settings, "receiver's http_config")


def fingerprint(labels: Mapping[str, str]) -> str:
    """The alert's identity as Alertmanager computes it (prometheus/common `LabelSet.Fingerprint`):
    FNV-1a 64 over the sorted label names and values, each followed by a 0xff byte; 16 hex digits."""
    value = 0xCBF29CE484222325
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode() + b"\xff":
                value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{value:016x}"


def severity_of(value: str | None) -> str | None:
    return SEVERITY.get(value.strip().casefold()) if value else None


# A source's own fields of an alert (Grafana's values, panel and silence links …) → what it adds to
# the event: extra identifiers under `identifiers`, and any other event field by name.
Extra = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]


def parse_group(request: Incoming, endpoint: Endpoint, extra: Extra | None = None) -> list[Event]:
    """One event per alert of an Alertmanager-shaped notification (Alertmanager's own, Grafana's),
    kinds and subjects named after the endpoint's source. A body that is not one is refused
    (BadPayload), naming what is wrong."""
    body = decode_json(request.body)
    if not isinstance(body, dict):
        raise BadPayload("the body must be a JSON object (an Alertmanager notification)")
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise BadPayload("not an Alertmanager notification: `alerts` must be a list of alerts")
    if not alerts:
        raise BadPayload("the notification has no alerts")
    group = {key: value for key, value in body.items() if key != "alerts"}
    made: dict[str, Event] = {}  # by delivery key: an alert listed twice is one event
    for index, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            raise BadPayload(f"alerts[{index}] must be an object")
        event = _event(endpoint, group, index, alert, extra, request.body)
        made.setdefault(event.delivery_key, event)
    return list(made.values())


def _event(
    endpoint: Endpoint,
    group: dict[str, Any],
    index: int,
    alert: dict[str, Any],
    extra: Extra | None,
    body: bytes,
) -> Event:
    status = (text(alert.get("status")) or text(group.get("status")) or "").lower()
    if status not in STATUSES:
        raise BadPayload(f"alerts[{index}].status must be `firing` or `resolved`")
    # Label values as sent (the fingerprint is of them exactly); an empty one is no label, as in Alertmanager.
    labels = {
        name: value
        for name, given in obj(alert.get("labels")).items()
        if (value := given if isinstance(given, str) else text(given))
    }
    annotations = obj(alert.get("annotations"))
    identity = text(alert.get("fingerprint")) or fingerprint(labels)
    starts = text(alert.get("startsAt"))
    ends = text(alert.get("endsAt"))
    service = labels.get("service") or labels.get("job")
    identifiers = {
        key: value
        for key, value in (
            ("alertname", labels.get("alertname")),
            ("alertmanager_fingerprint", identity),
            ("alertmanager_receiver", text(group.get("receiver"))),
            ("service", service),
        )
        if value
    }
    fields: dict[str, Any] = {
        "subject": Subject(endpoint.source.name, "alert", identity),
        "title": text(annotations.get("summary")) or labels.get("alertname"),
        "description": text(annotations.get("description")),
        "severity": severity_of(labels.get("severity")),
        "status": status,
        "service": Service(name=service) if service else None,
        "url": text(alert.get("generatorURL")),
        "occurred_at": ends if status == "resolved" and ends and ends != _NEVER else starts,
        "dedup_key": identity,
        "labels": labels,
        "raw": {**group, "alert": alert},
    }
    if extra is not None:
        added = extra(group, alert)
        identifiers.update(added.pop("identifiers", {}))
        fields.update(added)
    return endpoint.event(
        kind=f"{endpoint.source.name}.{status}",
        delivery_key=f"{status}:{identity}:{starts or body_digest(body)}",
        identifiers=identifiers,
        **fields,
    )


def parse(request: Incoming, endpoint: Endpoint) -> list[Event]:
    return parse_group(request, endpoint)


SOURCE = Source(
    name="alertmanager",
    settings=Settings,
    parse=parse,
    verify=verify,
    # Each firing of an alert is sent once (its delivery key carries startsAt; repeats are redeliveries):
    # a new firing while the episode is open means its resolve was lost, and pages again.
    episodes={"alertmanager.firing": "restart", "alertmanager.resolved": "close"},
)
