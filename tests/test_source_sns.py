"""Amazon SNS over real HTTP: messages signed here as SNS signs them (tests/signing.py, from AWS's
documentation), certificates the test makes, served by a fake SNS host the endpoint names in
`cert_hosts`; CloudWatch alarms; subscription confirmation; the refusals."""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from alertbridge.sources.sns import CERT_PATH, Settings, allowed_url

from .conftest import Server, wait_until
from .fakes.pagerduty import FakePagerDutyEvents
from .fakes.sns import FakeSNS, Signer

DOCS = Path(__file__).resolve().parents[1] / "docs"
RECIPE = DOCS / "recipes" / "cloudwatch.md"
TOPIC = "arn:aws:sns:us-east-1:123456789012:cloudwatch-alarms"
OTHER_TOPIC = "arn:aws:sns:us-east-1:123456789012:someone-elses"
PATH = "/webhooks/sns"

CONFIG = f"""
endpoints:
  - name: aws
    source: sns
    path: {PATH}
    topics: ["{TOPIC}"]
    cert_hosts: ["${{SNS_HOST}}"]
    max_body_bytes: 65536
"""


def recipe_block(language: str) -> str:
    """The recipe's one fenced block in `language`: what the docs show is what the tests run."""
    (block,) = re.findall(rf"```{language}\n(.*?)```", RECIPE.read_text(), re.S)
    return block


def documented_alarm() -> dict[str, Any]:
    """AWS's published example of a CloudWatch alarm's SNS message, as docs/recipes/cloudwatch.md shows it."""
    return json.loads(recipe_block("json"))


@dataclass
class SNS:
    """The fake SNS host, a signing certificate served there, and alertbridge subscribed to the topic."""

    host: FakeSNS
    signer: Signer
    cert_url: str
    server: Server

    def message(self, kind: str = "Notification", **fields: str) -> dict[str, str]:
        message = {
            "Type": kind,
            "MessageId": str(uuid.uuid4()),
            "TopicArn": TOPIC,
            "Message": "Hello from SNS",
            "Timestamp": "2026-12-04T17:00:00.000Z",
            "SigningCertURL": self.cert_url,
        }
        if kind != "Notification":
            token = uuid.uuid4().hex * 4
            message["Token"] = token
            message["SubscribeURL"] = (
                f"{self.host.url}/?Action=ConfirmSubscription&TopicArn={fields.get('TopicArn', TOPIC)}&Token={token}"
            )
        else:
            message["UnsubscribeURL"] = f"{self.host.url}/?Action=Unsubscribe&SubscriptionArn={TOPIC}:1"
        return {**message, **fields}

    def post(self, message: dict[str, str], *, version: str = "1", signer: Signer | None = None) -> httpx.Response:
        """Signed (unless it carries a Signature already) and sent as SNS sends it."""
        if "Signature" not in message:
            message = (signer or self.signer).sign(message, version)
        return self.send(json.dumps(message).encode(), message)

    def send(self, body: bytes, message: dict[str, str]) -> httpx.Response:
        headers = {
            "content-type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": str(message.get("Type")),
            "x-amz-sns-message-id": str(message.get("MessageId")),
            "x-amz-sns-topic-arn": str(message.get("TopicArn")),
            "user-agent": "Amazon Simple Notification Service Agent",
        }
        return self.server.post(PATH, content=body, headers=headers)

    def refused(self) -> float:
        """Requests refused at this endpoint, every reason together."""
        lines = self.server.client.get("/metrics").text.splitlines()
        mine = [
            line
            for line in lines
            if line.startswith("alertbridge_requests_refused_total{") and 'endpoint="aws"' in line
        ]
        return sum(float(line.rpartition(" ")[2]) for line in mine)


@pytest.fixture
def sns(server_factory: Callable[..., Server]) -> Iterator[SNS]:
    with FakeSNS() as host:
        signer = Signer()
        cert_url = host.serve(signer)
        yield SNS(host, signer, cert_url, server_factory(CONFIG, {"SNS_HOST": host.url}))


@pytest.mark.parametrize("version", ["1", "2"])
def test_the_documented_cloudwatch_alarm_is_verified_and_mapped(sns: SNS, version: str) -> None:
    message = {**documented_alarm(), "SigningCertURL": sns.cert_url, "TopicArn": TOPIC}
    del message["Signature"]
    answer = sns.post(message, version=version)
    assert answer.status_code == 200, answer.text
    (row,) = sns.server.events()
    event = row["event"]
    arn = "arn:aws:cloudwatch:REGION:ACCOUNT_NUMBER:alarm:EXAMPLE"
    assert event["kind"] == "sns.alarm"
    assert event["source"] == "sns"
    assert event["delivery_key"] == "95df01b4-ee98-5cb9-9903-4c221d41eb5e"
    assert event["subject"] == {"system": "cloudwatch", "type": "alarm", "id": arn}
    assert event["dedup_key"] == arn
    assert event["title"] == "EXAMPLE"
    assert event["description"].startswith("Threshold Crossed: 1 out of the last 1 datapoints [1234.0")
    assert event["status"] == "alarm"
    assert event["severity"] == "error"
    assert event["occurred_at"] == "2015-06-03T17:43:27.123+0000"
    assert event["identifiers"] == {
        "sns_topic_arn": TOPIC,
        "aws_account_id": "123456789012",
        "aws_region": "REGION",
        "cloudwatch_alarm_name": "EXAMPLE",
        "cloudwatch_alarm_arn": arn,
        "cloudwatch_namespace": "AWS/EC2",
        "cloudwatch_metric": "NetworkOut",
    }
    assert event["raw"]["MessageId"] == message["MessageId"]
    assert event["raw"]["Message"] == message["Message"]
    assert "UnsubscribeURL" not in event["raw"], "visiting it unsubscribes: not for everyone who reads events"


def test_alarm_states_and_other_messages(sns: SNS) -> None:
    def alarm(state: str, **extra: Any) -> str:
        return json.dumps(
            {
                "AlarmName": "web-5xx",
                "AWSAccountId": "123456789012",
                "NewStateValue": state,
                "NewStateReason": f"now {state}",
                "StateChangeTime": "2026-12-04T17:00:00.000+0000",
                "Region": "US East (N. Virginia)",
                "OldStateValue": "OK",
                "Trigger": {"MetricName": "HTTPCode_Target_5XX_Count", "Namespace": "AWS/ApplicationELB"},
                **extra,
            }
        )

    arn = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-5xx"
    sent = [
        sns.message(Message=alarm("OK", AlarmArn=arn), Subject='OK: "web-5xx" in US East (N. Virginia)'),
        sns.message(Message=alarm("INSUFFICIENT_DATA")),  # no AlarmArn: account, region and name
        sns.message(Message='line one\nline two — ünïcode "quoted"', Subject="Deploy finished"),
        sns.message(Message='{"AlarmName": "x", "NewStateValue": "SOMETHING_ELSE"}'),
        sns.message("UnsubscribeConfirmation", Message="You have chosen to deactivate subscription."),
    ]
    for i, message in enumerate(sent):
        assert sns.post(message, version="2" if i % 2 else "1").status_code == 200
    by_key = {row["event"]["delivery_key"]: row["event"] for row in sns.server.events()}
    ok, insufficient, text, other, unsubscribed = (by_key[m["MessageId"]] for m in sent)
    assert (ok["kind"], ok["subject"]["id"], ok["dedup_key"], ok["severity"]) == ("sns.ok", arn, arn, "info")
    assert ok["identifiers"]["aws_region"] == "us-east-1"
    assert insufficient["kind"] == "sns.insufficient_data"
    assert insufficient["dedup_key"] == "123456789012:US East (N. Virginia):web-5xx"
    assert insufficient["identifiers"]["aws_region"] == "US East (N. Virginia)"
    assert (insufficient["status"], insufficient["severity"]) == ("insufficient_data", "warning")
    assert text["kind"] == "sns.notification"
    assert (text["title"], text["description"]) == ("Deploy finished", 'line one\nline two — ünïcode "quoted"')
    assert text["identifiers"] == {"sns_topic_arn": TOPIC}
    assert text.get("dedup_key") is None and text.get("subject") is None
    assert other["kind"] == "sns.notification"
    assert unsubscribed["kind"] == "sns.unsubscribed"
    assert unsubscribed["raw"]["Type"] == "UnsubscribeConfirmation"
    assert not {"SubscribeURL", "Token"} & set(unsubscribed["raw"])
    assert sns.host.confirmations() == [], "an UnsubscribeConfirmation is recorded, not acted on"


def test_the_certificate_is_fetched_once_for_many_messages_and_a_redelivery_is_stored_once(sns: SNS) -> None:
    messages = [sns.message(Message=f"message {i}") for i in range(8)]
    for i, message in enumerate(messages):
        assert sns.post(message, version="1" if i % 2 else "2").status_code == 200
    first = sns.post(messages[0]).json()
    assert first["duplicate"] is True
    assert len(sns.server.events()) == 8
    assert sns.host.certificate_fetches(sns.cert_url) == 1
    # A second certificate (SNS rotated it) is fetched once too.
    rotated = Signer()
    rotated_url = sns.host.serve(rotated)
    for i in range(3):
        message = sns.message(Message=f"after rotation {i}", SigningCertURL=rotated_url)
        assert sns.post(message, signer=rotated).status_code == 200
    assert sns.host.certificate_fetches(rotated_url) == 1
    assert sns.host.certificate_fetches() == 2


def test_forged_resigned_foreign_and_unreadable_messages_are_refused_and_nothing_is_stored(
    sns: SNS, server_factory: Callable[..., Server]
) -> None:
    # Accepted once, so that the certificate is known: the forgeries fail on the signature itself.
    assert sns.post(sns.message(Message="genuine")).status_code == 200
    refusals: list[tuple[str, int, str]] = []

    def refused(answer: httpx.Response, status: int, words: str) -> None:
        assert answer.status_code == status, answer.text
        assert words in answer.json()["error"], answer.json()
        refusals.append((words, status, answer.text))

    for version in ("1", "2"):
        forged = sns.signer.sign(sns.message(Message="ALARM: pay me"), version)
        forged["Message"] = "ALARM: pay someone else"  # changed after signing
        refused(sns.post(forged), 403, "signature does not match")
        forged = sns.signer.sign(sns.message(), version)
        forged["Subject"] = "added after signing"
        refused(sns.post(forged), 403, "signature does not match")
        forged = sns.signer.sign(sns.message(), version)
        forged["SignatureVersion"] = "2" if version == "1" else "1"  # the other hash
        refused(sns.post(forged), 403, "signature does not match")
    # Signed with another key than the certificate's, pointing at the genuine certificate.
    impostor = Signer()
    refused(sns.post(sns.message(), signer=impostor), 403, "signature does not match")
    # Signed by an impostor whose own certificate is on a host the endpoint does not name.
    with FakeSNS() as elsewhere:
        foreign_url = elsewhere.serve(impostor)
        foreign = sns.post(sns.message(SigningCertURL=foreign_url), signer=impostor)
        refused(foreign, 403, "not an SNS certificate on an SNS host")
        https_on_the_fake = sns.cert_url.replace("http://", "https://")
        refused(sns.post(sns.message(SigningCertURL=https_on_the_fake)), 403, "not an SNS certificate on an SNS host")
        assert elsewhere.requests == [], "a certificate is never fetched from a host not allowed"
    # On an allowed host but not at SNS's certificate path (`/SimpleNotificationService-<hex>.pem`).
    fetches = len(sns.host.requests)
    off_path = sns.cert_url.rsplit("/", 1)[0] + "/certificates/SimpleNotificationService-0123.pem"
    refused(sns.post(sns.message(SigningCertURL=off_path)), 403, "not an SNS certificate")
    assert len(sns.host.requests) == fetches, "nothing fetched from a path SNS does not use"
    # A topic the endpoint does not take: refused before any fetch.
    fetches = len(sns.host.requests)
    refused(sns.post(sns.message(TopicArn=OTHER_TOPIC)), 403, "does not take messages of topic")
    assert len(sns.host.requests) == fetches
    # Unreadable signatures and shapes.
    unsigned = sns.message()
    refused(sns.send(json.dumps(unsigned).encode(), unsigned), 401, "carries Signature and SigningCertURL")
    bad = {**sns.signer.sign(sns.message()), "Signature": "not base64!"}
    refused(sns.post(bad), 403, "not base64")
    bad = {**sns.signer.sign(sns.message()), "SignatureVersion": "3"}
    refused(sns.post(bad), 403, "SignatureVersion must be 1 or 2")
    no_id = sns.signer.sign(sns.message())
    del no_id["MessageId"]
    refused(sns.post(no_id), 400, "MessageId must be a string")
    raw_delivery = b"ALARM: something happened"  # raw message delivery: no envelope, no signature
    refused(sns.send(raw_delivery, {}), 400, "not valid JSON")
    refused(sns.post({"Type": "Publish", "Signature": "x"}), 400, "Type is one of")
    # Oversized and deeply nested bodies.
    big = sns.signer.sign(sns.message(Message="x" * 70000))
    refused(sns.post(big), 413, "byte limit")
    deep = b'{"Type": "Notification", "Message": ' + b"[" * 500 + b"]" * 500 + b"}"
    refused(sns.send(deep, {}), 400, "nested more than 100 levels deep")

    assert [row["event"]["description"] for row in sns.server.events()] == ["genuine"]
    assert sns.refused() == len(refusals)
    assert "pay someone else" not in sns.server.logs(), "refusals are logged without their body"


def test_an_expired_certificate_or_one_that_cannot_be_had(sns: SNS) -> None:
    expired = Signer(days=10, start_days_ago=20)
    answer = sns.post(sns.message(SigningCertURL=sns.host.serve(expired)), signer=expired)
    assert answer.status_code == 403
    assert "not valid now" in answer.json()["error"]
    missing = f"{sns.host.url}/SimpleNotificationService-0000dead.pem"  # not served
    answer = sns.post(sns.message(SigningCertURL=missing))
    assert (answer.status_code, answer.json()["error"]) == (403, "no signing certificate at SigningCertURL (404)")
    # The host failing is no proof of forgery: 503, SNS retries, and the retry is taken.
    later = Signer()
    later_url = sns.host.serve(later)
    message = later.sign(sns.message(SigningCertURL=later_url))
    sns.host.behave(503)
    answer = sns.post(message)
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "10"
    assert answer.json()["error"] == "the signing certificate's host answered 503; try again"
    # Within the window the host is not asked again; after it, SNS's retry is taken.
    fetches = sns.host.certificate_fetches(later_url)
    assert sns.post(message).status_code == 503
    assert sns.host.certificate_fetches(later_url) == fetches
    assert sns.server.events() == []
    wait_until(lambda: sns.post(message).status_code == 200, 20, "the retry after the window")
    assert sns.host.certificate_fetches(later_url) == fetches + 1
    assert len(sns.server.events()) == 1


def test_a_subscription_is_confirmed_once_for_an_allowed_topic_and_never_for_another(sns: SNS) -> None:
    confirmation = sns.message(
        "SubscriptionConfirmation",
        Message=f"You have chosen to subscribe to the topic {TOPIC}.\n"
        "To confirm the subscription, visit the SubscribeURL included in this message.",
    )
    answer = sns.post(confirmation, version="2")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"ok": True, "confirmed": TOPIC}
    (confirmed,) = sns.host.confirmations(TOPIC)
    assert confirmed["Token"] == confirmation["Token"]
    # SNS redelivers it: answered, not confirmed again.
    assert sns.post(confirmation, version="2").status_code == 200
    assert len(sns.host.confirmations()) == 1
    assert sns.server.events() == [], "a confirmation is a handshake, not an event"
    assert "sns_subscription_confirmed" in sns.server.logs()
    assert confirmation["Token"] not in sns.server.logs()

    other = sns.message("SubscriptionConfirmation", TopicArn=OTHER_TOPIC)
    answer = sns.post(other)
    assert answer.status_code == 403
    assert "does not take messages of topic" in answer.json()["error"]
    forged = sns.signer.sign(sns.message("SubscriptionConfirmation"))
    forged["SubscribeURL"] += "&extra=1"
    assert sns.post(forged).status_code == 403
    with FakeSNS() as elsewhere:
        away = sns.message("SubscriptionConfirmation")
        away["SubscribeURL"] = away["SubscribeURL"].replace(sns.host.url, elsewhere.url)
        answer = sns.post(away)
        assert answer.status_code == 403
        assert "SubscribeURL is not on an SNS host" in answer.json()["error"]
        assert elsewhere.requests == []
    assert len(sns.host.confirmations()) == 1
    # SNS cannot be reached to confirm: 503, so SNS sends it again, and then it is confirmed.
    again = sns.message("SubscriptionConfirmation")
    sns.host.behave(500)
    answer = sns.post(again)
    assert answer.status_code == 503
    assert "could not be confirmed" in answer.json()["error"]
    assert sns.post(again).status_code == 200
    assert len(sns.host.confirmations()) == 3  # the first, the one that failed, its retry
    assert sns.server.events() == []


def test_the_default_hosts_are_sns_own_over_https() -> None:
    default = Settings(topics=[TOPIC])
    for url in (
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123abcd.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-0123abcd.pem",
        "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-0123abcd.pem",
        "https://sns.us-iso-east-1.c2s.ic.gov/SimpleNotificationService-0123abcd.pem",
        "https://sns.us-isob-east-1.sc2s.sgov.gov/SimpleNotificationService-0123abcd.pem",
        "https://sns.eu-west-1.amazonaws.com:443/?Action=ConfirmSubscription&Token=t",
    ):
        assert allowed_url(url, default), url
    for url in (
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123abcd.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com@evil.example/cert.pem",
        "https://user@sns.us-east-1.amazonaws.com/cert.pem",
        "https://s3.us-east-1.amazonaws.com/cert.pem",
        "https://sns.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
        "https://127.0.0.1/cert.pem",
        "file:///etc/passwd",
        "https://[::1/cert.pem",
        # S3 bucket hosts of a bucket named "sns": anyone can hold one and serve a certificate there.
        "https://sns.s3.amazonaws.com/SimpleNotificationService-0123abcd.pem",
        "https://sns.s3-us-west-2.amazonaws.com/SimpleNotificationService-0123abcd.pem",
        "https://sns.s3-website-us-east-1.amazonaws.com/SimpleNotificationService-0123abcd.pem",
    ):
        assert not allowed_url(url, default), url
    # A certificate is only ever at SNS's own path (what AWS's validators require too).
    assert CERT_PATH.fullmatch("/SimpleNotificationService-0123abcd.pem")
    for path in ("/cert.pem", "/SimpleNotificationService-0123abcd.pem/x", "/x/SimpleNotificationService-01.pem"):
        assert not CERT_PATH.fullmatch(path), path
    local = Settings(topics=[TOPIC], cert_hosts=["http://127.0.0.1:8900", "certs.internal"])
    assert allowed_url("http://127.0.0.1:8900/c.pem", local)
    assert allowed_url("https://certs.internal/c.pem", local)
    assert not allowed_url("https://127.0.0.1:8900/c.pem", local)
    assert not allowed_url("http://certs.internal/c.pem", local), "http only where the setting says so"
    assert not allowed_url("https://sns.us-east-1.amazonaws.com/c.pem", local), "cert_hosts replaces the default"


def test_settings_are_checked(server_factory: Callable[..., Server]) -> None:
    server = server_factory(CONFIG, {"SNS_HOST": "http://127.0.0.1:1"}, start=False)
    bad = CONFIG.replace(f'["{TOPIC}"]', '["my-topic"]').replace('["${SNS_HOST}"]', '["ftp://certs.example"]')
    server.config.write_text(bad)
    result = server.cli("check", "--config", str(server.config), check=False)
    assert result.returncode == 1
    assert "'my-topic' is not a topic ARN" in result.stdout + result.stderr
    assert "'ftp://certs.example' is not a host name or an origin" in result.stdout + result.stderr


def test_the_recipe_pages_on_alarm_and_resolves_on_ok(server_factory: Callable[..., Server]) -> None:
    """docs/recipes/cloudwatch.md's configuration, its certificates from the fake SNS host, against a fake
    PagerDuty: the documented ALARM opens an incident, the alarm's OK resolves it."""
    yaml = YAML()
    config = yaml.load(recipe_block("yaml"))
    config["endpoints"][0]["cert_hosts"] = ["${SNS_HOST}"]
    with FakeSNS() as host, FakePagerDutyEvents() as pagerduty:
        signer = Signer()
        cert_url = host.serve(signer)
        text = io.StringIO()
        yaml.dump(config, text)
        env = {
            "SNS_HOST": host.url,
            "CLOUDWATCH_TOPIC_ARN": TOPIC,
            "PD_ROUTING_KEY": "R0UTINGKEYCLOUDWATCH00000000000",
            "PD_EVENTS_URL": f"{pagerduty.url}/v2/enqueue",
        }
        server = server_factory(text.getvalue(), env)
        sns = SNS(host, signer, cert_url, server)
        fired = {**documented_alarm(), "SigningCertURL": cert_url, "TopicArn": TOPIC}
        del fired["Signature"]
        assert sns.post(fired).status_code == 200
        arn = "arn:aws:cloudwatch:REGION:ACCOUNT_NUMBER:alarm:EXAMPLE"
        (incident,) = wait_until(lambda: pagerduty.incidents, what="the PagerDuty trigger")
        assert incident.dedup_key == arn
        assert incident.summary.startswith("EXAMPLE: Threshold Crossed")
        assert incident.payload["source"] == "123456789012 REGION"
        assert incident.payload["component"] == "AWS/EC2 NetworkOut"
        cleared = json.loads(fired["Message"])
        cleared.update(NewStateValue="OK", OldStateValue="ALARM", NewStateReason="Threshold no longer crossed")
        assert sns.post(sns.message(Message=json.dumps(cleared))).status_code == 200
        wait_until(lambda: incident.status == "resolved", what="the PagerDuty resolve")
        assert pagerduty.validation_errors == []


def test_a_certificate_host_that_never_answers_costs_fetch_timeout_then_503(
    server_factory: Callable[..., Server],
) -> None:
    with FakeSNS() as host:
        signer = Signer()
        cert_url = host.serve(signer)
        config = CONFIG + "    fetch_timeout: 1\n"
        sns = SNS(host, signer, cert_url, server_factory(config, {"SNS_HOST": host.url}))
        message = sns.message(Message="while the host hangs")
        host.hang()
        started = time.monotonic()
        answer = sns.post(message)
        waited = time.monotonic() - started
        host.release()
        assert answer.status_code == 503
        assert "could not be fetched (ReadTimeout); try again" in answer.json()["error"]
        assert 1 <= waited < 5
        assert sns.server.events() == []
        started = time.monotonic()
        assert sns.post(message).status_code == 503, "within the window: refused at once, not waited for"
        assert time.monotonic() - started < 1
        wait_until(lambda: sns.post(message).status_code == 200, 20, "SNS's retry once the window is over")
        assert len(sns.server.events()) == 1
