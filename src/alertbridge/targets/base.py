"""What every target provides. The dispatcher owns the retry loop; a target knows its API.

A target turns a delivery's rendered fields into one HTTP request (`request`), and says
what the answer means (`classify`): done, worth retrying, or never going to work. Secrets
live in the target's settings, never in the rendered fields, so the outbox and the
decision trace hold no secrets.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from alertbridge.events import Event, Expected

OutcomeKind = Literal["success", "retry", "permanent"]
Ref = tuple[str, str, str]  # (system, type, id) of an object in another system: ("pagerduty", "incident", "PT4KHLK")


@dataclass(frozen=True)
class FollowUp:
    """A further action a success asks for (an agent's answer becomes a note): a delivery of its own."""

    target: str
    action: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    message: str = ""
    retry_after: float | None = None  # seconds the receiver asked us to wait
    result: dict[str, Any] | None = None  # what to remember of a success (an id, a dedup key)
    follow_ups: tuple[FollowUp, ...] = ()
    # Objects the success created: each is linked to the object the event is about, so later
    # events on either side find their counterpart (an Opsgenie alert ↔ its PagerDuty incident).
    created: tuple[Ref, ...] = ()
    # Who the target acted as, in the terms that system's webhooks name their agent by, when only its
    # answer says so (PagerDuty's user id behind `From`): set on this delivery's expected echoes, so a
    # webhook naming someone else is not taken for ours.
    actor: str | None = None


@dataclass(frozen=True)
class Sending:
    """What a target may know about the delivery being sent, beyond its fields."""

    delivery_id: str
    event: Event | None
    now: float
    target: str = ""  # the configured target's name, for follow-ups to itself
    action: str = ""
    team_token: str | None = None  # the token of the team the delivery is for (`team` field), if any


@dataclass(frozen=True)
class OutgoingRequest:
    method: str
    url: str
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes | None = None  # exact bytes, when they are signed


@dataclass(frozen=True)
class Response:
    """A receiver's answer, read in full; what `classify` looks at, whatever client fetched it."""

    status_code: int
    headers: Mapping[str, str]  # names in lower case
    content: bytes = b""

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.content)


@dataclass(frozen=True)
class Target:
    """One kind of destination. Registered in `alertbridge.targets`."""

    name: str
    settings: type[BaseModel]
    # action name -> default fields (templates); a route's fields override them.
    actions: Mapping[str, Mapping[str, Any]]
    request: Callable[[Any, str, Mapping[str, Any], Sending], OutgoingRequest]
    classify: Callable[[Response, Any, Mapping[str, Any], Sending], Outcome]
    # Deliveries with the same order key are sent one after the other, in the order routed
    # (a resolve never overtakes its trigger). None: no ordering needed.
    order_key: Callable[[Any, str, Mapping[str, Any]], str | None] = lambda settings, action, fields: None
    # (limit, per seconds) the receiver enforces, used when the target config sets none.
    default_rate_limit: tuple[int, float] | None = None
    # Fields an action cannot be sent without, checked by `alertbridge check`: action -> entries,
    # each a tuple of alternatives of which one must be given (`("assignee_ids", "escalation_policy_id")`).
    required: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    # Fields an action's request cannot be built without, in the same form, read by routing: a field
    # whose link is not there yet (`links.x.y`, its create still retrying) makes the delivery wait for
    # the link only if the action needs that field and no alternative is given; otherwise the field
    # is left out. (`required` is what the file must give, defaults counting; this, what a send must hold.)
    needs: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    # Every field waits for its link, needed or not (the inbox: a notification is shown once, so it
    # waits until what it shows is known).
    waits_for_links: bool = False
    # Settings that name another target (checked at load time), e.g. a forward's `notes_to`.
    refers_to: tuple[str, ...] = ()
    # The change an action makes (object, change, and where known the content and the actor name it
    # carries): when that system's webhook reports it back, it is our own echo and is not synced again.
    echo: Callable[[Any, str, Mapping[str, Any]], list[Expected]] = lambda settings, action, fields: []
    # A target that acts inside alertbridge (the inbox) instead of over HTTP: given the store.
    local: Callable[[Any, Any, str, Mapping[str, Any], Sending], Awaitable[Outcome]] | None = None
    # How the console's "test connection" asks this provider whether an API key works.
    key_test: KeyTest | None = None

    def can_send(self, action: str, fields: Mapping[str, Any]) -> bool:
        """Whether `fields` hold what `needs` says the action cannot be sent without. A blank
        value (None, empty, only spaces) is no value, as the requests read it."""
        return all(any(_given(fields.get(name)) for name in names) for names in self.needs.get(action, ()))


def _given(value: Any) -> bool:
    return bool(value.strip()) if isinstance(value, str) else bool(value)


@dataclass(frozen=True)
class KeyTest:
    """The cheapest read a provider allows, to learn whether an API key works before it is saved:
    GET `path` on the base URL with `headers(key)`; 200 means the key is good, 401/403 refused.
    `kind` is what the API's `integrations/test` names; the base URL comes from `url_env` (the
    examples' variable), else `default_url`; `label` is the provider's name in messages."""

    kind: str
    label: str
    url_env: str
    default_url: str
    path: str
    headers: Callable[[str], dict[str, str]]


def retry_after(response: Response, now: Callable[[], float] = time.time) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def classify_http(response: Response, message: str = "") -> Outcome:
    """The common reading of an HTTP status: 2xx done; 408, 429, 5xx retry; other 4xx permanent."""
    status = response.status_code
    if 200 <= status < 300:
        return Outcome("success", message or f"HTTP {status}")
    text = message or f"HTTP {status}"
    if status in (408, 429) or status >= 500:
        return Outcome("retry", text, retry_after=retry_after(response))
    return Outcome("permanent", text)


def error_text(response: Response, limit: int = 500) -> str:
    """The receiver's own words about a failure, short enough to keep on an attempt."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:limit]
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("status", "message", "error") if body.get(k)]
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            parts.append("; ".join(str(e) for e in errors))
        if parts:
            return ": ".join(parts)[:limit]
    return str(body)[:limit]
