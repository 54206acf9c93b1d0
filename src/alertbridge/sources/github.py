"""GitHub webhooks (repository, organisation or GitHub App).

Authentication: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` with the
webhook secret; several secrets may be configured while rotating. Missing → 401, wrong → 403.
`X-GitHub-Event` names the event, `X-GitHub-Delivery` is the delivery id (the same when GitHub
redelivers), so a redelivery is stored once. `ping` (sent when a webhook is created) is
answered 200 and not stored.

| event field  | from the payload                                                                 |
| ------------ | -------------------------------------------------------------------------------- |
| delivery_key | the `X-GitHub-Delivery` header (else a digest of the body)                       |
| kind         | `github.` + `X-GitHub-Event` + `.` + `action` when there is one (`github.pull_request.opened`, `github.push`, `github.workflow_run.completed`) |
| subject      | `{github, pull_request, <repo>#<number>}`, `{github, issue, <repo>#<number>}`, `{github, workflow_run, <id>}`, `{github, check_run, <id>}`, else `{github, repository, <repo>}` |
| title        | the pull request's or issue's `title`, the workflow run's `display_title` or `name`, the check's `name`, the head commit's `message` |
| status       | `conclusion`, else `state`, else `status` of the object                          |
| url          | the object's `html_url`, else the repository's                                   |
| actor        | `sender.login`                                                                   |
| tags         | label names of the pull request or issue                                         |
| identifiers  | `github_repo` (`repository.full_name`), `github_org` (`organization.login`), `github_installation_id` |
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr

from alertbridge.events import Subject
from alertbridge.security import hmac_sha256_hex, same_secret, secret_values
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

OBJECTS = ("pull_request", "issue", "workflow_run", "check_run", "check_suite", "release", "deployment")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: SecretStr | list[SecretStr]

    def secrets(self) -> list[str]:
        return secret_values(self.secret)


def verify(request: Incoming, endpoint: Endpoint) -> None:
    settings: Settings = endpoint.settings
    signature = request.headers.get("x-hub-signature-256")
    if not signature:
        raise Unauthorized(401, "missing_signature", "X-Hub-Signature-256 is required")
    matched = False
    for secret in settings.secrets():
        matched |= same_secret(signature, "sha256=" + hmac_sha256_hex(secret, request.body))
    if not matched:
        raise Unauthorized(403, "bad_signature", "the signature does not match the body")


def parse(request: Incoming, endpoint: Endpoint) -> list[Event]:
    name = request.headers.get("x-github-event")
    if not name:
        raise BadPayload("X-GitHub-Event is missing: is this a GitHub webhook?")
    if name == "ping":
        return []
    try:
        body = decode_json(request.body)
    except BadPayload as exc:
        if "not valid JSON" in str(exc):
            raise BadPayload(f"{exc} (set the webhook's content type to application/json)") from None
        raise
    if not isinstance(body, dict):
        raise BadPayload("the body must be a JSON object")
    action = text(body.get("action"))
    repo = text(dig(body, "repository", "full_name"))
    kind_of_object, item = next(((k, obj(body[k])) for k in OBJECTS if isinstance(body.get(k), dict)), (None, {}))
    identifiers = {
        key: value
        for key, value in (
            ("github_repo", repo),
            ("github_org", text(dig(body, "organization", "login"))),
            ("github_installation_id", text(dig(body, "installation", "id"))),
        )
        if value
    }
    labels: list[Any] = item["labels"] if isinstance(item.get("labels"), list) else []
    return [
        endpoint.event(
            kind=f"github.{name}.{action}" if action else f"github.{name}",
            delivery_key=request.headers.get("x-github-delivery") or body_digest(request.body),
            subject=_subject(kind_of_object, item, repo),
            title=text(item.get("title"))
            or text(item.get("display_title"))
            or text(item.get("name"))
            or text(dig(body, "head_commit", "message")),
            status=text(item.get("conclusion")) or text(item.get("state")) or text(item.get("status")),
            url=text(item.get("html_url")) or text(dig(body, "repository", "html_url")),
            actor=text(dig(body, "sender", "login")),
            tags=tuple(t for t in (text(obj(label).get("name")) for label in labels) if t),
            identifiers=identifiers,
            raw=body,
        )
    ]


def _subject(kind: str | None, item: dict[str, Any], repo: str | None) -> Subject | None:
    if kind in ("pull_request", "issue") and item.get("number") is not None and repo:
        return Subject("github", kind, f"{repo}#{item['number']}")
    if kind and item.get("id") is not None:
        return Subject("github", kind, str(item["id"]))
    return Subject("github", "repository", repo) if repo else None


SOURCE = Source(
    name="github", settings=Settings, parse=parse, verify=verify, claims=(Claim("github_repos", "github_repo", 40),)
)
