"""Each target's `needs` (what routing reads to decide whether a delivery waits for a missing link)
says what its `request` really cannot be built without."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from alertbridge import targets
from alertbridge.targets.base import Sending, Target


def _settings(kind: Target) -> Any:
    """The target type's settings with every required one given a placeholder."""
    given = {name: "x" for name, spec in kind.settings.model_fields.items() if spec.is_required()}
    return kind.settings.model_validate(given)


def _buildable(kind: Target, settings: Any, action: str, fields: dict[str, Any]) -> bool:
    try:
        kind.request(settings, action, fields, Sending("d", None, 0.0, "t", action))
    except Exception:
        return False
    return True


@pytest.mark.parametrize("name", targets.names())
def test_needs_says_what_request_cannot_go_without(name: str) -> None:
    kind = targets.get(name)
    settings = _settings(kind)
    for action, defaults in kind.actions.items():
        needs = kind.needs.get(action, ())
        names = sorted({*defaults, *(n for alternatives in needs for n in alternatives)})
        for size in range(len(names) + 1):
            for left_out in itertools.combinations(names, size):
                fields = {n: "x" for n in names if n not in left_out}
                declared = kind.can_send(action, fields)
                if kind.waits_for_links:
                    declared = False  # every link is waited for, as when request could never be built
                assert _buildable(kind, settings, action, fields) == declared, (
                    f"{name}'s {action} without {list(left_out)}: needs says"
                    f" {'it can' if declared else 'it cannot'} be sent, request disagrees"
                )


@pytest.mark.parametrize("name", targets.names())
def test_a_blank_value_is_no_value(name: str) -> None:
    """A field of spaces does not count as given: the delivery waits for the link rather than
    going out without what the action needs."""
    kind = targets.get(name)
    for action, needs in kind.needs.items():
        for alternatives in needs:
            fields = {n: "x" for names in needs for n in names}
            for n in alternatives:
                fields[n] = "  "
            assert not kind.can_send(action, fields), f"{name}'s {action} with {list(alternatives)} blank"
            assert kind.can_send(action, {**fields, alternatives[0]: "x"})
