"""Any JSON sender without a module of its own (Coralogix, a home-grown script).

Authentication, one or both of:
- `token`: a shared token as `?token=`, in `token_header` (default `X-Webhook-Token`), or as
  `Authorization: Bearer …`;
- `hmac`: a signature of the raw body in a header, with the header name, algorithm (`sha256`,
  `sha1`, `sha512`), encoding (`hex`, `base64`) and prefix (`sha256=`) the sender uses.
Missing → 401, wrong → 403.

The event's fields come from the payload through JMESPath expressions (jmespath.org) in
`fields`; an expression that does not compile is an error at `alertbridge check`. An
expression that finds nothing leaves the field empty.

```yaml
  - name: coralogix
    source: generic
    path: /webhooks/coralogix
    token: ${CORALOGIX_TOKEN}
    fields:
      kind: "'coralogix.alert'"            # a JMESPath literal, or any expression
      delivery_key: "uuid"
      title: "name"
      severity: "priority"
      service: "fields[?key=='service'].value | [0]"
      dedup_key: "alert_id"
      identifiers:
        coralogix_team_name: "team_name"
```

| event field  | from the payload                                                                  |
| ------------ | --------------------------------------------------------------------------------- |
| kind         | `fields.kind`, else `generic`                                                     |
| delivery_key | `fields.delivery_key`, else the `delivery_header` header, else a digest of the body |
| subject      | `{<endpoint name>, fields.subject_type or alert, fields.subject_id}`             |
| title, description, priority, urgency, severity, status, url, actor, note, occurred_at, dedup_key | the expression of the same name in `fields` |
| service      | `{id: fields.service_id, name: fields.service}`; `service` is also an identifier |
| teams, assignees, tags | the expression of the same name (a list or one value)                   |
| identifiers  | `fields.identifiers.<name>` for each name given, plus `service`                   |
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Literal

import jmespath
import jmespath.exceptions
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator

from alertbridge.events import Service, Subject
from alertbridge.security import any_secret, same_secret, secret_values
from alertbridge.sources.base import (
    Claim,
    Endpoint,
    Event,
    Incoming,
    Source,
    Unauthorized,
    body_digest,
    decode_json,
    text,
)

SCALARS = (
    "kind",
    "delivery_key",
    "title",
    "description",
    "priority",
    "urgency",
    "severity",
    "status",
    "url",
    "actor",
    "note",
    "occurred_at",
    "dedup_key",
    "service",
    "service_id",
    "subject_id",
    "subject_type",
)
LISTS = ("teams", "assignees", "tags")


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: SecretStr | list[SecretStr]
    header: str = "x-signature"
    algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""  # e.g. "sha256=" as GitHub-style senders put before the digest

    def secrets(self) -> list[str]:
        return secret_values(self.secret)


class Fields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str | None = None
    delivery_key: str | None = None
    title: str | None = None
    description: str | None = None
    priority: str | None = None
    urgency: str | None = None
    severity: str | None = None
    status: str | None = None
    url: str | None = None
    actor: str | None = None
    note: str | None = None
    occurred_at: str | None = None
    dedup_key: str | None = None
    service: str | None = None
    service_id: str | None = None
    subject_id: str | None = None
    subject_type: str | None = None
    teams: str | None = None
    assignees: str | None = None
    tags: str | None = None
    identifiers: dict[str, str] = {}

    @field_validator(*SCALARS, *LISTS)
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            _compile(value)
        return value

    @field_validator("identifiers")
    @classmethod
    def _identifiers_compile(cls, value: dict[str, str]) -> dict[str, str]:
        for name, expression in value.items():
            try:
                _compile(expression)
            except ValueError as exc:
                raise ValueError(f"identifiers.{name}: {exc}") from None
        return value


def _compile(expression: str) -> Any:
    try:
        return jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as exc:
        raise ValueError(f"{expression!r} is not a JMESPath expression: {exc}") from None


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr | list[SecretStr] | None = None
    token_header: str = "x-webhook-token"
    hmac: Signature | None = None
    delivery_header: str | None = None  # a header that carries the sender's delivery id, if any
    fields: Fields = Fields()

    @model_validator(mode="after")
    def _credential(self) -> Settings:
        if self.token is None and self.hmac is None:
            raise ValueError("a generic endpoint needs `token` or `hmac` (or both): it must not be open to anyone")
        return self

    def tokens(self) -> list[str]:
        return secret_values(self.token)


def verify(request: Incoming, endpoint: Endpoint) -> None:
    settings: Settings = endpoint.settings
    if settings.token is not None:
        given = request.query.get("token") or request.headers.get(settings.token_header.lower())
        auth = request.headers.get("authorization", "")
        if given is None and auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        if given is None:
            raise Unauthorized(401, "missing_token", f"a token is required: ?token=… or {settings.token_header}")
        if not any_secret(given, settings.tokens()):
            raise Unauthorized(403, "bad_token", "invalid token")
    if settings.hmac is not None:
        signature = settings.hmac
        header = request.headers.get(signature.header.lower())
        if not header:
            raise Unauthorized(401, "missing_signature", f"{signature.header} is required")
        matched = False
        for secret in signature.secrets():
            digest = hmac.new(secret.encode(), request.body, getattr(hashlib, signature.algorithm)).digest()
            encoded = digest.hex() if signature.encoding == "hex" else base64.b64encode(digest).decode()
            matched |= same_secret(header.strip(), signature.prefix + encoded)
        if not matched:
            raise Unauthorized(403, "bad_signature", "the signature does not match the body")


def parse(request: Incoming, endpoint: Endpoint) -> list[Event]:
    body = decode_json(request.body)
    settings: Settings = endpoint.settings
    spec = settings.fields
    found = {name: _scalar(getattr(spec, name), body) for name in SCALARS}
    lists = {name: _list(getattr(spec, name), body) for name in LISTS}
    identifiers = {name: value for name, expr in spec.identifiers.items() if (value := _scalar(expr, body))}
    if found["service"]:
        identifiers.setdefault("service", found["service"])
    header_key = request.headers.get(settings.delivery_header.lower()) if settings.delivery_header else None
    service = (
        Service(id=found["service_id"], name=found["service"]) if found["service_id"] or found["service"] else None
    )
    subject_id = found["subject_id"]
    return [
        endpoint.event(
            kind=found["kind"] or "generic",
            delivery_key=found["delivery_key"] or header_key or body_digest(request.body),
            subject=Subject(endpoint.name, found["subject_type"] or "alert", subject_id) if subject_id else None,
            title=found["title"],
            description=found["description"],
            priority=found["priority"],
            urgency=found["urgency"],
            severity=found["severity"],
            status=found["status"],
            url=found["url"],
            actor=found["actor"],
            note=found["note"],
            occurred_at=found["occurred_at"],
            dedup_key=found["dedup_key"],
            service=service,
            teams=lists["teams"],
            assignees=lists["assignees"],
            tags=lists["tags"],
            identifiers=identifiers,
            raw=body,
        )
    ]


def _scalar(expression: str | None, body: Any) -> str | None:
    if expression is None:
        return None
    value = _compile(expression).search(body)
    if isinstance(value, list):
        value = value[0] if value else None
    return text(value)


def _list(expression: str | None, body: Any) -> tuple[str, ...]:
    if expression is None:
        return ()
    value = _compile(expression).search(body)
    items = value if isinstance(value, list) else [value]
    return tuple(t for t in (text(item) for item in items) if t)


SOURCE = Source(
    name="generic",
    settings=Settings,
    parse=parse,
    verify=verify,
    # A Coralogix webhook arrives here (the docstring's example), its team name mapped by the
    # endpoint's `identifiers`; `service` is the generic field of the same name.
    claims=(Claim("coralogix_team_names", "coralogix_team_name", 50), Claim("services", "service", 70)),
)
