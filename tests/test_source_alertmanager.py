"""Prometheus Alertmanager's webhook receiver, delivered by a real Alertmanager (tests/alertmanager.py).

Alertmanager groups alerts, sends the group to alertbridge with the credentials of its
`http_config`, and sends it again when an alert of it changes: each alert is one event, each state
of it stored once. Refusals and bad bodies are posted directly, as any sender could post them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from alertbridge.sources.alertmanager import fingerprint

from .alertmanager import Alertmanager, ago, alert, rfc3339
from .conftest import Server, wait_until

TOKEN = "am-bearer-7c1e9d"
USER, PASSWORD = "alertmanager", "am-basic-4b2a"
PATH = "/webhooks/alertmanager"

CONFIG = """
endpoints:
  - name: prometheus
    source: alertmanager
    path: /webhooks/alertmanager
    token: ${AM_TOKEN}
    username: alertmanager
    password: ${AM_PASSWORD}
    max_body_bytes: 65536
targets:
  - { name: inbox, type: inbox }
routes:
  - name: page-critical
    match: { kind: alertmanager.firing, labels.severity: critical }
    actions:
      - target: inbox
        action: notify
        body: "{{ event.title }} on {{ labels.instance }}: {{ event.raw.alert.annotations.runbook_url }}"
        link: "{{ event.raw.externalURL }}/#/alerts?cluster={{ event.raw.commonLabels.cluster }}"
"""


@pytest.fixture
def server(server_factory: Callable[..., Server]) -> Server:
    return server_factory(CONFIG, {"AM_TOKEN": TOKEN, "AM_PASSWORD": PASSWORD})


def receiver(server: Server, http_config: dict[str, Any]) -> dict[str, Any]:
    return {"name": "alertbridge", "webhook_configs": [{"url": server.url + PATH, "http_config": http_config}]}


@pytest.fixture
def bearer_alertmanager(server: Server, tmp_path: Path) -> Iterator[Alertmanager]:
    """Alertmanager sending `authorization.credentials` (type Bearer), as its docs configure it."""
    with Alertmanager(tmp_path, [receiver(server, {"authorization": {"credentials": TOKEN}})]) as am:
        yield am


def by_kind(server: Server) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for row in server.events(limit=200):
        found.setdefault(row["event"]["kind"], []).append(row["event"])
    return found


def test_alertmanager_delivers_a_group_as_one_event_per_alert(
    server: Server, bearer_alertmanager: Alertmanager
) -> None:
    am = bearer_alertmanager
    started = ago(120)
    disks = [
        alert(
            "DiskFull",
            instance=f"db-{n}:9100",
            job="node",
            severity="critical" if n == 1 else "warn",
            cluster="eu-1",
            annotations={"summary": f"Disk almost full on db-{n}", "runbook_url": "https://runbooks/disk"},
            starts=started,
            generator_url=f"http://prometheus/graph?g0.expr=disk{n}",
        )
        for n in (1, 2, 3)
    ]
    am.post_alerts(disks)

    firing = wait_until(
        lambda: len(got := by_kind(server).get("alertmanager.firing", [])) == 3 and got, 30, "three firing events"
    )
    held = {a["labels"]["instance"]: a["fingerprint"] for a in am.alerts()}
    for event in firing:
        instance = event["labels"]["instance"]
        n = instance[3]
        # The identity is Alertmanager's own fingerprint, and ours computes the same from the labels.
        assert event["dedup_key"] == event["subject"]["id"] == held[instance] == fingerprint(event["labels"])
        assert event["subject"]["system"] == "alertmanager"
        assert event["title"] == f"Disk almost full on db-{n}"
        assert event["severity"] == ("critical" if n == "1" else "warning")
        assert event["labels"]["severity"] == ("critical" if n == "1" else "warn")
        assert event["service"] == {"name": "node"}
        assert event["status"] == "firing"
        assert event["url"] == f"http://prometheus/graph?g0.expr=disk{n}"
        assert event["occurred_at"].startswith(rfc3339(started)[:19])
        assert event["identifiers"]["alertname"] == "DiskFull"
        assert event["identifiers"]["alertmanager_receiver"] == "alertbridge"
        assert event["raw"]["receiver"] == "alertbridge" and event["raw"]["alert"]["labels"]["instance"] == instance
        assert "alerts" not in event["raw"]

    # The critical one was routed, its template reading the alert's annotations and the group's labels.
    (delivery,) = wait_until(lambda: server.deliveries(), 15, "the critical alert's delivery")
    assert delivery["fields"]["body"] == "Disk almost full on db-1 on db-1:9100: https://runbooks/disk"
    external = firing[0]["raw"]["externalURL"]  # Alertmanager's own address, as it tells it
    assert external.startswith("http") and delivery["fields"]["link"] == f"{external}/#/alerts?cluster=eu-1"

    # db-2 resolves: Alertmanager sends the group again, db-2 resolved and the others still firing.
    am.post_alerts([{**disks[1], "endsAt": rfc3339(ago(5))}])
    (resolved,) = wait_until(lambda: by_kind(server).get("alertmanager.resolved"), 30, "db-2's resolved event")
    assert resolved["labels"]["instance"] == "db-2:9100"
    assert resolved["dedup_key"] == held["db-2:9100"]
    assert resolved["status"] == "resolved"
    # The firing alerts that came again in that notification were redeliveries, stored once.
    wait_until(
        lambda: server.metric("alertbridge_events_stored_total", endpoint="prometheus", outcome="duplicate") >= 2,
        15,
        "the repeated firing alerts to be recognised",
    )
    kinds = by_kind(server)
    assert sorted(kinds) == ["alertmanager.firing", "alertmanager.resolved"]
    assert len(kinds["alertmanager.firing"]) == 3 and len(kinds["alertmanager.resolved"]) == 1


def test_basic_auth_and_amtool(server: Server, tmp_path: Path) -> None:
    """Alertmanager's `basic_auth`, and an alert added with amtool, its own command-line client."""
    http_config = {"basic_auth": {"username": USER, "password": PASSWORD}}
    with Alertmanager(tmp_path, [receiver(server, http_config)]) as am:
        am.amtool_add("HighLatency", {"service": "checkout", "severity": "page"}, {"summary": "p99 over 2 s"})
        (row,) = wait_until(lambda: server.events(), 30, "the alert from amtool")
    event = row["event"]
    assert event["kind"] == "alertmanager.firing"
    assert event["title"] == "p99 over 2 s"
    assert event["severity"] == "critical"
    assert event["service"] == {"name": "checkout"}
    assert event["identifiers"]["service"] == "checkout"


def notification(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    """A webhook body as Alertmanager 0.25 writes it (version 4)."""
    return {
        "version": "4",
        "groupKey": '{}:{alertname="Probe"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "alertbridge",
        "groupLabels": {"alertname": "Probe"},
        "commonLabels": {"alertname": "Probe"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def posted_alert(status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "Probe", **labels},
        "annotations": {"summary": "probe failed"},
        "startsAt": "2026-12-04T10:00:00Z",
        "endsAt": "2026-12-04T10:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
    }


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 401, "no credential"),
        ({"authorization": "Bearer not-the-token"}, 403, "invalid token"),
        ({"authorization": basic(USER, "wrong")}, 403, "wrong user name or password"),
        ({"authorization": basic("someone", PASSWORD)}, 403, "wrong user name or password"),
        ({"authorization": "Basic %%%"}, 403, "unreadable basic auth"),
    ],
)
def test_missing_or_wrong_credentials_are_refused_and_nothing_is_stored(
    server: Server, headers: dict[str, str], status: int, message: str
) -> None:
    answer = server.post(PATH, notification(posted_alert(instance="a")), headers=headers)
    assert answer.status_code == status
    assert message in answer.json()["error"]
    assert TOKEN not in answer.text and PASSWORD not in answer.text
    assert TOKEN not in server.logs() and PASSWORD not in server.logs()
    assert server.events() == []


def test_a_redelivered_notification_is_stored_once_and_a_resolve_is_new(server: Server) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    # The same alert twice in one body (a sender's bug) is one event too.
    body = notification(posted_alert(instance="a"), posted_alert(instance="b"), posted_alert(instance="a"))
    first = server.post(PATH, body, headers=auth)
    again = server.post(PATH, body, headers=auth)
    assert first.status_code == again.status_code == 200
    assert first.json()["duplicate"] is False and again.json() == {**first.json(), "duplicate": True}
    assert len(server.events()) == 2
    resolved = server.post(
        PATH, notification(posted_alert("resolved", instance="a"), status="resolved"), headers=auth
    ).json()
    assert resolved["duplicate"] is False
    (event,) = [r["event"] for r in server.events() if r["event"]["kind"] == "alertmanager.resolved"]
    assert event["occurred_at"] == "2026-12-04T10:05:00Z"
    # Without a fingerprint in the body, the identity is computed from the labels, the same each time.
    assert event["dedup_key"] == fingerprint({"alertname": "Probe", "instance": "a"})
    assert len(server.events()) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[1, 2]", "must be a JSON object"),
        (b"{", "not valid JSON"),
        (json.dumps({"status": "firing"}).encode(), "`alerts` must be a list"),
        (json.dumps({"alerts": {"0": {}}}).encode(), "`alerts` must be a list"),
        (json.dumps({"alerts": []}).encode(), "has no alerts"),
        (json.dumps(notification(posted_alert(instance="a"), "not an alert")).encode(), "alerts[1] must be an object"),
        (json.dumps(notification({**posted_alert(), "status": "pending"}, status="?")).encode(), "alerts[0].status"),
        (b'{"alerts": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested more than"),
    ],
)
def test_bad_bodies_are_refused_with_a_reason_and_nothing_is_stored(
    server: Server, content: bytes, message: str
) -> None:
    answer = server.post(PATH, content=content, headers={"authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 400
    assert message in answer.json()["error"]
    assert server.events() == []


def test_an_oversized_body_is_refused(server: Server) -> None:
    big = notification(*(posted_alert(instance=f"host-{n}", filler="x" * 200) for n in range(400)))
    answer = server.post(PATH, big, headers={"authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 413
    assert "65536 byte limit" in answer.json()["error"]
    assert server.events() == []


def test_the_token_in_a_header_of_its_own(server_factory: Callable[..., Server]) -> None:
    """Alertmanager 0.27+ sends `http_headers` (Debian's 0.25 cannot, so this one is posted as it would
    be): the token in a header the endpoint names, or as `Authorization: Bearer`; nothing else."""
    config = """
endpoints:
  - name: prometheus
    source: alertmanager
    path: /webhooks/alertmanager
    token: ${AM_TOKEN}
    token_header: X-Alertbridge-Token
"""
    server = server_factory(config, {"AM_TOKEN": TOKEN})
    body = json.dumps(notification(posted_alert(instance="a"))).encode()
    missing = server.post(PATH, content=body)
    assert missing.status_code == 401 and "X-Alertbridge-Token" in missing.json()["error"]
    wrong = server.post(PATH, content=body, headers={"X-Alertbridge-Token": "not-it"})
    assert wrong.status_code == 403 and TOKEN not in wrong.text
    assert server.events() == []
    assert server.post(PATH, content=body, headers={"X-Alertbridge-Token": TOKEN}).status_code == 200
    other = json.dumps(notification(posted_alert(instance="b"))).encode()
    assert server.post(PATH, content=other, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    wait_until(lambda: len(server.events()) == 2, what="two alerts stored")


def test_a_new_firing_pages_again_even_when_the_last_resolve_never_came(
    server_factory: Callable[..., Server],
) -> None:
    """Alertmanager sends each firing of an alert once (its startsAt is in the delivery key; repeats
    are redeliveries): a firing with a new startsAt while the alert's episode is still open means its
    resolve was lost (`send_resolved: false`, a resolve given up on) and is a new episode that pages."""
    config = """
endpoints:
  - name: prometheus
    source: alertmanager
    path: /webhooks/alertmanager
    token: ${AM_TOKEN}
targets:
  - { name: inbox, type: inbox }
routes:
  - name: page
    match: { kind: alertmanager.firing }
    actions:
      - target: inbox
        action: notify
        key: "page-{{ event.dedup_key }}"
        body: "{{ event.title }}"
"""
    server = server_factory(config, {"AM_TOKEN": TOKEN})
    bearer = {"Authorization": f"Bearer {TOKEN}"}

    def fire(starts: str) -> None:
        body = notification({**posted_alert(instance="db-1"), "startsAt": starts})
        assert server.post(PATH, body, headers=bearer).status_code == 200

    fire("2026-12-04T10:00:00Z")
    fire("2026-12-04T10:00:00Z")  # Alertmanager's repeat of the same firing: a redelivery
    fire("2026-12-04T11:00:00Z")  # firing again, its 10:00 firing never resolved
    keys = wait_until(
        lambda: sorted(d["idempotency_key"] for d in server.deliveries()) if len(server.deliveries()) == 2 else None,
        what="two pages",
    )
    (alert_fingerprint,) = {row["event"]["dedup_key"] for row in server.events()}
    assert keys == [f"key:page-{alert_fingerprint}", f"key:page-{alert_fingerprint}#episode-2"]
    steps = [next(s for s in row["trace"] if "episode" in s) for row in reversed(server.events())]
    assert [s["episode"] for s in steps] == [1, 2]
    assert "episode 1 was still open: its resolve never came" in steps[1]["why"]
