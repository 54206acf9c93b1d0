"""Any JSON sender without a module of its own (Coralogix, Datadog, Sentry, a home-grown script).

Authentication, one or both of:
- `token`: a shared token as `?token=`, in `token_header` (default `X-Webhook-Token`), or as
  `Authorization: Bearer …`;
- `hmac`: a signature of the raw body in a header, with the header name, algorithm (`sha256`,
  `sha1`, `sha512`), encoding (`hex`, `base64`) and prefix (`sha256=`) the sender uses; for senders
  that sign a timestamp with the body, where the timestamp comes from (`timestamp_header`, or
  `timestamp_key` in a `k=v,…` signature header with the signatures under `signature_key`), the
  string signed (`signed`, e.g. `v0:{timestamp}:{body}`) and how old or new it may be (`tolerance`,
  5 minutes by default, on the endpoint's clock).
Missing → 401, wrong, stale or from the future → 403.

The event's fields come from the payload through JMESPath expressions (jmespath.org) in
`fields`; an expression that does not compile, or calls a function that does not exist, is an
error at `alertbridge check`. An expression that finds nothing leaves the field empty.

With `each` (a JMESPath expression that finds an array), every element of the array is one event:
`fields` are then read from the element, and `payload()` gives the whole body (`payload().externalURL`).
An `each` that finds no array is a 400; an empty array stores nothing. Each element's delivery key is
`fields.delivery_key` read from it, else the delivery's key (the `delivery_header` header, else a digest
of the body) with `#` and the element's index; a key several elements of one body share gets the index
too. Its `raw` is the element.

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
| delivery_key | `fields.delivery_key`, else the `delivery_header` header, else a digest of the body (with `each`: per element, as above) |
| subject      | `{<endpoint name>, fields.subject_type or alert, fields.subject_id}`             |
| title, description, priority, urgency, severity, status, url, actor, note, occurred_at, dedup_key | the expression of the same name in `fields` |
| service      | `{id: fields.service_id, name: fields.service}`; `service` is also an identifier |
| teams, assignees, tags | the expression of the same name (a list or one value)                   |
| identifiers  | `fields.identifiers.<name>` for each name given, plus `service`                   |
| raw          | the payload; with `each`, the element                                             |
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Iterator
from functools import lru_cache
from typing import Any, Literal

import jmespath
import jmespath.exceptions
import jmespath.functions
import msgspec
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator

from alertbridge.config import parse_duration
from alertbridge.events import Service, Subject
from alertbridge.security import any_secret, same_secret, secret_values
from alertbridge.sources.base import (
    BadPayload,
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
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: SecretStr | list[SecretStr]
    header: str = "x-signature"
    algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""  # e.g. "sha256=" as GitHub-style senders put before the digest
    # Senders that sign a timestamp with the body, against replays: the timestamp in a header of its
    # own (Slack's X-Slack-Request-Timestamp), or as `timestamp_key=` in the signature header when that
    # holds `k=v` pairs (Stripe's `t=…,v1=…`: timestamp_key t, signature_key v1).
    timestamp_header: str | None = None
    timestamp_key: str | None = None
    signature_key: str | None = None  # the header is `k=v,…` pairs; every signature under this key counts
    signed: str | None = None  # what is signed: `{body}`, or with a timestamp `{timestamp}.{body}`
    tolerance: float = 300.0  # how far the timestamp may be from the endpoint's clock, either way

    @field_validator("tolerance", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @model_validator(mode="after")
    def _consistent(self) -> Signature:
        if self.timestamp_header and self.timestamp_key:
            raise ValueError("give the timestamp's place once: `timestamp_header` or `timestamp_key`, not both")
        if self.timestamp_key and not self.signature_key:
            raise ValueError(
                "`timestamp_key` reads a `k=v,…` signature header: say under which key the signatures are"
                " (`signature_key`, e.g. v1)"
            )
        template = self.template()
        names = _PLACEHOLDER.findall(template)
        unknown = sorted({n for n in names if n not in ("body", "timestamp")})
        if unknown:
            raise ValueError(f"`signed` may hold {{body}} and {{timestamp}} only, not {{{unknown[0]}}}")
        if names.count("body") != 1:
            raise ValueError("`signed` must hold {body} exactly once")
        if self.timestamped() and "timestamp" not in names:
            raise ValueError("the timestamp must be part of what is signed: put {timestamp} in `signed`")
        if not self.timestamped() and "timestamp" in names:
            raise ValueError(
                "`signed` holds {timestamp}: say where it comes from (`timestamp_header` or `timestamp_key`)"
            )
        return self

    def timestamped(self) -> bool:
        return bool(self.timestamp_header or self.timestamp_key)

    def template(self) -> str:
        if self.signed is not None:
            return self.signed
        return "{timestamp}.{body}" if self.timestamped() else "{body}"

    def message(self, body: bytes, timestamp: str | None) -> bytes:
        """The bytes the sender signed: the template with the raw body (never re-encoded) in its place."""
        before, _, after = self.template().partition("{body}")
        stamp = timestamp or ""
        return before.replace("{timestamp}", stamp).encode() + body + after.replace("{timestamp}", stamp).encode()

    def secrets(self) -> list[str]:
        return secret_values(self.secret)


class _PayloadFunctions(jmespath.functions.Functions):
    """The JMESPath functions plus `payload()`: the whole body, for fields read from an `each` element."""

    root: Any = None

    @jmespath.functions.signature()
    def _func_payload(self) -> Any:
        return self.root


_FUNCTIONS = _PayloadFunctions.FUNCTION_TABLE


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


@lru_cache(maxsize=1024)  # each request reads every field: compile and check each expression once
def _compile(expression: str) -> Any:
    """The compiled expression, or ValueError saying why not: a syntax error, or a function that does
    not exist or takes other arguments (JMESPath itself finds those only when the expression runs)."""
    try:
        compiled = jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as exc:
        raise ValueError(f"{expression!r} is not a JMESPath expression: {exc}") from None
    for name, given in _calls(compiled.parsed):
        spec = _FUNCTIONS.get(name)
        if spec is None:
            raise ValueError(f"{expression!r} calls {name}(), which JMESPath does not have")
        wanted = spec["signature"]
        variadic = bool(wanted) and wanted[-1].get("variadic")
        if given < len(wanted) if variadic else given != len(wanted):
            count = f"at least {len(wanted)}" if variadic else str(len(wanted))
            raise ValueError(f"{expression!r}: {name}() takes {count} argument(s), not {given}")
    return compiled


def _calls(node: Any) -> Iterator[tuple[str, int]]:
    """Every function call in a parsed expression: its name and how many arguments it is given."""
    if isinstance(node, dict):
        if node.get("type") == "function_expression":
            yield node["value"], len(node["children"])
        for child in node.get("children", ()):
            yield from _calls(child)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr | list[SecretStr] | None = None
    token_header: str = "x-webhook-token"
    hmac: Signature | None = None
    delivery_header: str | None = None  # a header that carries the sender's delivery id, if any
    each: str | None = None  # one event per element of the array this finds (e.g. `alerts`)
    fields: Fields = Fields()

    @field_validator("each")
    @classmethod
    def _each_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            _compile(value)
        return value

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
        _verify_signature(request, settings.hmac, endpoint)


def _verify_signature(request: Incoming, signature: Signature, endpoint: Endpoint) -> None:
    """The body's signature, then (for a signed timestamp) its age: a genuine request replayed too late
    is told apart from a forged one."""
    header = request.headers.get(signature.header.lower(), "").strip()
    if not header:
        raise Unauthorized(401, "missing_signature", f"{signature.header} is required")
    pairs = _pairs(header) if signature.signature_key else {}
    given = pairs.get(signature.signature_key.lower(), []) if signature.signature_key else [header]
    if not given:
        raise Unauthorized(401, "missing_signature", f"{signature.header} has no {signature.signature_key}= signature")
    timestamp = None
    if signature.timestamp_header:
        timestamp = request.headers.get(signature.timestamp_header.lower(), "").strip()
        if not timestamp:
            raise Unauthorized(401, "missing_timestamp", f"{signature.timestamp_header} is required")
    elif signature.timestamp_key:
        timestamp = next(iter(pairs.get(signature.timestamp_key.lower(), [])), "")
        if not timestamp:
            raise Unauthorized(
                401, "missing_timestamp", f"{signature.header} has no {signature.timestamp_key}= timestamp"
            )
    message = signature.message(request.body, timestamp)
    matched = False
    for secret in signature.secrets():
        digest = hmac.new(secret.encode(), message, getattr(hashlib, signature.algorithm)).digest()
        encoded = signature.prefix + (
            digest.hex() if signature.encoding == "hex" else base64.b64encode(digest).decode()
        )
        for candidate in given:
            matched |= same_secret(candidate, encoded)
    if not matched:
        raise Unauthorized(403, "bad_signature", "the signature does not match the body")
    if timestamp is not None:
        _fresh(timestamp, signature.tolerance, endpoint.clock())


def _pairs(header: str) -> dict[str, list[str]]:
    """`t=1,v1=a,v1=b` as {"t": ["1"], "v1": ["a", "b"]} (keys case-folded)."""
    pairs: dict[str, list[str]] = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            pairs.setdefault(key.strip().lower(), []).append(value.strip())
    return pairs


def _fresh(timestamp: str, tolerance: float, now: float) -> None:
    """Refuse a signed timestamp outside `tolerance` of now: Unix seconds, or milliseconds (13 digits)."""
    try:
        sent = float(timestamp)
    except ValueError:
        raise Unauthorized(403, "bad_timestamp", f"the timestamp {timestamp[:40]!r} is not a Unix time") from None
    if sent != sent or sent in (float("inf"), float("-inf")):
        raise Unauthorized(403, "bad_timestamp", f"the timestamp {timestamp[:40]!r} is not a Unix time")
    if sent > 1e11:  # no Unix time in seconds is this large before the year 5000: milliseconds
        sent /= 1000
    age = now - sent
    if age > tolerance:
        raise Unauthorized(
            403, "stale_timestamp", f"the signed timestamp is {age:.0f} s old, over the {tolerance:.0f} s tolerance"
        )
    if -age > tolerance:
        raise Unauthorized(
            403,
            "future_timestamp",
            f"the signed timestamp is {-age:.0f} s in the future, over the {tolerance:.0f} s tolerance",
        )


def parse(request: Incoming, endpoint: Endpoint) -> list[Event]:
    body = decode_json(request.body)
    settings: Settings = endpoint.settings
    functions = _PayloadFunctions()
    functions.root = body
    options = jmespath.Options(custom_functions=functions)
    header_key = request.headers.get(settings.delivery_header.lower()) if settings.delivery_header else None
    if settings.each is None:
        return [_event(body, settings, endpoint, options, header_key or body_digest(request.body))]
    elements = _compile(settings.each).search(body, options=options)
    if not isinstance(elements, list):
        found = "nothing" if elements is None else f"a {_json_type(elements)}"
        raise BadPayload(f"`each` ({settings.each}) should find an array in the body, and found {found}")
    events = [_event(element, settings, endpoint, options, None) for element in elements]
    return _keyed(events, header_key or body_digest(request.body))


def _keyed(events: list[Event], delivery: str) -> list[Event]:
    """Per-element delivery keys, distinct within the body and the same on a redelivery: the element's
    own; with `#index` after it where other elements of this body share it, or after the delivery's key
    where it has none."""
    counts = Counter(e.delivery_key for e in events)
    keyed = []
    for index, event in enumerate(events):
        own = event.delivery_key
        key = own if own and counts[own] == 1 else f"{own or delivery}#{index}"
        keyed.append(msgspec.structs.replace(event, delivery_key=key))
    return keyed


def _event(data: Any, settings: Settings, endpoint: Endpoint, options: Any, fallback_key: str | None) -> Event:
    """One event from `data` (the body, or an `each` element, which is then its `raw`). Without a
    `fallback_key` and a `delivery_key` field that finds one, the key is left empty for `_keyed`."""
    spec = settings.fields
    found = {name: _scalar(getattr(spec, name), data, options) for name in SCALARS}
    lists = {name: _list(getattr(spec, name), data, options) for name in LISTS}
    identifiers = {name: value for name, expr in spec.identifiers.items() if (value := _scalar(expr, data, options))}
    if found["service"]:
        identifiers.setdefault("service", found["service"])
    service = (
        Service(id=found["service_id"], name=found["service"]) if found["service_id"] or found["service"] else None
    )
    subject_id = found["subject_id"]
    return endpoint.event(
        kind=found["kind"] or "generic",
        delivery_key=found["delivery_key"] or fallback_key or "",
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
        raw=data,
    )


def _json_type(value: Any) -> str:
    return {dict: "object", str: "string", bool: "boolean"}.get(type(value), "number")


def _search(expression: str, data: Any, options: Any) -> Any:
    """The expression's value, or None where a function meets a value of the wrong type (`length(x)` on
    a number): a field a payload does not fill is empty, never a refused request."""
    try:
        return _compile(expression).search(data, options=options)
    except jmespath.exceptions.JMESPathError:
        return None


def _scalar(expression: str | None, data: Any, options: Any) -> str | None:
    if expression is None:
        return None
    value = _search(expression, data, options)
    if isinstance(value, list):
        value = value[0] if value else None
    return text(value)


def _list(expression: str | None, data: Any, options: Any) -> tuple[str, ...]:
    if expression is None:
        return ()
    value = _search(expression, data, options)
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
