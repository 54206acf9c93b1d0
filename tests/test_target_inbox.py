"""Inbox target, unit: it has no HTTP side; `apply` writes notifications in the store (the test's
backend, no server), prefilled as seed 001 maps a PagerDuty incident."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from alertbridge.events import Event, Service, Subject
from alertbridge.store import Store, open_store
from alertbridge.targets.inbox import TARGET, Settings, prefill

from .answers import NOW, answer, sending

EVENT = Event(
    id="01JEVENT000000000000000000",
    org="default",
    endpoint="pagerduty",
    source="pagerduty",
    kind="incident.acknowledged",
    received_at=NOW - 1,
    delivery_key="01G0EKZQVH3NZFMX9MG7S8WH1T",
    subject=Subject("pagerduty", "incident", "PT4KHLK"),
    title="The server is on fire.",
    description="A disk is getting full on this machine.",
    urgency="high",
    status="acknowledged",
    service=Service("PWIXJZS", "My Mail Service"),
    url="https://subdomain.pagerduty.com/incidents/PT4KHLK",
)


def test_the_inbox_sends_nothing_over_http() -> None:
    with pytest.raises(RuntimeError, match="local"):
        TARGET.request(Settings(), "notify", {}, sending("notify", EVENT))
    with pytest.raises(RuntimeError, match="local"):
        TARGET.classify(answer(200), Settings(), {}, sending("notify", EVENT))


def test_prefill_maps_the_incident_as_seed_001_does() -> None:
    assert prefill(EVENT, "[PagerDuty]") == {
        "title": "[PagerDuty] The server is on fire.",
        "description": "A disk is getting full on this machine.\n\n"
        "PagerDuty incident: https://subdomain.pagerduty.com/incidents/PT4KHLK\n\n"
        "Service: My Mail Service\n\nPagerDuty status: acknowledged",
        "urgency": "high",
        "criticality": "high",
        "status": "investigating",
        "customer": "My Mail Service",
        "tags": ["source:pagerduty", "service:My Mail Service", "urgency:high", "pagerduty-id:PT4KHLK"],
    }
    low = prefill(msgspec.structs.replace(EVENT, urgency="low", status="odd"), "")
    assert (low["urgency"], low["status"], low["title"]) == ("medium", "open", "The server is on fire.")
    assert prefill(None, "[PagerDuty]") == {}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


@pytest.mark.anyio
async def test_notify_reaches_every_user_of_the_org(store: Store) -> None:
    for email in ("ana@example.com", "bo@example.com"):
        await store.create_user("default", email, "hash", "member", NOW)
    await store.create_user("other", "cy@example.com", "hash", "member", NOW)
    assert TARGET.local is not None
    fields = {"key": "PT4KHLK", "body": EVENT.description, "link": EVENT.url}
    outcome = await TARGET.local(store, Settings(), "notify", fields, sending("notify", EVENT))
    assert (outcome.kind, outcome.result) == ("success", {"key": "PT4KHLK", "users": 2})
    [note] = await store.notifications("default", "ana@example.com")
    assert (note["title"], note["body"], note["link"]) == (
        "[PagerDuty] The server is on fire.",
        EVENT.description,
        EVENT.url,
    )
    assert await store.notifications("other", "cy@example.com") == []
    unknown = await TARGET.local(store, Settings(), "page", fields, sending("page", EVENT))
    assert unknown.kind == "permanent"
