"""`Objects`: endpoints and targets made through the admin API, beside the file's: who may change
what, what clashes, what is kept (sealed by the vault), and what goes live (`server/live.py`).
Saved objects are loaded again at start-up (`load`) and from other replicas' commits (`sync`).
The HTTP side is `api/objects/routes.py`; checking and sealing one object, `api/objects/checks.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from alertbridge import logs, sources
from alertbridge import targets as target_types
from alertbridge.api.objects.checks import Kind, Rejected, check, masked, opened, seal, secret_paths
from alertbridge.config import Config, EndpointConfig, TargetConfig
from alertbridge.server.live import Live
from alertbridge.store.base import SavedObject, Store
from alertbridge.vault import Vault, VaultUnavailable

log = logs.get("alertbridge.objects")
READ_ONLY = "comes from the configuration file (provisioned) and is read-only here: change it in the file"


class EndpointOut(BaseModel):
    name: str
    source: str
    path: str
    org: str
    provisioned: bool = True
    read_only: bool = True
    settings: dict[str, Any] = {}  # the source's settings; secrets masked (••••1234)
    updated_at: float | None = None
    updated_by: str | None = None


class TargetOut(BaseModel):
    name: str
    type: str
    timeout: float
    rate_limit: dict[str, Any] | None = None
    org: str | None = None  # None: from the file, shared by every org
    provisioned: bool = True
    read_only: bool = True
    settings: dict[str, Any] = {}
    updated_at: float | None = None
    updated_by: str | None = None


BASE = {"endpoint": ("name", "source", "path", "org"), "target": ("name", "type", "timeout", "rate_limit", "retry")}


class Objects:
    """Who may change what, what clashes, what is kept (sealed), and what goes live."""

    def __init__(self, config: Config, store: Store, vault: Vault, live: Live, clock: Callable[[], float]) -> None:
        self.config = config
        self.store = store
        self.vault = vault
        self.live = live
        self.clock = clock
        self.lock = asyncio.Lock()  # check, save and apply as one step: no two objects of one name
        self._applied: dict[tuple[str, str, str], float] = {}  # (kind, org, name) live here → its updated_at

    # ---- views

    def _endpoint_view(self, item: EndpointConfig, saved: SavedObject | None) -> EndpointOut:
        extra = item.extra if saved is None else {k: v for k, v in saved.config.items() if k not in BASE["endpoint"]}
        paths = [] if saved else list(secret_paths(sources.get(item.source).settings.model_validate(item.extra)))
        return EndpointOut(
            name=item.name,
            source=item.source,
            path=item.path,
            org=item.org or self.config.server.org,
            provisioned=saved is None,
            read_only=saved is None,
            settings=masked(extra, self.vault, paths),
            updated_at=saved.updated_at if saved else None,
            updated_by=saved.updated_by if saved else None,
        )

    def _target_view(self, item: TargetConfig, saved: SavedObject | None) -> TargetOut:
        extra = item.extra if saved is None else {k: v for k, v in saved.config.items() if k not in BASE["target"]}
        paths = [] if saved else list(secret_paths(target_types.get(item.type).settings.model_validate(item.extra)))
        return TargetOut(
            name=item.name,
            type=item.type,
            timeout=item.timeout,
            rate_limit=item.rate_limit.model_dump() if item.rate_limit else None,
            org=saved.org if saved else None,
            provisioned=saved is None,
            read_only=saved is None,
            settings=masked(extra, self.vault, paths),
            updated_at=saved.updated_at if saved else None,
            updated_by=saved.updated_by if saved else None,
        )

    def _model(self, saved: SavedObject) -> EndpointConfig | TargetConfig:
        """The saved object's model for a view (secrets still sealed: settings are not validated here)."""
        if saved.kind == "endpoint":
            return EndpointConfig.model_validate({**saved.config, "org": saved.org})
        return TargetConfig.model_validate(saved.config)

    def _view(self, saved: SavedObject) -> EndpointOut | TargetOut:
        item = self._model(saved)
        if isinstance(item, EndpointConfig):
            return self._endpoint_view(item, saved)
        return self._target_view(item, saved)

    async def listing(self, kind: Kind, org: str) -> list[Any]:
        mine = [s for s in await self.store.objects(kind) if s.org == org]
        files: list[Any]
        if kind == "endpoint":
            files = [
                self._endpoint_view(e, None) for e in self.config.endpoints if (e.org or self.config.server.org) == org
            ]
        else:
            files = [self._target_view(t, None) for t in self.config.targets]
        return [*files, *(self._view(s) for s in mine)]

    async def get(self, kind: Kind, org: str, name: str) -> Any:
        found = [v for v in await self.listing(kind, org) if v.name == name]
        if not found:
            raise Rejected(404, f"no {kind} {name}")
        return found[0]

    # ---- changes

    def _provisioned(self, kind: Kind) -> dict[str, EndpointConfig | TargetConfig]:
        items = self.config.endpoints if kind == "endpoint" else self.config.targets
        return {i.name: i for i in items}

    def _visible(self, kind: Kind, item: EndpointConfig | TargetConfig, org: str) -> bool:
        return kind == "target" or (getattr(item, "org", None) or self.config.server.org) == org

    async def _mine(self, kind: Kind, org: str, name: str) -> SavedObject:
        """The caller's saved object, or why it cannot be changed (the file's: 409; none: 404)."""
        filed = self._provisioned(kind).get(name)
        if filed is not None and self._visible(kind, filed, org):
            raise Rejected(409, f"{kind} {name} {READ_ONLY}")
        found = [s for s in await self.store.objects(kind) if s.org == org and s.name == name]
        if not found:
            raise Rejected(404, f"no {kind} {name}")
        return found[0]

    async def _name_free(self, kind: Kind, name: str) -> None:
        """Names are the server's, not an org's (routes name targets): say it is taken, not by whom."""
        taken = name in self._provisioned(kind) or any(s.name == name for s in await self.store.objects(kind))
        if taken:
            raise Rejected(409, f"a {kind} named {name} exists already")

    async def _path_free(self, name: str, path: str) -> None:
        """Webhooks arrive by path: one endpoint per path on the server."""
        taken = {e.path for e in self.config.endpoints}
        taken |= {str(s.config.get("path")) for s in await self.store.objects("endpoint") if s.name != name}
        if path in taken:
            raise Rejected(409, f"another endpoint serves {path} already")

    async def _known_targets(self, org: str) -> list[TargetConfig]:
        return [
            TargetConfig.model_validate({"name": s.name, "type": s.config.get("type")})
            for s in await self.store.objects("target")
            if s.org == org
        ]

    async def save(self, kind: Kind, org: str, body: dict[str, Any], by: str, name: str | None = None) -> Any:
        """Create (name None) or replace an object: checked, sealed, stored, then applied."""
        async with self.lock:
            previous = await self._mine(kind, org, name) if name is not None else None
            if name is not None and body.get("name", name) != name:
                raise Rejected(422, "name: an object cannot be renamed; delete it and make a new one")
            if name is not None:
                body = {**body, "name": name}
            try:
                plain_before = opened(previous.config, self.vault) if previous else None
            except VaultUnavailable as exc:
                raise Rejected(409, str(exc)) from None
            if previous is None and isinstance(body.get("name"), str):  # (any other name: check() says why not)
                await self._name_free(kind, body["name"])
            kept, item, paths = check(
                kind, body, org, self.config, await self._known_targets(org) if kind == "target" else (), plain_before
            )
            if isinstance(item, EndpointConfig):
                await self._path_free(item.name, item.path)
            try:
                stored = seal(kept, paths, self.vault)
            except VaultUnavailable as exc:
                raise Rejected(409, f"this {kind} holds secrets and {exc}") from None
            now = self.clock()
            await self.store.save_object(org, kind, item.name, stored, now, by)
            self._apply(org, item)
            self._applied[(kind, org, item.name)] = now
            log.info("object_saved", org=org, kind=kind, name=item.name, by=by, created=previous is None)
            saved = SavedObject(org, kind, item.name, stored, previous.created_at if previous else now, now, by)
            return self._view(saved)

    async def delete(self, kind: Kind, org: str, name: str, by: str) -> None:
        async with self.lock:
            await self._mine(kind, org, name)
            if kind == "target":
                await self._not_referred(org, name)
            if kind == "endpoint":
                self.live.remove_endpoint(name)
            else:
                self.live.remove_target(name)
            await self.store.delete_object(org, kind, name)
            self._applied.pop((kind, org, name), None)
            log.info("object_deleted", org=org, kind=kind, name=name, by=by)

    async def _not_referred(self, org: str, name: str) -> None:
        for other in await self.store.objects("target"):
            kind = target_types.REGISTRY.get(str(other.config.get("type")))
            if other.org == org and kind is not None and any(other.config.get(f) == name for f in kind.refers_to):
                raise Rejected(409, f"target {other.name} refers to {name}: change or delete it first")

    def _apply(self, org: str, item: EndpointConfig | TargetConfig) -> None:
        if isinstance(item, EndpointConfig):
            self.live.put_endpoint(item)
        else:
            self.live.put_target(item, org)

    async def load(self) -> int:
        """At start-up: put every saved object live (targets first). One that cannot be (the file has
        taken its name or path since, the secret key changed) is logged and left out, not fatal."""
        saved = await self.store.objects()
        return sum([await self._put(obj) for obj in sorted(saved, key=lambda s: s.kind != "target")])

    async def sync(self) -> None:
        """Another replica saved or deleted objects: make what is live here match the store. Only
        what changed is applied again (a target's transport is made anew when it is)."""
        async with self.lock:
            saved = {(o.kind, o.org, o.name): o for o in await self.store.objects()}
            for key in [k for k in self._applied if k not in saved]:
                kind, _, name = key
                if kind == "endpoint":
                    self.live.remove_endpoint(name)
                else:
                    self.live.remove_target(name)
                del self._applied[key]
                log.info("object_removed_elsewhere", kind=kind, name=name)
            changed = [o for key, o in saved.items() if self._applied.get(key) != o.updated_at]
            for obj in sorted(changed, key=lambda s: s.kind != "target"):
                if await self._put(obj):
                    log.info("object_applied_from_elsewhere", org=obj.org, kind=obj.kind, name=obj.name)

    async def _put(self, obj: SavedObject) -> int:
        """Put one saved object live: 1 if it is, 0 (and why, in the log) if it cannot be."""
        kind: Kind = "endpoint" if obj.kind == "endpoint" else "target"
        why = None
        filed_path = obj.kind == "endpoint" and obj.config.get("path") in {e.path for e in self.config.endpoints}
        if obj.name in self._provisioned(kind) or filed_path:
            why = "the configuration file has an object of that name or path now; the file decides"
        else:
            try:
                known = await self._known_targets(obj.org) if obj.kind == "target" else ()
                _, item, _ = check(kind, opened(obj.config, self.vault), obj.org, self.config, known)
                self._apply(obj.org, item)
                self._applied[(obj.kind, obj.org, obj.name)] = obj.updated_at
                return 1
            except (Rejected, VaultUnavailable) as exc:
                why = getattr(exc, "message", str(exc))
        log.error("object_not_applied", org=obj.org, kind=obj.kind, name=obj.name, reason=why)
        return 0
