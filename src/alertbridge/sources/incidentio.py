"""incident.io webhooks (Svix-powered, signed the Standard Webhooks way).

Authentication: `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64>[ v1,…]`,
the HMAC-SHA256 of `{id}.{timestamp}.{raw body}` with the endpoint's signing secret
(`whsec_<base64>`; several may be configured while rotating). The `svix-` header names are
accepted too. Missing → 401; wrong, or a timestamp more than five minutes from now → 403.
The delivery key is `webhook-id`, the same on every retry.

The envelope is `{"event_type": X, X: {...}}`; every event type becomes its own kind
(`incidentio.public_incident.incident_created_v2`, `incidentio.public_alert.alert_created_v1`,
…, unknown ones as they are). Private events carry only the resource's `id`.

| event field  | from the resource (`body[event_type]`)                                       |
| ------------ | ---------------------------------------------------------------------------- |
| delivery_key | the `webhook-id` header                                                      |
| kind         | `incidentio.` + `event_type`                                                 |
| subject      | `{incidentio, incident or alert or follow_up or action, id}`                 |
| title        | `name` (incidents), `title` (alerts)                                         |
| description  | `summary`, else `description`                                                |
| severity     | `severity.name`                                                              |
| status       | `incident_status.name` (incidents), `status` (alerts)                        |
| url          | `permalink`, else `source_url`                                               |
| dedup_key    | `deduplication_key` (alerts)                                                 |
| identifiers  | `incidentio_incident_id`, `incidentio_alert_id`, `incidentio_alert_source_id` (`alert_source_id`, or `alert_source_config_id` anywhere in the body), `incidentio_team_id` (the first of `team_ids`, or a `Team` attribute's catalog entry), `incidentio_reference`, `slack_channel_id` |
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr

from alertbridge.events import Subject
from alertbridge.security import same_secret, secret_values, standard_webhooks_signature
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
    dig,
    obj,
    text,
)

TOLERANCE = 300.0


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: SecretStr | list[SecretStr]
    tolerance: float = TOLERANCE

    def secrets(self) -> list[str]:
        return secret_values(self.secret)


def _header(request: Incoming, name: str) -> str | None:
    return request.headers.get(f"webhook-{name}") or request.headers.get(f"svix-{name}")


def verify(request: Incoming, endpoint: Endpoint) -> None:
    settings: Settings = endpoint.settings
    message_id, timestamp, header = _header(request, "id"), _header(request, "timestamp"), _header(request, "signature")
    if not (message_id and timestamp and header):
        raise Unauthorized(401, "missing_signature", "webhook-id, webhook-timestamp and webhook-signature are required")
    try:
        sent = int(timestamp)
    except ValueError:
        raise Unauthorized(403, "bad_signature", "webhook-timestamp is not a Unix time") from None
    if abs(endpoint.clock() - sent) > settings.tolerance:
        raise Unauthorized(403, "stale_timestamp", "the message timestamp is more than five minutes from now")
    given = [part for part in header.split() if part.startswith("v1,")]
    matched = False
    for secret in settings.secrets():
        expected = standard_webhooks_signature(secret, message_id, timestamp, request.body)
        for candidate in given:
            matched |= same_secret(candidate, expected)
    if not matched:
        raise Unauthorized(403, "bad_signature", "no signature matches the body")


def parse(request: Incoming, endpoint: Endpoint) -> list[Event]:
    body = decode_json(request.body)
    if not isinstance(body, dict) or not text(body.get("event_type")):
        raise BadPayload("not an incident.io webhook: expected {'event_type': X, X: {...}}")
    event_type = str(body["event_type"])
    resource = obj(body.get(event_type))
    noun = event_type.split(".", 1)[1] if "." in event_type else event_type
    kind_of = next((k for k in ("incident", "alert", "follow_up", "action") if noun.startswith(k)), "resource")
    resource_id = text(resource.get("id"))
    identifiers = {
        key: value
        for key, value in (
            ("incidentio_incident_id", resource_id if kind_of == "incident" else text(resource.get("incident_id"))),
            ("incidentio_alert_id", resource_id if kind_of == "alert" else None),
            (
                "incidentio_alert_source_id",
                text(resource.get("alert_source_id")) or _find(body, "alert_source_config_id"),
            ),
            ("incidentio_team_id", _team(resource)),
            ("incidentio_reference", text(resource.get("reference"))),
            ("slack_channel_id", text(resource.get("slack_channel_id"))),
        )
        if value
    }
    return [
        endpoint.event(
            kind=f"incidentio.{event_type}",
            delivery_key=_header(request, "id") or body_digest(request.body),
            subject=Subject("incidentio", kind_of, resource_id) if resource_id else None,
            title=text(resource.get("name")) or text(resource.get("title")),
            description=text(resource.get("summary")) or text(resource.get("description")),
            severity=text(dig(resource, "severity", "name")),
            status=text(dig(resource, "incident_status", "name")) or text(resource.get("status")),
            url=text(resource.get("permalink")) or text(resource.get("source_url")),
            dedup_key=text(resource.get("deduplication_key")),
            identifiers=identifiers,
            raw=body,
        )
    ]


def _find(value: Any, key: str) -> str | None:
    """The first value of `key` anywhere in the body (the seed finds alert_source_config_id at the top)."""
    if isinstance(value, dict):
        if text(value.get(key)):
            return text(value[key])
        for item in value.values():
            found = _find(item, key)
            if found:
                return found
    elif isinstance(value, list):
        for item in value:
            found = _find(item, key)
            if found:
                return found
    return None


def _team(resource: dict[str, Any]) -> str | None:
    teams = resource.get("team_ids")
    if isinstance(teams, list) and teams:
        return text(teams[0])
    for attribute in resource.get("attributes") or []:
        if isinstance(attribute, dict) and str(dig(attribute, "attribute", "name") or "").casefold() == "team":
            return text(dig(attribute, "value", "catalog_entry", "id")) or text(dig(attribute, "value", "literal"))
    return None


SOURCE = Source(
    name="incidentio",
    settings=Settings,
    parse=parse,
    verify=verify,
    # A team is the most specific identifier (rank 10); an alert source the least of the providers'.
    claims=(
        Claim("incidentio_team_ids", "incidentio_team_id", 10),
        Claim("incidentio_alert_source_ids", "incidentio_alert_source_id", 60),
    ),
)
