"""Provider knowledge lives in provider modules: no module outside `sources/` and `targets/` names a
provider, so adding one touches its module, its docs page and its tests only (issue 15).

Every identifier (names, attributes, arguments, definitions, imports) and every string constant of
the other modules is read with `ast`; docstrings are not, because they explain with examples ("a
PagerDuty incident is also its incident_key") and an example is not knowledge the code acts on.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "alertbridge"
PROVIDER_PACKAGES = ("sources", "targets")

PROVIDERS = (
    "pagerduty",
    "opsgenie",
    "slack",
    "github",
    r"incident[._]?io",
    "thena",
    "coralogix",
    "jira",
    "grafana",
    "datadog",
    "servicenow",
    "zendesk",
    "sns",
    "cloudwatch",
    "aws",
)
# Whole words, where `_`, `.`, `-` and a camelCase hump separate words: `slack_channel`,
# `PagerDutyEvents`, `THENA_API_KEY` name a provider; `githubusercontent` or `linearly` do not.
_START = r"(?:^|(?<=[^A-Za-z0-9])|(?<=[a-z0-9])(?=[A-Z]))"
_END = r"(?:$|(?=[^A-Za-z0-9])|(?<=[a-z])(?=[A-Z]))"
NAMED = re.compile(_START + "(?i:" + "|".join(PROVIDERS) + ")" + _END)

# (path under src/alertbridge, the word as written) that may stay, each with why. Keep it short.
ALLOWED: dict[tuple[str, str], str] = {
    # A team's `slack_channel` is a configuration key and template variable of seed 004 (where a
    # team is told its agent could not be reached): users' files and templates name it.
    ("config.py", "slack_channel"): "seed 004's team key",
    ("routing/teams.py", "slack_channel"): "seed 004's team key, as templates read it (team.slack_channel)",
    ("checks.py", "slack_channel"): "the team fields templates may read (TeamMatch.view)",
    ("api/teams.py", "slack_channel"): "the team's key in the API's team view",
    # `alertbridge tokens create --purpose` help: an example of a caller, not a provider we speak to.
    ("cli.py", "grafana"): "an example in a help text",
}


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the string constants that are docstrings."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _words(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, text) of every identifier and non-docstring string constant."""
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield line, node.value
        elif isinstance(node, ast.Name):
            yield line, node.id
        elif isinstance(node, ast.Attribute):
            yield line, node.attr
        elif isinstance(node, ast.arg | ast.keyword) and node.arg:
            yield line, node.arg
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield line, node.name
        elif isinstance(node, ast.alias):
            yield line, node.name
            if node.asname:
                yield line, node.asname
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield line, node.module


def _modules() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] not in PROVIDER_PACKAGES:
            yield path


def _mentions(path: Path) -> list[tuple[int, str, str]]:
    """(line, the word as written, the text it is in) for each provider named in the module."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for line, text in _words(tree):
        for match in NAMED.finditer(text):
            whole = re.search(r"[A-Za-z0-9_]*" + re.escape(match.group()) + r"[A-Za-z0-9_]*", text[match.start() :])
            word = whole.group() if whole else match.group()
            if match.start() > 0:  # the identifier around it, e.g. `slack_channel`
                before = re.search(r"[A-Za-z0-9_]*$", text[: match.start()])
                word = (before.group() if before else "") + word
            found.append((line, word, text))
    return found


def test_no_module_outside_sources_and_targets_names_a_provider() -> None:
    problems = []
    for path in _modules():
        where = path.relative_to(PACKAGE).as_posix()
        for line, word, text in _mentions(path):
            if (where, word) not in ALLOWED:
                shown = text if len(text) <= 80 else text[:77] + "..."
                problems.append(f"src/alertbridge/{where}:{line}: names a provider ({word!r} in {shown!r})")
    assert not problems, (
        "provider knowledge belongs in the provider's module under sources/ or targets/ (declare it "
        "there and read it through the registry):\n" + "\n".join(problems)
    )


def test_the_allow_list_is_still_needed() -> None:
    """An entry nothing needs any more is removed, so the list stays short and true."""
    used = {(path.relative_to(PACKAGE).as_posix(), word) for path in _modules() for _, word, _ in _mentions(path)}
    assert sorted(set(ALLOWED) - used) == []


def test_the_check_sees_what_it_must() -> None:
    """The matcher itself: provider names as identifiers and strings, and not inside other words."""
    for text in ("slack_channel", "PagerDutyEvents", "THENA_API_KEY", "incident.io", "incidentio_team_ids", "x-github"):
        assert NAMED.search(text), text
    for text in ("githubusercontent", "linearly", "slacker", "athena", "pagerdutyish"):
        assert not NAMED.search(text), text
    tree = ast.parse('"""A PagerDuty docstring."""\nx = "opsgenie"\ndef f(slack_token): pass\n')
    assert [(line, text) for line, text in _words(tree) if NAMED.search(text)] == [(2, "opsgenie"), (3, "slack_token")]


def test_the_claims_the_sources_declare_keep_seed_004s_order() -> None:
    """Moving the claim kinds into the sources kept the keys and the default priority of seed 004
    (docs/teams.md), which decides between teams when an event carries several identifiers."""
    from alertbridge import sources

    assert list(sources.CLAIM_KINDS.items()) == [
        ("incidentio_team_ids", "incidentio_team_id"),
        ("pagerduty_service_ids", "pagerduty_service_id"),
        ("slack_channel_ids", "slack_channel_id"),
        ("github_repos", "github_repo"),
        ("coralogix_team_names", "coralogix_team_name"),
        ("incidentio_alert_source_ids", "incidentio_alert_source_id"),
        ("services", "service"),
    ]
    assert tuple(sources.CLAIM_KINDS.values()) == sources.DEFAULT_PRIORITY
