"""The docs keep up with the code: a page per source and target, naming every event field the
source fills and every action the target has, in a table row of their own."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from alertbridge import sources, targets

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _first_cells(text: str) -> set[str]:
    """The first cell of every table row, without backticks or padding."""
    cells = set()
    for line in text.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            cells.add(line.split("|")[1].strip().strip("`").strip())
    return cells


def _fields(module_name: str) -> set[str]:
    doc = importlib.import_module(module_name).__doc__ or ""
    rows = [line for line in doc.splitlines() if line.startswith("|")]
    return {cell for cell in _first_cells("\n".join(rows)) if cell not in ("event field", "field")}


@pytest.mark.parametrize("name", sources.names())
def test_every_source_has_a_page_with_its_field_mapping(name: str) -> None:
    page = DOCS / "sources" / f"{name}.md"
    assert page.exists(), f"docs/sources/{name}.md is missing"
    fields = _fields(f"alertbridge.sources.{name}")
    assert fields, f"alertbridge.sources.{name} documents no field table"
    cells = _first_cells(page.read_text())
    missing = sorted(f for f in fields if f not in cells and not any(f in c.split(", ") for c in cells))
    assert not missing, f"docs/sources/{name}.md has no row for {missing}"


@pytest.mark.parametrize("name", targets.names())
def test_every_target_has_a_page_with_its_actions(name: str) -> None:
    page = DOCS / "targets" / f"{name.replace('_', '-')}.md"
    assert page.exists(), f"{page} is missing"
    cells = _first_cells(page.read_text())
    for action in targets.get(name).actions:
        assert action in cells, f"{page.name} has no table row for the {action!r} action"


def test_the_index_links_every_page() -> None:
    index = (DOCS / "README.md").read_text()
    for page in DOCS.rglob("*.md"):
        if page.name != "README.md":
            assert str(page.relative_to(DOCS)) in index, f"docs/README.md does not link {page.relative_to(DOCS)}"
