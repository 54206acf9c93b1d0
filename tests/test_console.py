"""The console in a real browser: Playwright driving Debian's Chromium (installed by scripts/setup).

Signs in, sets up the PagerDuty integration, sends seed 001's webhook, watches the bell count rise,
opens the prefilled form, creates the incident and finds it in Incidents; then opens an event,
reads why it was routed, and replays a dead letter. Screenshots go to test-artifacts/console/.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from playwright.sync_api import Browser, Page, expect, sync_playwright

from .conftest import ROOT, Server, wait_until
from .fakes.pagerduty import FakePagerDutyEvents
from .fakes.pagerduty_rest import FakePagerDutyREST
from .test_inbox import SEED_WEBHOOK

# Every answer the page waits for comes from a real server, and a sign-in hashes a password on
# purpose slowly: with both backends' suites on two cores, 5 s (Playwright's default) is not enough.
expect.set_options(timeout=20_000)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT / "test-artifacts" / "console"
API_KEY = "u+console-test-key-9876"

CONFIG = """
endpoints:
  - name: pagerduty
    source: pagerduty
    path: /api/webhooks/pagerduty
    allow_unsigned: true
  - { name: thena, source: thena, path: /thena, token: t }
targets:
  - name: inbox
    type: inbox
  - { name: pd, type: pagerduty_events, url: "${PD_URL}", routing_key: "${PD_KEY}", retry: { max_attempts: 1 } }
routes:
  - name: notify-everyone
    match: { kind: [incident.triggered, incident.acknowledged, incident.resolved] }
    actions: [{ target: inbox, action: notify }]
  - name: page-ticket
    match: { kind: ticket.created, priority: { at_least: P2 } }
    actions: [{ target: pd, action: trigger }]
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "Chromium is missing: ./scripts/setup installs Debian's chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_the_seed_001_flow_and_a_replay_in_the_browser(server_factory: Callable[..., Server], browser: Browser) -> None:
    with FakePagerDutyREST(API_KEY) as rest, FakePagerDutyEvents() as events:
        env = {
            "ALERTBRIDGE_SECRET_KEY": Fernet.generate_key().decode(),
            "PAGERDUTY_API_URL": rest.url,
            "PD_URL": f"{events.url}/v2/enqueue",
            "PD_KEY": "R" * 32,
        }
        server = server_factory(CONFIG, env)
        password = "a long passphrase"
        server.cli("users", "create", "--email", "ops@example.com", "--role", "admin", "--password", password)
        page = browser.new_page(viewport={"width": 1280, "height": 800})

        # Sign in (a wrong password first).
        page.goto(f"{server.url}/console")
        page.fill("input[name=email]", "ops@example.com")
        page.fill("input[name=password]", "wrong password!")
        page.click("button[type=submit]")
        expect(page.locator("#login-error")).to_have_text("wrong email or password")
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Events")
        shot(page, "01-events")

        # The seed's settings flow: enable, copy the URL, enter the key, test, save.
        page.click("text=Settings")
        expect(page.get_by_test_id("webhook-url")).to_have_value(f"{server.url}/api/webhooks/pagerduty")
        page.fill("input[name=apiKey]", API_KEY)
        page.click("#test")
        expect(page.locator("#pd-status")).to_have_text("PagerDuty accepted the API key")
        page.click("text=Save")
        expect(page.locator("#pd-status")).to_have_text("Saved.")
        expect(page.locator("input[name=apiKey]")).to_have_value("••••9876")
        shot(page, "02-settings")

        # The seed's webhook: the bell count rises without a reload.
        expect(page.get_by_test_id("unread")).to_have_text("0")
        assert server.post("/api/webhooks/pagerduty", SEED_WEBHOOK).status_code == 200
        expect(page.get_by_test_id("unread")).to_have_text("1", timeout=10_000)
        page.click("#bell")
        page.click("text=[PagerDuty] Test Database Alert")
        expect(page.locator("input[name=title]")).to_have_value("[PagerDuty] Test Database Alert")
        expect(page.locator("input[name=customer]")).to_have_value("Test Database Service")
        expect(page.locator("select[name=urgency]")).to_have_value("high")
        expect(page.locator("select[name=status]")).to_have_value("open")
        shot(page, "03-prefilled")
        page.click("text=Create incident")
        expect(page.locator("h1")).to_have_text("Incidents")
        expect(page.locator("td", has_text="[PagerDuty] Test Database Alert")).to_be_visible()
        expect(page.get_by_test_id("unread")).to_have_text("0")
        shot(page, "04-incidents")

        # Why an event was routed, and a dead letter replayed.
        events.behave(500, times=1)
        ticket = {
            "eventId": "e1",
            "eventType": "ticket:created",
            "payload": {"ticket": {"id": "T1", "title": "Disk", "priorityName": "High"}},
        }
        assert server.post("/thena?token=t", ticket).status_code == 200
        wait_until(lambda: server.deliveries("dead"), 15, "the dead letter")
        page.click("text=Dead letters")
        page.click("td a")
        expect(page.get_by_test_id("trace")).to_contain_text("page-ticket: matched")
        expect(page.get_by_test_id("trace")).to_contain_text("priority 'P2'")
        shot(page, "05-event")
        page.click("button[data-replay]")
        wait_until(lambda: events.incidents, 15, "the replayed trigger")

        # Everything that failed for a target lately: previewed, then replayed.
        events.behave(500, times=2)
        for n in (2, 3):
            high = {"id": f"T{n}", "title": "Disk", "priorityName": "High"}
            later = {"eventId": f"e{n}", "eventType": "ticket:created", "payload": {"ticket": high}}
            assert server.post("/thena?token=t", later).status_code == 200
        wait_until(lambda: len(server.deliveries("dead")) == 2, 15, "two more dead letters")
        page.click("text=Dead letters")
        page.select_option("select[name=target]", "pd")
        page.click("text=Preview replay")
        expect(page.locator("#bulk-status")).to_contain_text("2 would be replayed")
        shot(page, "06-bulk-replay")
        page.click("#bulk-go")
        expect(page.locator("#bulk-status")).to_have_text("2 queued again.")
        wait_until(lambda: len(events.incidents) == 3, 15, "the two replayed")
        # And on a phone.
        page.set_viewport_size({"width": 390, "height": 844})
        page.click("text=Events")
        expect(page.locator("h1")).to_have_text("Events")
        shot(page, "07-phone-events")
        page.close()


AGENT_SECRET = "console-agent-secret-5151"
HOOK_TOKEN = "console-hook-token-6262"
TEAMS_CONFIG = """
endpoints:
  - { name: thena, source: thena, path: /thena, token: t }
targets:
  - { name: inbox, type: inbox }
routes:
  - name: forward-by-label
    match: { labels.forward_to: { exists: true } }
    actions: [{ target: "{{ labels.forward_to }}", action: forward }]
teams:
  - name: payments
    token: team-token-payments
    routing: { slack_channel_ids: [C0PAYMENTS], github_repos: [acme/payments] }
  - name: search
    token: team-token-search
    routing: { pagerduty_service_ids: [PSEARCH1], services: [search-api] }
"""


def test_teams_and_endpoints_and_targets_made_in_the_browser(
    server_factory: Callable[..., Server], browser: Browser
) -> None:
    from .fakes.agent import FakeAgent

    with FakeAgent(AGENT_SECRET, mode="silent") as agent:
        server = server_factory(TEAMS_CONFIG, {"ALERTBRIDGE_SECRET_KEY": "a console test key of thirty-two chars+"})
        password = "another long passphrase"
        server.cli("users", "create", "--email", "admin@example.com", "--role", "admin", "--password", password)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(f"{server.url}/console")
        page.fill("input[name=email]", "admin@example.com")
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Events")

        # Teams and the identifiers they own, from the file.
        page.click("text=Teams")
        expect(page.locator("h2", has_text="payments")).to_be_visible()
        expect(page.locator("main")).to_contain_text("slack_channel_ids: C0PAYMENTS")
        expect(page.locator("main")).to_contain_text("github_repos: acme/payments")
        expect(page.locator("main")).to_contain_text("pagerduty_service_ids: PSEARCH1")
        expect(page.locator("main")).to_contain_text("services: search-api")
        shot(page, "11-teams")

        # Integrations: the file's objects are there, read-only.
        page.click("text=Integrations")
        expect(page.get_by_test_id("provisioned-thena")).to_have_text("provisioned (read-only)")
        expect(page.get_by_test_id("provisioned-inbox")).to_be_visible()

        # A forward target: type, URL, secret. Shown masked once saved.
        target = page.locator("#target-form")
        target.locator("input[name=name]").fill("agent")
        target.locator("select[name=type]").select_option("forward")
        expect(page.get_by_test_id("target-secret-name")).to_have_text("secret")
        target.locator("input[name=url]").fill(f"{agent.url}/agent")
        target.locator("input[name=secret]").fill(AGENT_SECRET)
        target.locator("button[type=submit]").click()
        expect(page.locator("#target-status")).to_have_text("Saved.")
        row = page.get_by_test_id("targets").locator("tr", has_text="agent")
        expect(row).to_contain_text("••••5151")

        # A generic endpoint: source, path, secret, and its settings; it forwards to the agent.
        endpoint = page.locator("#endpoint-form")
        endpoint.locator("input[name=name]").fill("coralogix")
        endpoint.locator("select[name=source]").select_option("generic")
        expect(page.get_by_test_id("endpoint-secret-name")).to_have_text("token")
        endpoint.locator("input[name=path]").fill("/webhooks/coralogix")
        endpoint.locator("input[name=secret]").fill(HOOK_TOKEN)
        extra = '{"labels": {"forward_to": "agent"}, "fields": {"kind": "\'alert.fired\'", "title": "name"}}'
        endpoint.locator("textarea[name=extra]").fill(extra)
        endpoint.locator("button[type=submit]").click()
        expect(page.locator("#endpoint-status")).to_have_text("Saved.")
        expect(page.get_by_test_id("endpoints").locator("tr", has_text="coralogix")).to_contain_text("••••6262")
        assert AGENT_SECRET not in page.content() and HOOK_TOKEN not in page.content()
        shot(page, "12-integrations")

        # Bad input is refused with what to fix.
        endpoint.locator("input[name=name]").fill("open")
        endpoint.locator("select[name=source]").select_option("generic")
        endpoint.locator("input[name=path]").fill("/webhooks/open")
        endpoint.locator("input[name=secret]").fill("")
        endpoint.locator("textarea[name=extra]").fill("")
        endpoint.locator("button[type=submit]").click()
        expect(page.locator("#endpoint-status")).to_contain_text("needs `token` or `hmac`")

        # A webhook to the new endpoint, over HTTP: in the Events page, and at the agent.
        assert server.post(f"/webhooks/coralogix?token={HOOK_TOKEN}", {"name": "CPU high"}).status_code == 200
        wait_until(lambda: agent.forwards, 15, "the forward to the agent")
        assert agent.verified == [True]
        page.click("text=Events")
        expect(page.locator("td", has_text="CPU high")).to_be_visible(timeout=10_000)
        expect(page.locator("tr", has_text="CPU high")).to_contain_text("coralogix")
        shot(page, "13-event-from-the-new-endpoint")

        # Edited (a new path; the secret left as it was), then the target deleted.
        page.click("text=Integrations")
        page.click("[data-edit='endpoint:coralogix']")
        expect(page.locator("#endpoint-form input[name=secret]")).to_have_attribute(
            "placeholder", "unchanged (••••6262)"
        )
        endpoint.locator("input[name=path]").fill("/webhooks/coralogix2")
        endpoint.locator("button[type=submit]").click()
        expect(page.locator("#endpoint-status")).to_have_text("Saved.")
        assert server.post(f"/webhooks/coralogix2?token={HOOK_TOKEN}", {"name": "CPU again"}).status_code == 200
        assert server.post(f"/webhooks/coralogix?token={HOOK_TOKEN}", {"name": "old path"}).status_code == 404
        page.click("[data-delete='target:agent']")
        expect(page.get_by_test_id("targets").locator("tr", has_text="agent")).to_have_count(0)
        shot(page, "14-integrations-after-edit-and-delete")
        page.set_viewport_size({"width": 390, "height": 844})
        shot(page, "15-phone-integrations")
        page.close()
