"""Reading a configuration file: YAML with its line numbers, `${VAR}` from the environment, and
both validation passes (`checks.validate`: the models, then what needs the source, target and
routing registries).

Apart from `config.py` (the models, which every part imports) so that the models import no
registry and nothing imports back into the loader: the loader sits above the registries.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from alertbridge import checks
from alertbridge.config import Config, ConfigError, Located, Problem, format_loc

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """`${VAR}` and `${VAR:-default}` from `env`; `$$` is a literal `$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None and ":-" in match.group(0)):
            if default is None:
                raise KeyError(name)
            return default
        return value

    return _VAR.sub(replace, text)


def _plain(node: Any, env: Mapping[str, str], loc: tuple[Any, ...], problems: list[Located]) -> Any:
    """A plain-Python copy of the YAML tree with the environment filled in."""
    if isinstance(node, Mapping):
        return {key: _plain(value, env, (*loc, key), problems) for key, value in node.items()}
    if isinstance(node, Sequence) and not isinstance(node, str):
        return [_plain(value, env, (*loc, i), problems) for i, value in enumerate(node)]
    if isinstance(node, str) and "$" in node:
        try:
            return interpolate(node, env)
        except KeyError as missing:
            problems.append((loc, f"environment variable {missing.args[0]} is not set"))
            return ""
    return node


def _line_of(tree: Any, loc: Sequence[Any]) -> int | None:
    """The 1-based line of the deepest node on `loc` that the YAML tree knows."""
    node, line = tree, None
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    if line is None and isinstance(tree, CommentedMap | CommentedSeq):
        line = tree.lc.line + 1
    return line


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate a configuration file, or raise `ConfigError`."""
    env = os.environ if env is None else env
    path = str(path)
    tree = _read_tree(path)
    located: list[Located] = []
    data = _plain(tree, env, (), located)
    config, problems = checks.validate(data)
    located += problems
    if located or config is None:
        found = [Problem(_line_of(tree, loc), format_loc(loc), msg) for loc, msg in located]
        raise ConfigError(path, sorted(found, key=lambda p: p.line or 0))
    return config


def _read_tree(path: str) -> Mapping[Any, Any]:
    """The file's YAML tree (with its line numbers), or `ConfigError` if it cannot be read as a mapping."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(path, [Problem(None, "", f"cannot read the file: {exc.strerror}")]) from None
    try:
        tree = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(path, [Problem(line, "", f"not valid YAML: {exc.problem}")]) from None
    if tree is None:
        tree = CommentedMap()
    if not isinstance(tree, Mapping):
        raise ConfigError(path, [Problem(1, "", "the file must be a mapping (key: value) at the top")])
    return tree


def read_setting(path: str | Path, loc: Sequence[str], env: Mapping[str, str] | None = None) -> str | None:
    """One string setting (`store`, `server.org`) read without validating the rest of the file.

    Commands that only read the store must work during an incident on a machine where the
    endpoints' secrets (`${WEBHOOK_TOKEN}`…) are not set: only this value's own variables must be."""
    env = os.environ if env is None else env
    path = str(path)
    tree = _read_tree(path)
    node: Any = tree
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if node is None:
        return None
    problems: list[Located] = []
    value = _plain(node, env, tuple(loc), problems)
    if not problems and not isinstance(value, str):
        problems.append((tuple(loc), "must be a string"))
    if problems:
        raise ConfigError(path, [Problem(_line_of(tree, where), format_loc(where), msg) for where, msg in problems])
    return str(value) or None
