"""Inhibition (`inhibit_rules:`) and deduplication over time (a route's `repeat_interval`) through the
real server, fed Alertmanager's webhook payloads, with PagerDuty's fake behind the route.

A firing `critical` ClusterDown mutes the `warning` alerts of its own cluster only; they are stored
`inhibited` with a trace naming the rule and the alert, counted, listed, and predicted by
`send --dry-run`. Once ClusterDown resolves, the muted warnings' next notification (Alertmanager
sends the same alert again, a redelivery) pages. A repeat within a route's `repeat_interval` sends
nothing new; after it, the alert pages again."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .alertmanager import Alertmanager, ago
from .alertmanager import alert as am_alert
from .backends import POSTGRES
from .conftest import Server, wait_until
from .fakes.pagerduty import FakePagerDutyEvents
from .test_source_alertmanager import notification, posted_alert

AM_TOKEN = "am-bearer-1nhibit"
PATH = "/webhooks/alertmanager"

CONFIG = """
endpoints:
  - name: prometheus
    source: alertmanager
    path: /webhooks/alertmanager
    token: ${AM_TOKEN}
targets:
  - name: pd
    type: pagerduty_events
    url: ${PD_EVENTS_URL}
    routing_key: routing-key-a
routes:
  - name: page
    match: { kind: alertmanager.firing }
    actions:
      - target: pd
        action: trigger
        key: "page-{{ event.dedup_key }}"
        summary: "{{ event.title }} {{ event.labels.cluster }}"
inhibit_rules:
  - name: cluster-down
    source_matchers: ['alertname="ClusterDown"', 'severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [cluster]
delivery:
  retry: {backoff_base: 0.2, backoff_cap: 1}
"""


@pytest.fixture
def pd() -> Iterator[FakePagerDutyEvents]:
    with FakePagerDutyEvents() as fake:
        yield fake


def env(pd: FakePagerDutyEvents) -> dict[str, str]:
    return {"AM_TOKEN": AM_TOKEN, "PD_EVENTS_URL": pd.url + "/v2/enqueue"}


def summaries(pd: FakePagerDutyEvents) -> list[str]:
    """What PagerDuty was asked to trigger, in order."""
    return [
        r.json["payload"]["summary"]
        for r in pd.requests
        if r.path.endswith("/enqueue") and r.json["event_action"] == "trigger"
    ]


def alert(name: str, severity: str, cluster: str, status: str = "firing") -> dict[str, Any]:
    body = posted_alert(status, severity=severity, cluster=cluster)
    body["labels"]["alertname"] = name
    body["annotations"] = {"summary": name}
    return body


def post(server: Server, *alerts: dict[str, Any]) -> None:
    answer = server.post(PATH, notification(*alerts), headers={"authorization": f"Bearer {AM_TOKEN}"})
    assert answer.status_code == 200, answer.text


def decided(server: Server, name: str, cluster: str, kind: str = "alertmanager.firing") -> dict[str, Any]:
    """The event of this alert (and kind), once routed."""

    def find() -> dict[str, Any] | None:
        for row in server.events(limit=200):
            labels = row["event"]["labels"]
            if (labels["alertname"], labels["cluster"], row["event"]["kind"]) == (name, cluster, kind):
                return dict(row) if row["routed_at"] else None
        return None

    found: dict[str, Any] = wait_until(find, 20, f"{name} on {cluster} routed")
    return found


def test_cluster_down_mutes_the_warnings_of_its_cluster_only_until_it_resolves(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents, tmp_path: Path
) -> None:
    server = server_factory(CONFIG, env(pd))
    down = alert("ClusterDown", "critical", "eu-1")
    post(server, down)
    assert decided(server, "ClusterDown", "eu-1")["status"] == "routed"

    latency_eu, latency_us = alert("HighLatency", "warning", "eu-1"), alert("HighLatency", "warning", "us-1")
    post(server, latency_eu, latency_us, alert("DiskFull", "critical", "eu-1"))
    muted = decided(server, "HighLatency", "eu-1")
    assert muted["status"] == "inhibited"
    (step,) = [s for s in muted["trace"] if s.get("result") == "inhibited"]
    cluster_down = decided(server, "ClusterDown", "eu-1")
    assert step["rule"] == "cluster-down" and step["equal"] == {"cluster": "eu-1"}
    assert step["by_event"] == cluster_down["event"]["id"]
    assert step["by_alert"] == f"dedup:prometheus:{cluster_down['event']['dedup_key']}"
    assert "ClusterDown" in step["why"]
    assert decided(server, "HighLatency", "us-1")["status"] == "routed"  # another cluster's warning pages
    assert decided(server, "DiskFull", "eu-1")["status"] == "routed"  # not a target: critical
    wait_until(lambda: len(summaries(pd)) == 3, 20, "three pages")
    assert sorted(summaries(pd)) == ["ClusterDown eu-1", "DiskFull eu-1", "HighLatency us-1"]
    assert server.metric("alertbridge_events_inhibited_total", endpoint="prometheus") == 1
    assert server.metric("alertbridge_events_routed_total", status="inhibited") == 1
    listed = server.cli("events", "list", "--status", "inhibited", "--json").stdout
    assert [row["event"]["id"] for row in json.loads(listed)] == [muted["event"]["id"]]

    payload = tmp_path / "latency.json"
    payload.write_text(json.dumps(notification(latency_eu)))
    dry = server.cli("send", str(payload), "--config", str(server.config), "--dry-run").stdout
    assert "decision: inhibited" in dry and "inhibit rule 'cluster-down'" in dry

    # Alertmanager repeats the still-firing warning while ClusterDown fires: muted again, nothing sent.
    post(server, latency_eu)
    wait_until(lambda: server.metric("alertbridge_events_inhibited_total", endpoint="prometheus") == 2, 20)

    post(server, alert("ClusterDown", "critical", "eu-1", status="resolved"))
    assert decided(server, "ClusterDown", "eu-1", "alertmanager.resolved")["status"] == "unmatched"
    post(server, latency_eu)  # the warning's next notification, now that its cluster is back
    wait_until(lambda: "HighLatency eu-1" in summaries(pd), 20, "the warning of eu-1 paged")
    assert decided(server, "HighLatency", "eu-1")["status"] == "routed"
    dry = server.cli("send", str(payload), "--config", str(server.config), "--dry-run").stdout
    assert "decision: routed" in dry
    assert len(summaries(pd)) == 4


def test_a_real_alertmanager_cluster_down_mutes_its_clusters_warnings_until_it_resolves(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents, tmp_path: Path
) -> None:
    """Debian's Alertmanager as the sender, repeating every firing group each 2 s as it does in
    production: the muted warning pages at Alertmanager's first repeat after ClusterDown resolved."""
    server = server_factory(CONFIG, env(pd))
    receiver = {
        "name": "alertbridge",
        "webhook_configs": [{"url": server.url + PATH, "http_config": {"authorization": {"credentials": AM_TOKEN}}}],
    }
    with Alertmanager(tmp_path, [receiver], route={"repeat_interval": "2s"}) as am:
        am.post_alerts([am_alert("ClusterDown", severity="critical", cluster="eu-1")])
        assert decided(server, "ClusterDown", "eu-1")["status"] == "routed"
        am.post_alerts(
            [
                am_alert("HighLatency", severity="warning", cluster="eu-1"),
                am_alert("HighLatency", severity="warning", cluster="us-1"),
            ]
        )
        assert decided(server, "HighLatency", "eu-1")["status"] == "inhibited"
        assert decided(server, "HighLatency", "us-1")["status"] == "routed"
        # Alertmanager's repeats of the muted warning are routed again, and muted again.
        wait_until(lambda: server.metric("alertbridge_events_inhibited_total", endpoint="prometheus") >= 2, 20)
        assert sorted(summaries(pd)) == ["ClusterDown eu-1", "HighLatency us-1"]

        am.post_alerts([am_alert("ClusterDown", severity="critical", cluster="eu-1", ends=ago(1))])
        decided(server, "ClusterDown", "eu-1", "alertmanager.resolved")
        wait_until(lambda: "HighLatency eu-1" in summaries(pd), 30, "the warning of eu-1 paged at the next repeat")
    assert decided(server, "HighLatency", "eu-1")["status"] == "routed"
    assert sorted(summaries(pd)) == ["ClusterDown eu-1", "HighLatency eu-1", "HighLatency us-1"]


@pytest.mark.skipif(not POSTGRES, reason="replicas share a database on PostgreSQL only")
def test_an_alert_firing_on_one_replica_inhibits_what_another_routes(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents
) -> None:
    first, second = server_factory(CONFIG, env(pd)), server_factory(CONFIG, env(pd))
    post(first, alert("ClusterDown", "critical", "eu-1"))
    decided(first, "ClusterDown", "eu-1")
    first.stop()  # only the second replica is left to route
    post(second, alert("HighLatency", "warning", "eu-1"))
    assert decided(second, "HighLatency", "eu-1")["status"] == "inhibited"
    assert second.metric("alertbridge_events_inhibited_total", endpoint="prometheus") == 1


def test_an_alert_does_not_inhibit_itself_and_a_resolve_is_never_muted(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents
) -> None:
    config = CONFIG.replace("target_matchers: ['severity=\"warning\"']", "target_matchers: ['cluster=~\"eu-.*\"']")
    config = config.replace(
        "    match: { kind: alertmanager.firing }\n",
        "    match: { kind: [alertmanager.firing, alertmanager.resolved] }\n",
    )
    server = server_factory(config, env(pd))
    post(server, alert("ClusterDown", "critical", "eu-1"))  # a source and a target of its own rule
    assert decided(server, "ClusterDown", "eu-1")["status"] == "routed"
    post(server, alert("HighLatency", "warning", "eu-1"))
    assert decided(server, "HighLatency", "eu-1")["status"] == "inhibited"
    post(server, alert("HighLatency", "warning", "eu-1", status="resolved"))
    resolved = decided(server, "HighLatency", "eu-1", "alertmanager.resolved")
    assert resolved["status"] == "routed"  # what paged before ClusterDown fired can always clear


def test_check_refuses_bad_inhibit_rules_and_repeat_intervals_with_their_lines(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents
) -> None:
    routes = CONFIG.split("inhibit_rules:")[0]
    routes = routes.replace("    actions:\n", "    repeat_interval: soon\n    actions:\n", 1)
    config = (
        routes
        + """inhibit_rules:
  - name: bad-regex
    source_matchers: ['alertname=~"(x"']
    target_matchers: ['severity="warning"']
  - name: bad-operator
    source_matchers: ['alertname="ClusterDown"']
    target_matchers: [{name: severity, op: "==", value: warning}]
  - name: no-matchers
    source_matchers: []
    target_matchers: ['severity="warning"']
    equal: ['not a label']
  - name: nothing-to-mute
    source_matchers: ['alertname="ClusterDown"']
"""
    )
    server = server_factory(config, env(pd), start=False)
    result = server.cli("check", "--config", str(server.config), check=False)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    written = server.config.read_text().splitlines()

    def line(text: str, after: int = 0) -> int:
        return next(n for n, row in enumerate(written, 1) if n > after and row.strip().startswith(text))

    rules = line("inhibit_rules:")
    expected = [
        (line("source_matchers: ['alertname=~"), "inhibit_rules[0].source_matchers", "the regex does not compile"),
        (
            line("target_matchers: [{name: severity"),
            "inhibit_rules[1].target_matchers",
            "unknown matcher operator '=='",
        ),
        (line("source_matchers: []"), "inhibit_rules[2].source_matchers", "at least one matcher"),
        (line("equal: ['not a label']"), "inhibit_rules[2].equal[0]", "is not a label name"),
        (line("- name: nothing-to-mute", rules), "inhibit_rules[3].target_matchers", "Field required"),
        (line("repeat_interval: soon"), "routes[0].repeat_interval", "'soon' is not a duration"),
    ]
    for number, field, message in expected:
        assert any(f":{number}: {field}: " in row and message in row for row in out.splitlines()), (field, out)


REPEATING = CONFIG.replace(
    "    match: { kind: alertmanager.firing }\n", "    match: { kind: alertmanager.firing }\n    repeat_interval: 3s\n"
).replace('        key: "page-{{ event.dedup_key }}"\n', "")


def test_repeats_within_repeat_interval_send_nothing_new_and_after_it_page_again(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents
) -> None:
    server = server_factory(REPEATING, env(pd))
    firing = alert("HighLatency", "warning", "us-1")
    post(server, firing)
    first = decided(server, "HighLatency", "us-1")
    (route,) = [s for s in first["trace"] if s.get("route") == "page"]
    assert route["repeat"]["result"] == "first notification of episode 1"
    wait_until(lambda: len(summaries(pd)) == 1, 20, "the first page")

    # (A notification with another startsAt is another firing, a new episode that pages: see
    # test_source_alertmanager. Alertmanager's repeats of one firing carry its startsAt.)
    post(server, firing)  # Alertmanager's repeat of the same alert, at once: a redelivery, not routed again
    assert server.events(status="received") == []
    assert len(summaries(pd)) == 1

    # Alertmanager keeps repeating; once 3 s have passed since the episode opened, the repeat pages again.
    def paged_again() -> bool:
        post(server, firing)
        return len(summaries(pd)) == 2

    wait_until(paged_again, 20, "a page after repeat_interval")
    row = wait_until(lambda: next((r for r in server.events() if r["event"]["id"] == first["event"]["id"]), None))
    (route,) = [s for s in row["trace"] if s.get("route") == "page"]
    assert row["status"] == "routed" and route["repeat"]["repeat"] >= 1
    assert route["repeat"]["result"] == "repeat after repeat_interval: notify again"
    keys = [d["idempotency_key"] for d in server.deliveries()]
    assert len(keys) == 2 and keys[0].endswith("#repeat-1") != keys[1].endswith("#repeat-1")
    assert summaries(pd) == ["HighLatency us-1", "HighLatency us-1"]
