"""Routes, matchers and templates: the decision for one event, and its trace."""

from __future__ import annotations

from typing import Any

import pytest

from alertbridge import targets
from alertbridge.config import Config
from alertbridge.events import Event, Subject
from alertbridge.routing import compile_rules, inhibit_rules
from alertbridge.routing.decide import decide
from alertbridge.routing.episodes import advance
from alertbridge.routing.inhibition import Inhibitor
from alertbridge.routing.repeats import InEpisode, per_repeat, repeat_of
from alertbridge.routing.routes import condition
from alertbridge.store.base import Episode
from alertbridge.templating.templates import RenderError, Templates


def event(**fields: Any) -> Event:
    base: dict[str, Any] = {
        "id": "01HX",
        "org": "default",
        "endpoint": "e",
        "source": "thena",
        "kind": "ticket.created",
        "received_at": 0.0,
        "delivery_key": "d",
    }
    return Event(**{**base, **fields})


def view(e: Event) -> dict[str, Any]:
    from alertbridge.events import to_dict

    return to_dict(e)


@pytest.mark.parametrize(
    ("path", "spec", "fields", "expected"),
    [
        ("kind", "ticket.created", {}, True),
        ("kind", "TICKET.CREATED", {}, True),
        ("kind", ["ticket.updated", "ticket.created"], {}, True),
        ("kind", {"not_one_of": ["ticket.created"]}, {}, False),
        ("kind", {"not_equals": "x"}, {}, True),
        ("title", {"regex": "(?i)disk"}, {"title": "DISK full"}, True),
        ("title", {"regex": "disk"}, {}, False),
        ("priority", {"at_least": "P2"}, {"priority": "P1"}, True),
        ("priority", {"at_least": "P2"}, {"priority": "P3"}, False),
        ("priority", {"at_most": "P3"}, {"priority": "P4"}, True),
        ("priority", {"at_least": "P2"}, {}, False),
        ("urgency", {"at_least": "high"}, {"urgency": "low"}, False),
        ("severity", {"at_least": "error"}, {"severity": "critical"}, True),
        ("assignees", "b@x.io", {"assignees": ("a@x.io", "B@X.io")}, True),
        ("assignees", {"exists": True}, {}, False),
        ("assignees", {"exists": False}, {}, True),
        ("labels.group", "A", {"labels": {"group": "A"}}, True),
        ("subject.id", "T1", {"subject": Subject("thena", "ticket", "T1")}, True),
        ("identifiers.github_repo", {"exists": True}, {}, False),
        ("episode", 1, {"episode": 1}, True),
        ("episode", [2, 3], {"episode": 1}, False),
        ("episode", {"exists": True}, {}, False),
    ],
)
def test_conditions(path: str, spec: Any, fields: dict[str, Any], expected: bool) -> None:
    ok, reason = condition(path, spec).check(view(event(**fields)))
    assert ok is expected, reason
    assert path in reason


@pytest.mark.parametrize(
    "spec", [{"at_least": "P9"}, {"regex": "("}, {"frobnicate": 1}, {"one_of": "x"}, {"equals": 1, "regex": "x"}]
)
def test_bad_conditions_are_refused(spec: Any) -> None:
    with pytest.raises(ValueError):
        condition("kind", spec)


CONFIG = {
    "tables": {"owners": {"Alice@X.io": "A", "bob@x.io": "B"}, "target_of": {"A": "pd-a", "B": "pd-b"}},
    "targets": [
        {"name": "pd-a", "type": "pagerduty_events", "routing_key": "ka"},
        {"name": "pd-b", "type": "pagerduty_events", "routing_key": "kb"},
    ],
    "routes": [
        {
            "name": "only-urgent",
            "match": {"priority": {"at_least": "P1"}},
            "actions": [{"target": "pd-a", "action": "trigger", "summary": "URGENT {{ event.title }}"}],
            "continue": True,
        },
        {
            "name": "by-owner",
            "match": {"kind": "ticket.created", "assignees": {"exists": True}},
            "actions": [
                {
                    "target": "{{ tables.target_of[event.assignees | lookup('owners')] }}",
                    "action": "trigger",
                    "key": "once-{{ event.subject.id }}",
                }
            ],
        },
        {"name": "fallback", "match": {}, "actions": [{"target": "pd-b", "action": "trigger"}]},
    ],
}


def run(e: Event) -> Any:
    config = Config.model_validate(CONFIG)
    rules = compile_rules(config)
    return decide(e, rules.routes, targets.configure(config), rules.templates, clock=lambda: 1.0)


def test_first_match_wins_and_continue_goes_on() -> None:
    decision = run(
        event(
            priority="P1",
            title="db down",
            assignees=("alice@x.io",),
            subject=Subject("thena", "ticket", "T1"),
            dedup_key="thena-ticket-T1",
        )
    )
    assert decision.status == "routed"
    assert [d.route for d in decision.deliveries] == ["only-urgent", "by-owner"]
    urgent, owner = decision.deliveries
    assert urgent.target == "pd-a" and urgent.fields["summary"] == "URGENT db down"
    assert owner.target == "pd-a"  # Alice@X.io in the table, alice@x.io in the event
    assert owner.idempotency_key == "key:once-T1"
    assert owner.order_key == "pd-a:dedup:thena-ticket-T1"
    fallback = decision.trace[2]
    assert fallback["route"] == "fallback" and not fallback["matched"]
    assert "by-owner" in fallback["reasons"][0]


def test_trace_says_why_a_route_did_not_match() -> None:
    decision = run(event(kind="ticket.updated", priority="P3"))
    first, second, third = decision.trace
    assert not first["matched"] and "priority 'P3' NOT ≥ 'P1'" in first["reasons"][0]
    assert not second["matched"] and any("kind 'ticket.updated' NOT = 'ticket.created'" in r for r in second["reasons"])
    assert third["matched"]
    assert decision.deliveries[0].target == "pd-b"
    # the defaults of the trigger action were rendered from the event
    fields = decision.deliveries[0].fields
    assert fields["severity"] == "error" and fields["summary"] == "ticket.updated" and fields["source"] == "thena"


def test_a_failing_template_is_in_the_trace_not_an_exception() -> None:
    decision = run(event(assignees=("nobody@x.io",), subject=Subject("thena", "ticket", "T1")))
    step = decision.trace[1]
    assert step["matched"]
    assert "error" in step["actions"][0]
    assert decision.status == "failed"


def test_single_expressions_keep_their_type() -> None:
    templates = Templates({"t": {"a": 1}})
    context = {"event": {"assignees": ["x", "y"], "title": None}, "labels": {}}
    assert templates.render("{{ event.assignees }}", context) == ["x", "y"]
    assert templates.render("{{ event.title }}", context) is None
    assert templates.render("n={{ event.assignees | length }}", context) == "n=2"
    assert templates.render("{{ 'A' | lookup('t') }}", context) == 1
    with pytest.raises(RenderError):
        templates.render("{{ event.nope }}", context, "summary")


def test_the_sandbox_refuses_unsafe_access() -> None:
    templates = Templates({})
    with pytest.raises(RenderError):
        templates.render("{{ ''.__class__.__mro__[1].__subclasses__() }}", {"event": {}, "labels": {}})


def test_dict_methods_still_win_over_keys_of_the_same_name() -> None:
    """Keys are read without the sandbox's attribute attempt, but not where they hide a method: a
    payload with a key `get` must not break a template calling `.get`."""
    templates = Templates({})
    context = {"event": {"raw": {"get": "x", "summary": "disk full"}}, "labels": {"items": "3 pods", "zone": "eu"}}
    assert templates.render("{{ event.raw.get('summary') }}", context) == "disk full"
    assert templates.render("{{ labels.zone }}", context) == "eu"
    assert templates.render("{{ labels['items'] }}", context) == "3 pods"
    assert templates.render("{% for k, v in labels.items() %}{{ k }}={{ v }};{% endfor %}", context) == (
        "items=3 pods;zone=eu;"
    )
    with pytest.raises(RenderError):
        templates.render("{{ labels.__class__.__mro__ }}", context)


def test_an_alert_known_only_by_its_alias_waits_for_its_own_link() -> None:
    """An Opsgenie alert with an alias and no id is still a subject: the delivery that needs its
    PagerDuty incident waits for the incident linked to that alias, not to nobody."""
    config = Config.model_validate(
        {
            "targets": [{"name": "pd", "type": "pagerduty_rest", "token": "k", "from_email": "a@x.io"}],
            "routes": [
                {
                    "name": "note",
                    "match": {},
                    "actions": [
                        {
                            "target": "pd",
                            "action": "note",
                            "incident_id": "{{ links.pagerduty.incident }}",
                            "content": "hi",
                        }
                    ],
                }
            ],
        }
    )
    rules = compile_rules(config)
    alert = event(source="opsgenie", kind="alert.note_added", identifiers={"opsgenie_alert_alias": "db-down"})
    decision = decide(alert, rules.routes, targets.configure(config), rules.templates, clock=lambda: 1.0)
    (delivery,) = decision.deliveries
    assert delivery.waiting_for is not None
    assert delivery.waiting_for["refs"] == [["opsgenie", "alert_alias", "db-down"]]
    assert "opsgenie:alert_alias:db-down" in delivery.waiting_for["marker"]


@pytest.mark.parametrize(
    ("was", "effect", "episode", "after", "why"),
    [
        (Episode(), "open", 1, Episode(1, True), "alert.created opens episode 1"),
        (
            Episode(1, True),
            "open",
            1,
            Episode(1, True),
            "alert.created: episode 1 is open already, so this belongs to it",
        ),
        (Episode(1, True), "close", 1, Episode(1, False), "alert.created closes episode 1"),
        (Episode(1, False), "open", 2, Episode(2, True), "alert.created opens episode 2 (episode 1 was closed)"),
        (
            Episode(2, False),
            "close",
            2,
            Episode(2, False),
            "alert.created: episode 2 is closed already, so this belongs to it",
        ),
        (Episode(), "close", 1, Episode(1, False), "alert.created closes episode 1 (its opening was not seen)"),
        (Episode(), None, 1, Episode(), "alert.created belongs to episode 1 (not seen opening)"),
        (Episode(3, True), None, 3, Episode(3, True), "alert.created belongs to episode 3 (open)"),
        (Episode(3, False), None, 3, Episode(3, False), "alert.created belongs to episode 3 (closed)"),
    ],
)
def test_where_an_event_leaves_its_alerts_episodes(
    was: Episode, effect: Any, episode: int, after: Episode, why: str
) -> None:
    assert advance(was, effect, "alert.created") == (episode, after, why)


def test_a_restart_opens_the_next_episode_even_while_one_is_open_but_not_for_its_own_firing() -> None:
    """Alertmanager's firings restart: each is sent once, so a new one while open means a lost resolve."""
    opened = Episode(1, True, event_id="E1")
    assert advance(opened, "restart", "am.firing", "E2") == (
        2,
        Episode(2, True, event_id="E2"),
        "am.firing opens episode 2 (episode 1 was still open: its resolve never came)",
    )
    # The same firing routed again (after a silence ended): the episode it opened.
    again = advance(opened, "restart", "am.firing", "E1")
    assert again == (1, opened, "am.firing: episode 1 is the one this firing opened")
    # From closed (or never seen), a restart opens as `open` does.
    assert advance(Episode(1, False), "restart", "am.firing", "E3") == (
        2,
        Episode(2, True, event_id="E3"),
        "am.firing opens episode 2 (episode 1 was closed)",
    )
    assert advance(Episode(), "restart", "am.firing", "E4")[0:2] == (1, Episode(1, True))


def test_keys_carry_the_episode_from_the_second_on_and_templates_read_it() -> None:
    """Episode 1's keys are the keys alertbridge always made; later episodes' are new ones."""
    config = Config.model_validate(
        {
            "targets": [{"name": "pd", "type": "pagerduty_events", "routing_key": "k"}],
            "routes": [
                {
                    "name": "fire",
                    "match": {},
                    "actions": [
                        {
                            "target": "pd",
                            "action": "trigger",
                            "key": "fire-{{ event.dedup_key }}",
                            "summary": "{{ event.title }}, episode {{ event.episode }}",
                        },
                        {"target": "pd", "action": "resolve"},
                    ],
                }
            ],
        }
    )
    rules = compile_rules(config)

    def keys(episode: int | None) -> list[tuple[str, str]]:
        alert = event(kind="alert.created", dedup_key="db", title="DB down", episode=episode)
        decision = decide(alert, rules.routes, targets.configure(config), rules.templates, clock=lambda: 1.0)
        return [(d.idempotency_key, d.fields.get("summary", "")) for d in decision.deliveries]

    assert keys(None) == [("key:fire-db", "DB down, episode None"), ("event:01HX:fire:1", "")]
    assert keys(1) == [("key:fire-db", "DB down, episode 1"), ("event:01HX:fire:1", "")]
    assert keys(2) == [("key:fire-db#episode-2", "DB down, episode 2"), ("event:01HX:fire:1", "")]


def test_an_inhibit_rule_compares_equal_labels_within_an_org_and_forgets_a_resolved_source() -> None:
    """Pure: Alertmanager's equal (a label both lack is equal), per org, never the alert itself; a
    source that resolves (told by the router as the batch goes) inhibits nothing more."""
    config = Config.model_validate(
        {
            "inhibit_rules": [
                {
                    "source_matchers": ['alertname="ClusterDown"'],
                    "target_matchers": ['severity=~"warning|info"'],
                    "equal": ["cluster", "zone"],
                }
            ]
        }
    )
    down = {"org": "default", "alert": "dedup:p:down", "event_id": "EV1", "labels": {"alertname": "ClusterDown"}}
    inhibitor = Inhibitor.of(inhibit_rules(config), [{**down, "labels": {**down["labels"], "cluster": "eu-1"}}])
    warning = event(labels={"severity": "warning", "cluster": "eu-1"})
    muted = inhibitor.mutes(warning, ("default", "dedup:p:warn"))
    assert muted is not None and muted["rule"] == "inhibit_rules[0]" and muted["by_event"] == "EV1"
    assert muted["equal"] == {"cluster": "eu-1", "zone": ""}  # neither has a zone: equal
    assert inhibitor.mutes(event(labels={"severity": "warning", "cluster": "us-1"}), None) is None
    assert inhibitor.mutes(event(labels={"severity": "critical", "cluster": "eu-1"}), None) is None
    assert inhibitor.mutes(event(org="other", labels={"severity": "warning", "cluster": "eu-1"}), None) is None
    assert inhibitor.mutes(warning, ("default", "dedup:p:down")) is None  # the source alert itself
    inhibitor.moved(("default", "dedup:p:down"), False, "EV2", {"alertname": "ClusterDown", "cluster": "eu-1"})
    assert inhibitor.mutes(warning, None) is None


def test_repeat_interval_counts_intervals_from_the_episodes_opening() -> None:
    opened = InEpisode("dedup:p:x", 2, 1000.0, opens=False)
    assert repeat_of(60, InEpisode("dedup:p:x", 2, 1000.0, opens=True), 1000.0)[1]["result"] == (
        "first notification of episode 2"
    )
    number, step = repeat_of(60, opened, 1059.0)
    assert (number, step["result"]) == (0, "repeat within repeat_interval: nothing new")
    number, step = repeat_of(60, opened, 1130.0)
    assert (number, step["result"]) == (2, "repeat after repeat_interval: notify again")
    assert per_repeat("key:page#episode-2", 2) == "key:page#episode-2#repeat-2"
    assert per_repeat("key:page", 0) == "key:page"
