"""Silences and maintenance windows through the real server: made with the admin API, the CLI and
Debian's `amtool` (against alertbridge's Alertmanager API), fed by a real Alertmanager and by
webhooks posted directly, with PagerDuty's fake behind the route. A silenced alert pages nobody and
its trace says why; once the silence expires, Alertmanager's next notification of the still-firing
alert pages. Bad input is a 400 that says what is wrong, and nothing is saved."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from .alertmanager import Alertmanager, alert
from .backends import POSTGRES
from .conftest import Server, wait_until
from .fakes.pagerduty import FakePagerDutyEvents
from .test_admin_api import token
from .test_source_alertmanager import notification, posted_alert

AM_TOKEN = "am-bearer-5ilence"
PATH = "/webhooks/alertmanager"
PASSWORD = "user-password-0f-ops"

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
        summary: "{{ event.title }}"
delivery:
  retry: {backoff_base: 0.2, backoff_cap: 1}
"""


@pytest.fixture
def pd() -> Iterator[FakePagerDutyEvents]:
    with FakePagerDutyEvents() as fake:
        yield fake


def env(pd: FakePagerDutyEvents) -> dict[str, str]:
    return {"AM_TOKEN": AM_TOKEN, "PD_EVENTS_URL": pd.url + "/v2/enqueue"}


@pytest.fixture
def server(server_factory: Callable[..., Server], pd: FakePagerDutyEvents) -> Server:
    return server_factory(CONFIG, env(pd))


def triggers(pd: FakePagerDutyEvents) -> list[dict[str, Any]]:
    return [r.json for r in pd.requests if r.path.endswith("/enqueue") and r.json["event_action"] == "trigger"]


def fire(server: Server, **labels: str) -> None:
    answer = server.post(PATH, notification(posted_alert(**labels)), headers={"authorization": f"Bearer {AM_TOKEN}"})
    assert answer.status_code == 200, answer.text


def decided(server: Server, instance: str) -> dict[str, Any]:
    """The newest event of the alert on `instance`, once routed."""
    return dict(
        wait_until(
            lambda: next(
                (e for e in server.events() if e["event"]["labels"].get("instance") == instance and e["routed_at"]),
                None,
            ),
            20,
            f"the alert on {instance} routed",
        )
    )


def amtool(server: Server, tmp_path: Path, headers: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Debian's amtool against alertbridge, authenticated by an `--http.config.file` as its docs say."""
    http_config = tmp_path / "amtool-http.yml"
    bearer = headers["Authorization"].removeprefix("Bearer ")
    http_config.write_text(json.dumps({"authorization": {"type": "Bearer", "credentials": bearer}}))
    command = ["amtool", f"--alertmanager.url={server.url}", f"--http.config.file={http_config}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_amtool_silence_mutes_a_firing_alert_and_once_expired_the_next_notification_pages(
    server: Server, pd: FakePagerDutyEvents, tmp_path: Path
) -> None:
    admin = token(server, "default", "member")
    made = amtool(
        server, tmp_path, admin, "silence", "add", "alertname=DiskFull", 'instance=~"db-.*"',
        "--comment=disk swap on db", "--author=ops@example.com", "--duration=1h",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    silence_id = made.stdout.strip()
    query = amtool(server, tmp_path, admin, "silence", "query", "-o", "json")
    assert query.returncode == 0, query.stderr
    (listed,) = json.loads(query.stdout)
    assert listed["id"] == silence_id and listed["status"]["state"] == "active"
    assert listed["createdBy"] == "ops@example.com" and listed["comment"] == "disk swap on db"
    assert {(m["name"], m["value"], m["isRegex"]) for m in listed["matchers"]} == {
        ("alertname", "DiskFull", False),
        ("instance", "db-.*", True),
    }

    receiver = {
        "name": "alertbridge",
        "webhook_configs": [{"url": server.url + PATH, "http_config": {"authorization": {"credentials": AM_TOKEN}}}],
    }
    # Alertmanager sends the still-firing group again every repeat_interval, as it does in production.
    with Alertmanager(tmp_path, [receiver], route={"repeat_interval": "2s"}) as am:
        am.post_alerts([alert("DiskFull", instance="db-1", severity="critical")])
        am.post_alerts([alert("DiskFull", instance="web-1", severity="critical")])  # not silenced
        row = decided(server, "db-1")
        assert row["status"] == "silenced"
        (step,) = [s for s in row["trace"] if s.get("result") == "silenced"]
        assert step["silence"] == silence_id and step["by"] == "ops@example.com"
        assert step["comment"] == "disk swap on db" and step["until"].endswith("Z")
        assert decided(server, "web-1")["status"] == "routed"
        # Each repeat routes the silenced alert again: still silenced, still nothing sent for it.
        wait_until(lambda: server.metric("alertbridge_events_silenced_total", endpoint="prometheus") >= 2, 20)
        assert [t["payload"]["summary"] for t in triggers(pd)] == ["DiskFull"]  # web-1's only
        listed_cli = server.cli("events", "list", "--status", "silenced").stdout
        assert "silenced" in listed_cli

        expired = amtool(server, tmp_path, admin, "silence", "expire", silence_id)
        assert expired.returncode == 0, expired.stderr
        wait_until(lambda: len(triggers(pd)) == 2, 20, "db-1 paged after its silence expired")
    assert decided(server, "db-1")["status"] == "routed"
    again = amtool(server, tmp_path, admin, "silence", "query", "--expired", "-o", "json")
    assert json.loads(again.stdout)[0]["status"]["state"] == "expired"


def test_admin_api_silences_and_bad_input(server: Server, pd: FakePagerDutyEvents) -> None:
    member, viewer = token(server, "default", "member"), token(server, "default", "viewer")
    other = token(server, "globex", "admin")
    api = server.client
    bad = [
        ({"matchers": ["alertname=~(disk"], "duration": "1h"}, "the regex does not compile"),
        ({"matchers": [], "duration": "1h"}, "at least one matcher"),
        ({"matchers": [{"name": "a", "op": "<>", "value": "b"}], "duration": "1h"}, "unknown matcher operator '<>'"),
        (
            {"matchers": ["a=b"], "starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"},
            "must be after starts_at",
        ),
        ({"matchers": ["a=b"]}, "ends_at or duration is required"),
        ({"matchers": ["a=b"], "window": {"days": ["mon"], "start": "25:00", "duration": "1h", "timezone": "UTC"}},
         "'25:00' is not a time of day"),
        ({"matchers": ["a=b"],
          "window": {"days": ["mon"], "start": "01:00", "duration": "1h", "timezone": "Mars/Base"}},
         "unknown time zone 'Mars/Base'"),
    ]  # fmt: skip
    for body, message in bad:
        answer = api.post("/api/v1/silences", json=body, headers=member)
        assert answer.status_code == 400, (body, answer.text)
        assert message in answer.json()["detail"], answer.text
    assert api.get("/api/v1/silences", headers=member).json() == []  # nothing saved

    assert api.post("/api/v1/silences", json={"matchers": ["a=b"], "duration": "1h"}, headers=viewer).status_code == 403
    made = api.post(
        "/api/v1/silences",
        json={"matchers": ["alertname=Probe", 'instance="db-1"'], "duration": "2h", "comment": "reboot"},
        headers=member,
    )
    assert made.status_code == 201, made.text
    silence = made.json()
    assert silence["state"] == "active" and silence["created_by"] == "default-member"
    assert api.get(f"/api/v1/silences/{silence['id']}", headers=viewer).json()["comment"] == "reboot"
    assert api.get(f"/api/v1/silences/{silence['id']}", headers=other).status_code == 404  # another org's

    fire(server, instance="db-1")
    row = decided(server, "db-1")
    assert row["status"] == "silenced" and row["trace"][0]["silence"] == silence["id"]
    assert triggers(pd) == []

    # The dry run says so too, reading the store.
    payload = server.workdir / "probe.json"
    payload.write_text(json.dumps(notification(posted_alert(instance="db-1"))))
    dry = server.cli("send", str(payload), "--config", str(server.config), "--dry-run").stdout
    assert "silenced" in dry and silence["id"] in dry

    expired = api.delete(f"/api/v1/silences/{silence['id']}", headers=member)
    assert expired.status_code == 200 and expired.json()["state"] == "expired"
    assert api.delete(f"/api/v1/silences/{silence['id']}", headers=member).status_code == 409
    assert api.delete("/api/v1/silences/no-such-id", headers=member).status_code == 404
    assert "/silences" in str(api.get("/api/v1/openapi.json").json()["paths"])

    fire(server, instance="db-2")
    assert decided(server, "db-2")["status"] == "routed"
    wait_until(lambda: len(triggers(pd)) == 1, 20, "db-2 paged")


def test_cli_silence_add_list_expire(server: Server, pd: FakePagerDutyEvents) -> None:
    silence_id = server.cli(
        "silence", "add", "alertname=Probe", "event.endpoint=prometheus", "--duration", "30m",
        "--comment", "planned restart", "--author", "sam",
    ).stdout.strip()  # fmt: skip
    (listed,) = server.cli_json("silence", "list")
    assert listed["id"] == silence_id and listed["state"] == "active" and listed["created_by"] == "sam"
    assert listed["matchers"] == ['alertname="Probe"', 'event.endpoint="prometheus"']
    assert silence_id in server.cli("silence", "list").stdout  # the Rich table

    fire(server, instance="a")
    row = decided(server, "a")
    assert row["status"] == "silenced" and "planned restart" in row["trace"][0]["why"]
    assert "silenced" in server.cli("events", "show", row["event"]["id"]).stdout

    refused = server.cli("silence", "add", "alertname=~(x", check=False)
    assert refused.returncode == 2 and "does not compile" in refused.stderr
    server.cli("silence", "expire", silence_id)
    assert server.cli_json("silence", "list") == []
    assert server.cli_json("silence", "list", "--expired")[0]["state"] == "expired"
    assert server.cli("silence", "expire", silence_id, check=False).returncode == 1

    fire(server, instance="b")
    assert decided(server, "b")["status"] == "routed"
    wait_until(lambda: len(triggers(pd)) == 1, 20, "b paged")


def _window_now(zone: str) -> tuple[str, str]:
    """A day and a start that put the window around now (it began a minute ago), in `zone`."""
    began = dt.datetime.now(ZoneInfo(zone)) - dt.timedelta(minutes=1)
    return began.strftime("%a").lower(), began.strftime("%H:%M")


def test_maintenance_windows_from_the_file_and_the_api(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents
) -> None:
    day, start = _window_now("America/New_York")
    config = (
        CONFIG
        + f"""
maintenance:
  - name: nightly-db
    matchers: ['alertname="Probe"', 'instance=~"db-.*"']
    days: [{day}]
    start: "{start}"
    duration: 1h
    timezone: America/New_York
    comment: backups
"""
    )
    server = server_factory(config, env(pd))
    fire(server, instance="db-1")
    row = decided(server, "db-1")
    assert row["status"] == "silenced"
    assert row["trace"][0]["window"] == "nightly-db" and row["trace"][0]["comment"] == "backups"
    fire(server, instance="web-1")  # outside the window's matchers: pages
    assert decided(server, "web-1")["status"] == "routed"

    member = token(server, "default", "member")
    listed = server.client.get("/api/v1/silences", headers=member).json()
    assert [(s["name"], s["provisioned"]) for s in listed] == [("nightly-db", True)]
    day, start = _window_now("Asia/Tokyo")
    made = server.client.post(
        "/api/v1/silences",
        json={
            "matchers": ["instance=web-2"],
            "name": "web patching",
            "window": {"days": [day], "start": start, "duration": "2h", "timezone": "Asia/Tokyo"},
        },
        headers=member,
    )
    assert made.status_code == 201, made.text
    fire(server, instance="web-2")
    row = decided(server, "web-2")
    assert row["status"] == "silenced" and row["trace"][0]["window"] == "web patching"
    wait_until(lambda: len(triggers(pd)) == 1, 20, "web-1 paged")
    assert server.metric("alertbridge_events_silenced_total", endpoint="prometheus") == 2


def test_check_reports_impossible_windows_with_their_lines(server_factory: Callable[..., Server]) -> None:
    config = (
        CONFIG
        + """
maintenance:
  - name: bad
    matchers: ['alertname=~"(x"']
    days: [mon, someday]
    start: "25:00"
    duration: 0
    timezone: Europe/Atlantis
"""
    )
    server = server_factory(config, env_without_pd(), start=False)
    result = server.cli("check", "--config", str(server.config), check=False)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    written = server.config.read_text().splitlines()

    def line(text: str) -> int:
        return next(n for n, row in enumerate(written, 1) if row.strip().startswith(text))

    expected = [
        (line("matchers: ['alertname=~"), "maintenance[0].matchers", "the regex does not compile"),
        (line("days: [mon, someday]"), "maintenance[0].days", "unknown day 'someday'"),
        (line('start: "25:00"'), "maintenance[0].start", "'25:00' is not a time of day"),
        (line("duration: 0"), "maintenance[0].duration", "0.0 must be more than zero"),
        (line("timezone: Europe/Atlantis"), "maintenance[0].timezone", "unknown time zone 'Europe/Atlantis'"),
    ]
    for number, field, message in expected:
        assert any(f":{number}: {field}: " in row and message in row for row in out.splitlines()), (field, out)


def env_without_pd() -> dict[str, str]:
    return {"AM_TOKEN": AM_TOKEN, "PD_EVENTS_URL": "http://127.0.0.1:9/v2/enqueue"}


@pytest.mark.skipif(not POSTGRES, reason="replicas share a database on PostgreSQL only")
def test_a_silence_made_on_one_replica_mutes_what_another_routes(
    server_factory: Callable[..., Server], pd: FakePagerDutyEvents
) -> None:
    first = server_factory(CONFIG, env(pd))
    second = server_factory(CONFIG, env(pd))
    member = token(first, "default", "member")
    made = first.client.post("/api/v1/silences", json={"matchers": ["instance=db-9"], "duration": "1h"}, headers=member)
    assert made.status_code == 201
    first.stop()  # only the second replica is left to route
    fire(second, instance="db-9")
    row = decided(second, "db-9")
    assert row["status"] == "silenced" and row["trace"][0]["silence"] == made.json()["id"]
    assert second.metric("alertbridge_events_silenced_total", endpoint="prometheus") == 1
    assert triggers(pd) == []


def test_alertmanager_api_takes_a_token_or_a_users_basic_auth(server: Server, tmp_path: Path) -> None:
    server.cli("users", "create", "--email", "ops@example.com", "--role", "member", "--password", PASSWORD)
    server.cli("users", "create", "--email", "watcher@example.com", "--role", "viewer", "--password", PASSWORD)
    api = server.client
    body = {
        "matchers": [{"name": "alertname", "value": "Probe", "isRegex": False, "isEqual": True}],
        "startsAt": "2020-01-01T00:00:00Z",  # in the past: it starts now, as Alertmanager does
        "endsAt": "9000-01-01T00:00:00.000Z",
        "createdBy": "grafana",
        "comment": "from Grafana's Alertmanager data source",
    }
    assert api.get("/api/v2/silences").status_code == 401
    assert api.post("/api/v2/silences", json=body, auth=("ops@example.com", "wrong-password")).status_code == 401
    viewer = api.post("/api/v2/silences", json=body, auth=("watcher@example.com", PASSWORD))
    assert viewer.status_code == 403 and "viewer" in viewer.text
    made = api.post("/api/v2/silences", json=body, auth=("ops@example.com", PASSWORD))
    assert made.status_code == 200, made.text
    silence_id = made.json()["silenceID"]
    got = api.get(f"/api/v2/silence/{silence_id}", auth=("watcher@example.com", PASSWORD)).json()
    assert got["status"]["state"] == "active" and got["createdBy"] == "grafana"

    bad = api.post(
        "/api/v2/silences",
        json={**body, "matchers": [{"name": "alertname", "value": "(x", "isRegex": True}]},
        auth=("ops@example.com", PASSWORD),
    )
    assert bad.status_code == 400 and "does not compile" in bad.text  # plain text, as Alertmanager answers
    ended = api.post(
        "/api/v2/silences", json={**body, "endsAt": "2021-01-01T00:00:00Z"}, auth=("ops@example.com", PASSWORD)
    )
    assert ended.status_code == 400 and "must be after starts_at" in ended.text
    assert len(api.get("/api/v2/silences", auth=("ops@example.com", PASSWORD)).json()) == 1  # nothing else saved
    filtered = api.get("/api/v2/silences", params={"filter": "alertname=Other"}, auth=("ops@example.com", PASSWORD))
    assert filtered.json() == []

    # Editing (POST with its id) replaces it: the old one expires, a new one is made.
    edited = api.post(
        "/api/v2/silences", json={**body, "id": silence_id, "comment": "longer"}, auth=("ops@example.com", PASSWORD)
    )
    assert edited.status_code == 200 and edited.json()["silenceID"] != silence_id
    states = {
        s["id"]: s["status"]["state"] for s in api.get("/api/v2/silences", auth=("ops@example.com", PASSWORD)).json()
    }
    assert states == {silence_id: "expired", edited.json()["silenceID"]: "active"}
    assert api.delete(f"/api/v2/silence/{silence_id}", auth=("ops@example.com", PASSWORD)).status_code == 500
    assert PASSWORD not in server.logs()

    # amtool with basic auth in its http config, as its docs configure it.
    http_config = tmp_path / "basic.yml"
    http_config.write_text(json.dumps({"basic_auth": {"username": "ops@example.com", "password": PASSWORD}}))
    query = subprocess.run(
        ["amtool", f"--alertmanager.url={server.url}", f"--http.config.file={http_config}", "silence", "query", "-q"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert query.returncode == 0 and query.stdout.split() == [edited.json()["silenceID"]], query.stderr
