"""Endpoints and targets made, changed and removed through the admin API, over HTTP against the real
server: live at once, still there after a restart, another org's a 404, the file's read-only,
secrets masked and never in the clear on disk or in the log, bad input refused changing nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .backends import POSTGRES
from .conftest import Server, wait_until
from .fakes.agent import FakeAgent

AGENT_SECRET = "agent-signing-secret-4242"
HOOK_TOKEN = "hook-token-for-acme-7777"
SECRET_KEY = "a secret key of at least thirty-two characters"

CONFIG = """
endpoints:
  - { name: thena-a, source: thena, path: /a/thena, token: tok-a, org: acme }
  - { name: thena-b, source: thena, path: /b/thena, token: tok-b, org: globex }
targets:
  - name: pd
    type: pagerduty_events
    url: http://127.0.0.1:9/v2/enqueue
    routing_key: ${PD_KEY}
routes:
  - name: forward-by-label
    match: { labels.forward_to: { exists: true } }
    actions: [{ target: "{{ labels.forward_to }}", action: forward }]
"""


@pytest.fixture
def agent() -> Iterator[FakeAgent]:
    with FakeAgent(AGENT_SECRET, mode="silent") as fake:
        yield fake


@pytest.fixture
def server(server_factory: Callable[..., Server]) -> Server:
    return server_factory(CONFIG, {"PD_KEY": "R" * 32, "ALERTBRIDGE_SECRET_KEY": SECRET_KEY})


def token(server: Server, org: str, role: str = "admin") -> dict[str, str]:
    made = server.cli("tokens", "create", "--org", org, "--role", role, "--name", f"{org}-{role}").stdout.strip()
    return {"Authorization": f"Bearer {made}"}


def forward_target(agent: FakeAgent, name: str = "agent-a") -> dict[str, Any]:
    return {"name": name, "type": "forward", "url": f"{agent.url}/agent", "secret": AGENT_SECRET, "timeout": "5s"}


def hook(path: str = "/hooks/a", forward_to: str = "agent-a") -> dict[str, Any]:
    return {
        "name": "hook-a",
        "source": "generic",
        "path": path,
        "token": HOOK_TOKEN,
        "labels": {"forward_to": forward_to},
        "fields": {"kind": "'alert.fired'", "title": "name", "delivery_key": "id"},
    }


def alert(n: int) -> dict[str, Any]:
    return {"id": f"alert-{n}", "name": f"disk full {n}"}


def on_disk(workdir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in workdir.glob("alertbridge.db*"))


def test_made_live_changed_removed_and_kept_over_a_restart(server: Server, agent: FakeAgent) -> None:
    acme, client = token(server, "acme"), server.client
    made = client.post("/api/v1/targets", json=forward_target(agent), headers=acme)
    assert made.status_code == 201, made.text
    target = made.json()
    assert (target["provisioned"], target["read_only"], target["org"]) == (False, False, "acme")
    assert target["settings"]["secret"] == "••••4242" and target["timeout"] == 5.0
    made = client.post("/api/v1/endpoints", json=hook(), headers=acme)
    assert made.status_code == 201, made.text
    endpoint = made.json()
    assert endpoint["settings"]["token"] == "••••7777" and endpoint["path"] == "/hooks/a"

    # Live without a restart: the webhook is taken, routed by the file's route, forwarded signed.
    assert server.post("/hooks/a?token=wrong", alert(0)).status_code == 403
    assert server.post(f"/hooks/a?token={HOOK_TOKEN}", alert(1)).status_code == 200
    wait_until(lambda: agent.forwards, 15, "the forward")
    assert agent.verified == [True] and agent.forwards[0]["data"]["title"] == "disk full 1"

    listed = client.get("/api/v1/endpoints", headers=acme).json()
    assert [(e["name"], e["provisioned"]) for e in listed] == [("thena-a", True), ("hook-a", False)]
    assert listed[0]["settings"] == {"token": "••••"}  # the file's secrets are masked too
    assert client.get("/api/v1/endpoints/hook-a", headers=acme).json() == endpoint
    targets = {t["name"]: t for t in client.get("/api/v1/targets", headers=acme).json()}
    assert targets["pd"]["provisioned"] and targets["pd"]["settings"]["routing_key"] == "••••RRRR"
    assert targets["agent-a"]["updated_by"] == "acme-admin"

    # Changed: a new path, the masked token sent back as shown keeps the secret.
    changed = client.put("/api/v1/endpoints/hook-a", json={**endpoint["settings"], **hook("/hooks/a2")}, headers=acme)
    assert changed.status_code == 200, changed.text
    again = {**hook("/hooks/a2"), "token": "••••7777"}
    assert client.put("/api/v1/endpoints/hook-a", json=again, headers=acme).json()["settings"]["token"] == "••••7777"
    assert server.post(f"/hooks/a?token={HOOK_TOKEN}", alert(2)).status_code == 404
    assert server.post(f"/hooks/a2?token={HOOK_TOKEN}", alert(3)).status_code == 200
    wait_until(lambda: len(agent.forwards) == 2, 15, "the forward from the new path")
    # The target changed (a header added, the secret kept): the next forward carries it.
    updated = {**forward_target(agent), "secret": "••••4242", "headers": {"X-Team": "payments"}}
    answer = client.put("/api/v1/targets/agent-a", json=updated, headers=acme)
    assert answer.status_code == 200 and answer.json()["settings"]["headers"] == {"X-Team": "••••"}

    # Kept over a restart (loaded at start-up), secrets still working.
    server.stop()
    server.start()
    assert server.post(f"/hooks/a2?token={HOOK_TOKEN}", alert(4)).status_code == 200
    wait_until(lambda: len(agent.forwards) == 3, 15, "a forward after the restart")
    assert agent.verified == [True, True, True]

    # Removed: the target first (the event then fails to route, saying why), then the endpoint.
    assert client.delete("/api/v1/targets/agent-a", headers=acme).status_code == 204
    assert server.post(f"/hooks/a2?token={HOOK_TOKEN}", alert(5)).status_code == 200
    failed = wait_until(lambda: server.events("failed"), 15, "the event with nowhere to go")
    shown = client.get(f"/api/v1/events/{failed[0]['event']['id']}", headers=acme).json()
    assert "no target named 'agent-a'" in str(shown["trace"])
    assert client.delete("/api/v1/endpoints/hook-a", headers=acme).status_code == 204
    assert server.post(f"/hooks/a2?token={HOOK_TOKEN}", alert(6)).status_code == 404
    assert client.get("/api/v1/endpoints/hook-a", headers=acme).status_code == 404
    server.stop()
    server.start()
    assert server.post(f"/hooks/a2?token={HOOK_TOKEN}", alert(7)).status_code == 404
    assert [t["name"] for t in client.get("/api/v1/targets", headers=acme).json()] == ["pd"]

    # Never in the clear: not on disk, not in the log.
    for secret in (AGENT_SECRET, HOOK_TOKEN):
        assert secret.encode() not in on_disk(server.workdir)
        assert secret not in server.logs()
    assert "object_saved" in server.logs() and "object_deleted" in server.logs()


def test_the_org_wall_roles_and_what_the_file_provisions(server: Server, agent: FakeAgent) -> None:
    acme, globex, client = token(server, "acme"), token(server, "globex"), server.client
    assert client.post("/api/v1/targets", json=forward_target(agent), headers=acme).status_code == 201
    assert client.post("/api/v1/endpoints", json=hook(), headers=acme).status_code == 201

    # Another org's objects do not exist for globex…
    for path in ("/api/v1/endpoints/hook-a", "/api/v1/targets/agent-a"):
        assert client.get(path, headers=globex).status_code == 404
        assert client.put(path, json=hook(), headers=globex).status_code == 404
        assert client.delete(path, headers=globex).status_code == 404
    assert [e["name"] for e in client.get("/api/v1/endpoints", headers=globex).json()] == ["thena-b"]
    assert [t["name"] for t in client.get("/api/v1/targets", headers=globex).json()] == ["pd"]
    # …but names and paths are the server's: taken is taken (without saying by whom).
    taken = client.post("/api/v1/targets", json=forward_target(agent), headers=globex)
    assert taken.status_code == 409 and taken.json()["detail"] == "a target named agent-a exists already"
    theirs = {**hook(forward_to="agent-a"), "name": "hook-b"}
    assert client.post("/api/v1/endpoints", json=theirs, headers=globex).status_code == 409  # the path
    # And an event of globex cannot reach acme's target by naming it.
    made = client.post("/api/v1/endpoints", json={**theirs, "path": "/hooks/b"}, headers=globex)
    assert made.status_code == 201, made.text
    assert server.post(f"/hooks/b?token={HOOK_TOKEN}", alert(1)).status_code == 200
    wait_until(lambda: server.events("failed"), 15, "globex's event refused acme's target")
    assert agent.forwards == []

    # Roles: only admins change anything.
    for role in ("viewer", "member"):
        other = {**forward_target(agent, f"by-{role}")}
        refused = client.post("/api/v1/targets", json=other, headers=token(server, "acme", role))
        assert refused.status_code == 403 and "admin" in refused.json()["detail"]

    # The file's objects are read-only here, and say so; another org's file endpoint is a 404.
    refused = client.put("/api/v1/endpoints/thena-a", json={"name": "thena-a"}, headers=acme)
    assert refused.status_code == 409 and "provisioned" in refused.json()["detail"]
    assert client.delete("/api/v1/targets/pd", headers=globex).status_code == 409
    assert client.put("/api/v1/endpoints/thena-a", json={"name": "thena-a"}, headers=globex).status_code == 404
    same_name = {**forward_target(agent), "name": "pd"}
    assert client.post("/api/v1/targets", json=same_name, headers=acme).status_code == 409
    file_path = {**hook("/a/thena"), "name": "other"}
    assert client.post("/api/v1/endpoints", json=file_path, headers=acme).status_code == 409


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        ("endpoints", {**hook(), "source": "nope"}, "source: unknown source 'nope'"),
        ("endpoints", {k: v for k, v in hook().items() if k != "token"}, "needs `token` or `hmac`"),
        ("endpoints", hook("/api/v1/events"), "path: /api/v1/events is the server's own"),
        ("endpoints", hook("no-slash"), "path: a URL path"),
        ("endpoints", {**hook(), "fields": {"title": "name[["}}, "fields"),
        ("endpoints", {**hook(), "labels": {"x": "{{ nope("}}, "labels"),
        ("endpoints", {**hook(), "name": "white space"}, "name: 1 to 64 letters"),
        ("endpoints", {**hook(), "org": "globex"}, "org: an object belongs to the org"),
        ("endpoints", {**hook(), "token": "••••7777"}, "token: a masked value"),
        ("targets", {"name": "t", "type": "forward"}, "url: Field required"),
        ("targets", {"name": "t", "type": "forward", "url": "http://x", "colour": "red"}, "colour: unknown field"),
        ("targets", {"name": "t", "type": "fax"}, "type: unknown target type 'fax'"),
        ("targets", {"name": "t", "type": "forward", "url": "http://x", "notes_to": "pd2"}, "no target named 'pd2'"),
        ("targets", {"name": "t", "type": "inbox", "timeout": "soon"}, "timeout: 'soon' is not a duration"),
        ("targets", {"type": "inbox"}, "name:"),
    ],
)
def test_bad_input_is_refused_with_what_to_fix_and_changes_nothing(
    server: Server, kind: str, body: dict[str, Any], message: str
) -> None:
    acme, client = token(server, "acme"), server.client
    before = client.get(f"/api/v1/{kind}", headers=acme).json()
    answer = client.post(f"/api/v1/{kind}", json=body, headers=acme)
    assert answer.status_code == 422 and message in answer.json()["detail"], answer.text
    assert client.get(f"/api/v1/{kind}", headers=acme).json() == before
    assert "Traceback" not in server.logs()


def test_bad_changes_are_refused_and_the_object_stays_as_it_was(server: Server, agent: FakeAgent) -> None:
    acme, client = token(server, "acme"), server.client
    assert client.post("/api/v1/targets", json=forward_target(agent), headers=acme).status_code == 201
    assert client.post("/api/v1/endpoints", json=hook(), headers=acme).status_code == 201
    before = client.get("/api/v1/endpoints/hook-a", headers=acme).json()
    renamed = client.put("/api/v1/endpoints/hook-a", json={**hook(), "name": "hook-z"}, headers=acme)
    assert renamed.status_code == 422 and "renamed" in renamed.json()["detail"]
    broken = client.put("/api/v1/endpoints/hook-a", json={**hook(), "source": "nope"}, headers=acme)
    assert broken.status_code == 422
    not_json = client.post("/api/v1/endpoints", content=b"[1, 2]", headers={**acme, "content-type": "application/json"})
    assert not_json.status_code == 422
    assert client.get("/api/v1/endpoints/hook-a", headers=acme).json() == before
    assert server.post(f"/hooks/a?token={HOOK_TOKEN}", alert(1)).status_code == 200  # still live as it was
    # A target another refers to (notes_to) cannot go before it does.
    notes = {"name": "notes", "type": "pagerduty_rest", "token": "pd-rest-token"}
    assert client.post("/api/v1/targets", json=notes, headers=acme).status_code == 201
    uses = {**forward_target(agent, "agent-n"), "notes_to": "notes"}
    assert client.post("/api/v1/targets", json=uses, headers=acme).status_code == 201
    refused = client.delete("/api/v1/targets/notes", headers=acme)
    assert refused.status_code == 409 and "agent-n refers to notes" in refused.json()["detail"]


def test_without_a_secret_key_secrets_are_refused_with_a_clear_message(server_factory: Callable[..., Server]) -> None:
    server = server_factory(CONFIG, {"PD_KEY": "R" * 32, "ALERTBRIDGE_SECRET_KEY": ""})
    acme = token(server, "acme")
    refused = server.client.post("/api/v1/endpoints", json=hook(), headers=acme)
    assert refused.status_code == 409 and "ALERTBRIDGE_SECRET_KEY" in refused.json()["detail"], refused.text
    assert server.client.get("/api/v1/endpoints/hook-a", headers=acme).status_code == 404
    # An object without secrets needs no key.
    inbox = server.client.post("/api/v1/targets", json={"name": "inbox", "type": "inbox"}, headers=acme)
    assert inbox.status_code == 201


def test_the_catalog_names_every_source_and_target_type_and_their_secrets(server: Server) -> None:
    catalog = server.client.get("/api/v1/catalog", headers=token(server, "acme", "viewer")).json()
    kinds = {k["name"]: k for k in catalog["sources"] + catalog["targets"]}
    assert kinds["generic"]["secrets"] == ["token"] and kinds["forward"]["secrets"] == ["secret", "headers"]
    assert "url" in kinds["forward"]["required"]
    assert httpx.get(f"{server.url}/api/v1/catalog").status_code == 401


def test_a_changed_secret_key_leaves_the_object_out_and_the_server_up(server: Server) -> None:
    acme = token(server, "acme")
    assert server.client.post("/api/v1/endpoints", json=hook(), headers=acme).status_code == 201
    server.stop()
    server.env["ALERTBRIDGE_SECRET_KEY"] = "another key, also thirty-two characters long"
    server.start()
    assert server.post(f"/hooks/a?token={HOOK_TOKEN}", alert(1)).status_code == 404  # not live: cannot be read
    assert "object_not_applied" in server.logs()
    shown = server.client.get("/api/v1/endpoints/hook-a", headers=acme).json()
    assert shown["settings"]["token"] == "••••"  # still listed, so it can be fixed or deleted
    assert server.client.delete("/api/v1/endpoints/hook-a", headers=acme).status_code == 204


@pytest.mark.skipif(not POSTGRES, reason="replicas share a PostgreSQL database; SQLite serves one process")
def test_made_through_one_replica_live_on_the_other(server_factory: Callable[..., Server], agent: FakeAgent) -> None:
    """Behind a load balancer the next webhook may reach any replica: what one saves, all serve."""
    env = {"PD_KEY": "R" * 32, "ALERTBRIDGE_SECRET_KEY": SECRET_KEY}
    first, second = server_factory(CONFIG, env), server_factory(CONFIG, env)
    acme = token(first, "acme")
    assert first.client.post("/api/v1/targets", json=forward_target(agent), headers=acme).status_code == 201
    assert first.client.post("/api/v1/endpoints", json=hook(), headers=acme).status_code == 201

    # The other replica takes the webhook on the new path and forwards it through the new target.
    wait_until(
        lambda: second.post(f"/hooks/a?token={HOOK_TOKEN}", alert(1)).status_code == 200, 10, "the endpoint there"
    )
    wait_until(lambda: agent.forwards, 15, "the forward")
    assert agent.verified == [True]
    assert "object_applied_from_elsewhere" in second.logs()

    # Moved and then removed on the first: the second follows.
    moved = first.client.put("/api/v1/endpoints/hook-a", json={**hook("/hooks/b")}, headers=acme)
    assert moved.status_code == 200, moved.text
    wait_until(lambda: second.post(f"/hooks/b?token={HOOK_TOKEN}", alert(2)).status_code == 200, 10, "the new path")
    assert second.post(f"/hooks/a?token={HOOK_TOKEN}", alert(3)).status_code == 404
    assert first.client.delete("/api/v1/endpoints/hook-a", headers=acme).status_code == 204
    wait_until(lambda: second.post(f"/hooks/b?token={HOOK_TOKEN}", alert(4)).status_code == 404, 10, "gone there")
