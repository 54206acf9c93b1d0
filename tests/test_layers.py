"""The module graph, read from the source: no import cycle, and no import up the flow.

Data flows ingress → sources → events → routing → delivery → targets, with the store beside
(docs/architecture.md, "The dependency rule"). Every `import` counts, at the top of a module or
late inside a function alike: a late import hides a cycle from Python, not from a reader. The
modules are parsed (ast), not imported.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "alertbridge"
SRC = Path(__file__).resolve().parent.parent / "src" / PACKAGE

# The layers, lowest first, by module prefix (relative to `alertbridge`; a package's prefix covers its
# modules). `__init__` is the package itself (`__version__`).
LAYERS: dict[str, tuple[str, ...]] = {
    "core": ("__init__", "events", "ids", "security", "logs", "metrics", "config", "spelling", "templating"),
    "store": ("store",),
    "sources": ("sources",),
    "targets": ("targets",),
    "routing": ("routing",),
    "delivery": ("delivery",),
    "ingress": ("ingress",),
}
# Anything not listed above is the operator's side: app, cli, dryrun, checks, loading, auth, vault,
# api/, server/, console/, and wherever they move. It may import any layer.
OPERATOR = "operator"

# Who may import whom: a module may import its own layer and every layer on an earlier row. Layers on
# one row know nothing of each other (a source knows no target).
ORDER: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("store",),
    ("sources", "targets"),
    ("routing",),
    ("delivery",),
    ("ingress",),
    (OPERATOR,),
)


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name relative to it (`routing.decide`, `__init__`)."""
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _ours(dotted: str) -> str | None:
    """The module of ours that an absolute name (`alertbridge.routing.decide.decide`) falls in."""
    if dotted != PACKAGE and not dotted.startswith(PACKAGE + "."):
        return None
    name = dotted.removeprefix(PACKAGE).removeprefix(".")
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or "__init__"


def imports(module: str) -> Iterator[tuple[str, int]]:
    """(the module of ours imported, line) for every import in `module`, functions included."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if module == "__init__":
        package = ""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                origin = ".".join([PACKAGE, *base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            # `from alertbridge import checks` imports a module; `from alertbridge.x import y` a name in x.
            names = [f"{origin}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            target = _ours(name)
            if target is not None and target != module:
                yield target, node.lineno


def layer_of(module: str) -> str:
    for layer, prefixes in LAYERS.items():
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return layer
    return OPERATOR


def _rank(layer: str) -> int:
    return next(i for i, row in enumerate(ORDER) if layer in row)


def _where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(SRC.parent.parent)}:{line}"


def test_the_table_names_modules_that_exist() -> None:
    """A renamed package must not fall silently to the operator's layer, where anything goes."""
    listed = {layer for row in ORDER for layer in row}
    assert listed == {*LAYERS, OPERATOR}
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            assert any(m == prefix or m.startswith(prefix + ".") for m in MODULES), (
                f"LAYERS[{layer!r}] names {prefix!r}, which is no module of {PACKAGE}"
            )


def test_no_module_imports_up_the_flow() -> None:
    wrong = []
    for module in MODULES:
        mine = layer_of(module)
        for target, line in imports(module):
            theirs = layer_of(target)
            if theirs != mine and _rank(theirs) >= _rank(mine):
                wrong.append(
                    f"{_where(module, line)}: {module} ({mine}) imports {target} ({theirs}):"
                    f" {mine} may import only its own layer{''.join(f', {layer}' for layer in _below(mine))}"
                )
    assert not wrong, "imports up the flow (see LAYERS and ORDER in tests/test_layers.py):\n" + "\n".join(wrong)


def _below(layer: str) -> list[str]:
    return [other for row in ORDER[: _rank(layer)] for other in row]


def test_no_import_cycle() -> None:
    graph: dict[str, dict[str, int]] = {}  # module → {what it imports: the line of the first such import}
    for module in MODULES:
        graph[module] = {}
        for target, line in sorted(imports(module), key=lambda found: found[1]):
            graph[module].setdefault(target, line)
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[tuple[str, int]] = []  # (module, line of its import of the next one)

    def visit(module: str) -> None:
        state[module] = 1
        for target, line in sorted(graph[module].items()):
            path.append((module, line))
            if state.get(target) == 1:
                start = next(i for i, (m, _) in enumerate(path) if m == target)
                steps = [f"{m} ({_where(m, n)})" for m, n in path[start:]]
                cycles.append(" → ".join([*steps, target]))
            elif target not in state:
                visit(target)
            path.pop()
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module)
    assert not cycles, "import cycles (each step names the import that makes it):\n" + "\n".join(cycles)
