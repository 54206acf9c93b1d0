"""examples/monitoring.yaml end to end. Prometheus Alertmanager itself drives it through one receiver that
sends each notification three ways — its webhook, its PagerDuty integration (`pagerduty_configs`,
whose `url` is alertbridge's Events API door) and its Opsgenie integration (`opsgenie_configs`, whose
`api_url` is alertbridge's Opsgenie Alert API door). An alert that fires pages PagerDuty once per
door; its resolve resolves those incidents; when it fires again, it pages again. Grafana's documented
notification pages and resolves through the signed contact point."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .alertmanager import Alertmanager, ago, alert
from .conftest import EXAMPLES, Server, wait_until
from .fakes.pagerduty import FakeIncident, FakePagerDutyEvents
from .test_source_grafana import EXAMPLE as GRAFANA_EXAMPLE

ALERTMANAGER_TOKEN = "am-token-for-the-webhook"
INGEST_ROUTING_KEY = "R0UT1NGKEY0000000000000000000042"
INGEST_GENIE_KEY = "genie-key-of-the-door"
PD_ROUTING_KEY = "P" * 32
GRAFANA_WEBHOOK_SECRET = "grafana-secret"
DOORS = ("alertmanager", "pagerduty_events", "opsgenie_api")


def grafana_signature(body: bytes, secret: str = GRAFANA_WEBHOOK_SECRET, seconds_old: int = 0) -> dict[str, str]:
    """As Grafana's contact point signs with a timestamp header: hex HMAC-SHA256 of `timestamp:body`."""
    now = str(int(time.time()) - seconds_old)
    signature = hmac.new(secret.encode(), f"{now}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Grafana-Alerting-Signature": signature, "X-Grafana-Alerting-Signature-Timestamp": now}


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDutyEvents]:
    with FakePagerDutyEvents() as fake:
        yield fake


@pytest.fixture
def server(server_factory: Callable[..., Server], pagerduty: FakePagerDutyEvents) -> Server:
    env = {
        "ALERTMANAGER_TOKEN": ALERTMANAGER_TOKEN,
        "GRAFANA_WEBHOOK_SECRET": GRAFANA_WEBHOOK_SECRET,
        "INGEST_ROUTING_KEY": INGEST_ROUTING_KEY,
        "INGEST_GENIE_KEY": INGEST_GENIE_KEY,
        "PD_ROUTING_KEY": PD_ROUTING_KEY,
        "PD_EVENTS_URL": f"{pagerduty.url}/v2/enqueue",
    }
    return server_factory(EXAMPLES / "monitoring.yaml", env)


def receiver(server: Server) -> dict[str, object]:
    """Alertmanager's receiver as examples/monitoring.yaml's header says to write it, three ways."""
    return {
        "name": "alertbridge",
        "webhook_configs": [
            {
                "url": f"{server.url}/webhooks/alertmanager",
                "http_config": {"authorization": {"credentials": ALERTMANAGER_TOKEN}},
            }
        ],
        "pagerduty_configs": [{"routing_key": INGEST_ROUTING_KEY, "url": f"{server.url}/pagerduty/v2/enqueue"}],
        "opsgenie_configs": [{"api_key": INGEST_GENIE_KEY, "api_url": f"{server.url}/opsgenie/"}],
    }


def by_door(pagerduty: FakePagerDutyEvents) -> dict[str, list[FakeIncident]]:
    """The incidents alertbridge opened in PagerDuty, by the door the alert came through (the dedup
    key is `<source>:<alert identity>`)."""
    found: dict[str, list[FakeIncident]] = {door: [] for door in DOORS}
    for incident in pagerduty.incidents_for(PD_ROUTING_KEY):
        found[incident.dedup_key.partition(":")[0]].append(incident)
    return found


def statuses(pagerduty: FakePagerDutyEvents) -> dict[str, list[str]]:
    return {door: [i.status for i in incidents] for door, incidents in by_door(pagerduty).items()}


def test_an_alert_pages_through_every_door_resolves_and_pages_again_when_it_fires_again(
    server: Server, pagerduty: FakePagerDutyEvents, tmp_path: Path
) -> None:
    labels = {"severity": "critical", "service": "checkout"}
    annotations = {"summary": "Checkout error rate over 5 %"}
    with Alertmanager(tmp_path, [receiver(server)]) as am:
        am.post_alerts([alert("CheckoutErrors", annotations=annotations, starts=ago(30), **labels)])
        wait_until(lambda: statuses(pagerduty) == {d: ["triggered"] for d in DOORS}, 30, "a page through each door")
        first = by_door(pagerduty)
        assert first["alertmanager"][0].summary == "Checkout error rate over 5 %"
        assert first["alertmanager"][0].payload["source"] == "alertmanager"  # the endpoint that took it
        assert first["pagerduty_events"][0].payload["source"] == "events-api"
        assert first["opsgenie_api"][0].payload["source"] == "opsgenie-api"
        assert not pagerduty.validation_errors

        am.post_alerts([alert("CheckoutErrors", annotations=annotations, starts=ago(30), ends=ago(1), **labels)])
        wait_until(lambda: statuses(pagerduty) == {d: ["resolved"] for d in DOORS}, 30, "each incident resolved")

        am.post_alerts([alert("CheckoutErrors", annotations=annotations, starts=ago(0), **labels)])
        wait_until(
            lambda: statuses(pagerduty) == {d: ["resolved", "triggered"] for d in DOORS},
            30,
            "a page again through each",
        )
        again = by_door(pagerduty)
        for door in DOORS:  # the same alert, so the same dedup key: PagerDuty opened a new incident on it
            assert again[door][1].dedup_key == first[door][0].dedup_key
            assert len(again[door][1].events) == 1, f"{door}: one trigger in the new episode"
    assert not pagerduty.validation_errors

    rows = server.events(limit=200)
    kinds = sorted({row["event"]["kind"] for row in rows})
    assert kinds == [
        "alertmanager.firing",
        "alertmanager.resolved",
        "opsgenie_api.close",
        "opsgenie_api.create",
        "pagerduty_events.resolve",
        "pagerduty_events.trigger",
    ]
    assert INGEST_GENIE_KEY not in server.logs() and INGEST_ROUTING_KEY not in server.logs()


def test_grafanas_alerts_page_and_resolve_through_its_signed_contact_point(
    server: Server, pagerduty: FakePagerDutyEvents
) -> None:
    """Grafana's documented notification, signed as its contact point signs with a timestamp header:
    one page per alert, resolved by the resolved notification; a forged or replayed copy is refused."""
    firing = json.dumps(GRAFANA_EXAMPLE).encode()
    answer = server.post("/webhooks/grafana", content=firing, headers=grafana_signature(firing))
    assert answer.status_code == 200, answer.text
    forged = server.post("/webhooks/grafana", content=firing, headers=grafana_signature(firing, "not-the-secret"))
    assert forged.status_code == 403
    replayed = server.post("/webhooks/grafana", content=firing, headers=grafana_signature(firing, seconds_old=600))
    assert replayed.status_code == 403 and "from now" in replayed.json()["error"]
    fingerprints = {a["fingerprint"] for a in GRAFANA_EXAMPLE["alerts"]}
    keys = {f"grafana:{fingerprint}" for fingerprint in fingerprints}
    pagerduty.wait_for(lambda: {i.dedup_key for i in pagerduty.incidents if i.status == "triggered"} == keys)

    resolved = copy.deepcopy(GRAFANA_EXAMPLE)
    resolved["status"] = "resolved"
    for item in resolved["alerts"]:
        item["status"], item["endsAt"] = "resolved", "2021-10-12T10:30:00+02:00"
    body = json.dumps(resolved).encode()
    assert server.post("/webhooks/grafana", content=body, headers=grafana_signature(body)).status_code == 200
    pagerduty.wait_for(lambda: {i.dedup_key: i.status for i in pagerduty.incidents} == dict.fromkeys(keys, "resolved"))
    assert not pagerduty.validation_errors
