"""The docs keep up with the code: a page per source and target, with the module's own field table."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from alertbridge import sources, targets

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _table(module_name: str) -> list[str]:
    doc = importlib.import_module(module_name).__doc__ or ""
    return [line for line in doc.splitlines() if line.startswith("|")]


@pytest.mark.parametrize("name", sources.names())
def test_every_source_has_a_page_with_its_field_mapping(name: str) -> None:
    page = DOCS / "sources" / f"{name}.md"
    assert page.exists(), f"docs/sources/{name}.md is missing"
    text = page.read_text()
    table = _table(f"alertbridge.sources.{name}")
    assert table, f"alertbridge.sources.{name} documents no field table"
    missing = [row for row in table if row not in text]
    assert not missing, f"docs/sources/{name}.md lacks rows of the module's table: {missing[:2]}"


@pytest.mark.parametrize("name", targets.names())
def test_every_target_has_a_page_with_its_actions(name: str) -> None:
    page = DOCS / "targets" / f"{name.replace('_', '-')}.md"
    assert page.exists(), f"{page} is missing"
    text = page.read_text()
    for action in targets.get(name).actions:
        assert f"| {action}" in text, f"{page.name} does not document the {action!r} action"


def test_the_index_links_every_page() -> None:
    index = (DOCS / "README.md").read_text()
    for page in DOCS.rglob("*.md"):
        if page.name != "README.md":
            assert str(page.relative_to(DOCS)) in index, f"docs/README.md does not link {page.relative_to(DOCS)}"
