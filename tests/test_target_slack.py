"""Slack target, unit: the chat.postMessage it builds and how it reads Slack's answers.

Parameters are checked against Slack's Web API description (shared/specs/slack); answers are
its success and error schemas' shapes, with the error codes that description lists for the method.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from alertbridge.targets.slack import TARGET, MissingField, Settings

from .answers import answer, sending
from .fakes.slack import SPEC, _parameters

SETTINGS = Settings.model_validate({"token": "xoxb-not-a-real-token-this-will-not-work"})
POSTED = {
    "ok": True,
    "channel": "C123ABC456",
    "ts": "1503435956.000247",
    "message": {
        "text": "Here's a message for you",
        "username": "ecto1",
        "bot_id": "B123ABC456",
        "type": "message",
        "subtype": "bot_message",
        "ts": "1503435956.000247",
    },
}


def documented_errors() -> list[str]:
    operation = json.loads(SPEC.read_text())["paths"]["/chat.postMessage"]["post"]
    return list(operation["responses"]["default"]["schema"]["properties"]["error"]["enum"])


def valid(body: dict[str, Any]) -> None:
    known, required = _parameters()
    assert set(body) <= known, set(body) - known
    assert required <= set(body), required - set(body)


def test_post() -> None:
    fields = {"channel": "C123ABC456", "text": "Disk full", "unfurl_links": 0}
    sent = TARGET.request(SETTINGS, "post", fields, sending("post"))
    assert (sent.method, sent.url) == ("POST", "https://slack.com/api/chat.postMessage")
    assert dict(sent.headers) == {
        "Authorization": "Bearer xoxb-not-a-real-token-this-will-not-work",
        "Content-Type": "application/json; charset=utf-8",
    }
    valid(sent.json)
    assert sent.json == {"channel": "C123ABC456", "text": "Disk full", "unfurl_links": False}


def test_a_reply_in_a_thread_with_blocks() -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Disk full*"}}]
    fields = {"channel": "C123ABC456", "text": "t" * 50000, "thread_ts": 1503435956.000247, "blocks": blocks}
    own = Settings.model_validate({"token": "xoxb-1", "url": "http://127.0.0.1:9/api/"})
    sent = TARGET.request(own, "post", fields, sending("post"))
    assert sent.url == "http://127.0.0.1:9/api/chat.postMessage"
    valid(sent.json)
    assert sent.json == {
        "channel": "C123ABC456",
        "text": "t" * 40000,
        "thread_ts": "1503435956.000247",
        "blocks": blocks,
    }


def test_what_cannot_be_built_raises() -> None:
    with pytest.raises(MissingField, match="channel"):
        TARGET.request(SETTINGS, "post", {"text": "t"}, sending("post"))
    with pytest.raises(MissingField, match="unknown action"):
        TARGET.request(SETTINGS, "update", {"channel": "C1"}, sending("update"))


def test_ok_keeps_the_message_ts_for_threads() -> None:
    outcome = TARGET.classify(answer(200, POSTED), SETTINGS, {}, sending("post"))
    assert (outcome.kind, outcome.message) == ("success", "posted 1503435956.000247")
    assert outcome.result == {"ts": "1503435956.000247", "channel": "C123ABC456"}


@pytest.mark.parametrize("error", sorted(set(documented_errors()) - {"rate_limited"}))
def test_refusals_in_a_200_are_permanent(error: str) -> None:
    outcome = TARGET.classify(answer(200, {"ok": False, "error": error}), SETTINGS, {}, sending("post"))
    assert (outcome.kind, outcome.message) == ("permanent", f"Slack: {error}")


@pytest.mark.parametrize("error", ["rate_limited", "ratelimited", "service_unavailable", "internal_error"])
def test_slack_saying_later_in_a_200_is_retried(error: str) -> None:
    outcome = TARGET.classify(answer(200, {"ok": False, "error": error}), SETTINGS, {}, sending("post"))
    assert (outcome.kind, outcome.retry_after) == ("retry", None)


@pytest.mark.parametrize(("headers", "wait"), [({"Retry-After": "30"}, 30.0), ({}, None)])
def test_429_is_retried_after_what_slack_asks(headers: dict[str, str], wait: float | None) -> None:
    limited = answer(429, {"ok": False, "error": "ratelimited"}, headers)
    outcome = TARGET.classify(limited, SETTINGS, {}, sending("post"))
    assert (outcome.kind, outcome.retry_after) == ("retry", wait)


@pytest.mark.parametrize(("status", "kind"), [(500, "retry"), (503, "retry"), (404, "permanent"), (410, "permanent")])
def test_http_errors(status: int, kind: str) -> None:
    assert TARGET.classify(answer(status, b"<html></html>"), SETTINGS, {}, sending("post")).kind == kind


def test_an_answer_that_is_not_slacks_is_retried() -> None:
    assert TARGET.classify(answer(200, b"<html>proxy</html>"), SETTINGS, {}, sending("post")).kind == "retry"
    assert TARGET.classify(answer(200, ["ok"]), SETTINGS, {}, sending("post")).kind == "retry"
