"""Endpoints and targets made through the admin API: checked with the same models as the YAML file,
their secrets sealed by the vault, shown masked.

An object is kept as the YAML file would hold it (`{name, source, path, token, …}`), except that
every secret value in it (a field that the source's or target type's settings declare as
`SecretStr`, wherever it sits: a list of secrets while rotating, a forward's header) is replaced by
`{"$sealed": "<Fernet token>"}`. Values are taken literally: `${VAR}` is not read from the
environment here, or an admin could read the server's environment into a forward's URL.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, get_args

from pydantic import BaseModel, SecretStr, ValidationError

from alertbridge import routing, sources
from alertbridge import targets as target_types
from alertbridge.config import Config, EndpointConfig, Located, TargetConfig, errors_of, format_loc
from alertbridge.vault import Vault, VaultUnavailable, mask

Kind = Literal["endpoint", "target"]
SEALED = "$sealed"
MASK = "••••"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PATH = re.compile(r"/[\x21-\x7e]{0,200}")  # printable ASCII, no spaces
# Paths the server answers itself: an endpoint there would shadow the API, the console or a probe.
RESERVED = ("/api/v1", "/api/integrations", "/console", "/healthz", "/health", "/readyz", "/metrics")

Path = tuple[str | int, ...]


class Rejected(Exception):
    """A change the API refuses, with the HTTP status and a message that says what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def secret_fields(model: type[BaseModel]) -> list[str]:
    """The top-level settings that hold secrets (for the console's form)."""

    def mentions(annotation: Any) -> bool:
        return annotation is SecretStr or any(mentions(a) for a in get_args(annotation))

    return [name for name, field in model.model_fields.items() if mentions(field.annotation)]


def secret_paths(value: Any, path: Path = ()) -> Iterator[Path]:
    """Where the secrets are in validated settings: the same places as in the object given."""
    if isinstance(value, SecretStr):
        yield path
    elif isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            yield from secret_paths(getattr(value, name), (*path, field.alias or name))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from secret_paths(item, (*path, key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from secret_paths(item, (*path, i))


def _at(data: Any, path: Path) -> Any:
    for part in path:
        found = isinstance(data, dict) and part in data
        found |= isinstance(data, list) and isinstance(part, int) and part < len(data)
        if found:
            data = data[part]
        else:
            raise KeyError(path)
    return data


def _put(data: Any, path: Path, value: Any) -> None:
    _at(data, path[:-1])[path[-1]] = value


def _replace(data: Any, change: Callable[[Any, Path], Any], path: Path = ()) -> Any:
    """A copy of `data` where `change(value, path)` chose a replacement (or returned `data` itself)."""
    found = change(data, path)
    if found is not data:
        return found
    if isinstance(data, dict):
        return {k: _replace(v, change, (*path, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [_replace(v, change, (*path, i)) for i, v in enumerate(data)]
    return data


def _sealed(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {SEALED}


def opened(config: dict[str, Any], vault: Vault) -> dict[str, Any]:
    """The object with its secrets in the clear: for validation and the live server, never for answers."""
    result: dict[str, Any] = _replace(config, lambda v, _: vault.open(v[SEALED]) if _sealed(v) else v)
    return result


def masked(config: dict[str, Any], vault: Vault, paths: Sequence[Path] = ()) -> dict[str, Any]:
    """The object as the API shows it: sealed values (and any at `paths`) masked, never in the clear."""

    def hide(value: Any, path: Path) -> Any:
        if _sealed(value):
            try:
                return mask(vault.open(value[SEALED])) or MASK
            except VaultUnavailable:
                return MASK
        if path in paths and isinstance(value, str):
            return mask(value) or MASK
        return value

    result: dict[str, Any] = _replace(config, hide)
    return result


def seal(config: dict[str, Any], paths: Sequence[Path], vault: Vault) -> dict[str, Any]:
    """A copy to store, with the value at each of `paths` sealed."""
    stored = copy.deepcopy(config)
    for path in paths:
        _put(stored, path, {SEALED: vault.seal(str(_at(stored, path)))})
    return stored


def _keep_masked(body: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """A masked value sent back (as the API showed it) keeps the secret saved at that place."""

    def keep(value: Any, path: Path) -> Any:
        if not (isinstance(value, str) and value.startswith(MASK)):
            return value
        try:
            return _at(previous, path) if previous is not None else _missing(path)
        except KeyError:
            return _missing(path)

    result: dict[str, Any] = _replace(body, keep)
    return result


def _missing(path: Path) -> Any:
    raise Rejected(422, f"{format_loc(path)}: a masked value ({MASK}…) but no secret is saved there: give the secret")


def _problems(located: list[Located], prefix: tuple[Any, ...] = ()) -> str:
    mine = [(loc[len(prefix) :], msg) for loc, msg in located if tuple(loc[: len(prefix)]) == prefix]
    return "; ".join(f"{format_loc(loc)}: {msg}" if loc else msg for loc, msg in mine)


def check(
    kind: Kind,
    body: dict[str, Any],
    org: str,
    config: Config,
    known_targets: Sequence[TargetConfig] = (),
    previous: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], EndpointConfig | TargetConfig, list[Path]]:
    """Validate an object as the YAML file's models would: (what to keep, its model, its secrets' paths).

    `previous` is the saved object in the clear (an update): masked values keep its secrets.
    `known_targets` are the other targets a target may refer to (the org's own, not the file's).
    Raises `Rejected` (422) naming the field and what is wrong.
    """
    if any(_sealed(v) for v in _walk(body)):
        raise Rejected(422, f"{SEALED!r} is reserved")
    if any(isinstance(v, float) and not math.isfinite(v) for v in _walk(body)):
        raise Rejected(422, "numbers must be finite (no NaN or Infinity)")
    body = _keep_masked(copy.deepcopy(body), previous)
    given_org = body.pop("org", None)
    if given_org not in (None, org):
        raise Rejected(422, f"org: an object belongs to the org of whoever makes it ({org!r})")
    name = body.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise Rejected(422, "name: 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    if previous is not None and name != previous.get("name"):
        raise Rejected(422, "name: an object cannot be renamed; delete it and make a new one")
    located: list[Located]
    item: EndpointConfig | TargetConfig
    if kind == "endpoint":
        path = body.get("path")
        if not isinstance(path, str) or not PATH.fullmatch(path):
            raise Rejected(422, "path: a URL path: '/' then printable characters, no spaces, at most 200")
        if path == "/" or any(path == r or path.startswith(r + "/") for r in RESERVED):
            raise Rejected(422, f"path: {path} is the server's own; choose another (e.g. /webhooks/…)")
        try:
            item = EndpointConfig.model_validate({**body, "org": org})
        except ValidationError as exc:
            raise Rejected(422, _problems(errors_of(exc))) from None
        candidate = config.model_copy(update={"endpoints": [item]})
        located = sources.validate_endpoints(candidate) + routing.validate_routes(candidate)
        prefix: tuple[Any, ...] = ("endpoints", 0)
        settings_model = sources.REGISTRY[item.source].settings if item.source in sources.REGISTRY else None
        body["path"] = item.path
    else:
        try:
            item = TargetConfig.model_validate(body)
        except ValidationError as exc:
            raise Rejected(422, _problems(errors_of(exc))) from None
        everything = [*config.targets, *(t for t in known_targets if t.name != item.name), item]
        located = target_types.validate_targets(config.model_copy(update={"targets": everything}))
        prefix = ("targets", len(everything) - 1)
        registry = target_types.REGISTRY
        settings_model = registry[item.type].settings if item.type in registry else None
    problems = _problems(located, prefix)
    if problems or settings_model is None:
        raise Rejected(422, problems or "unknown type")
    settings = settings_model.model_validate(item.extra)
    return body, item, list(secret_paths(settings))


def _walk(data: Any) -> Iterator[Any]:
    yield data
    if isinstance(data, dict):
        for v in data.values():
            yield from _walk(v)
    elif isinstance(data, list):
        for v in data:
            yield from _walk(v)
