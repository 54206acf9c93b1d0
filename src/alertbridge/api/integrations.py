"""Seed 001's integration settings, as its console used them:

    GET  /api/integrations/pagerduty        the settings (the API key masked) and the webhook URL
    POST /api/integrations/pagerduty        {"enabled", "apiKey", "integrationKey", "webhookSecret"}
    POST /api/integrations/pagerduty/test   {"apiKey"} (or the saved one) against PagerDuty's API

They govern the PagerDuty endpoint at `/api/webhooks/pagerduty` of the caller's org: disabled,
it refuses webhooks (404); once a webhook secret is saved, every webhook must be signed with it;
with an integration key, only webhooks from that integration are routed (the others are stored,
their trace saying why).
Secrets are encrypted at rest (`vault.py`), never returned, never logged. Authorization: an API
token (`alertbridge tokens create`); saving needs the admin role.

Also the admin API's `POST /api/v1/integrations/test` (`router`): does a provider accept an API key.
The seed's routes stay Starlette routes outside /api/v1: their answers (`{"error": …}`, bodies read
as they come) are the seed's.
"""
# No `from __future__ import annotations` here: FastAPI reads these annotations at run time.

import dataclasses
import json
import os
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import httpx
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alertbridge import logs
from alertbridge.api.deps import Caller
from alertbridge.auth import Refused, caller
from alertbridge.sources import integration
from alertbridge.sources.base import Endpoint
from alertbridge.store.base import Store
from alertbridge.targets import KEY_TESTS, KeyKind
from alertbridge.vault import Vault, VaultUnavailable, mask

log = logs.get("alertbridge.integrations")

# Seed 001's integration: which source it configures, at which path, is that source's declaration.
SOURCE, INTEGRATION = integration()
KIND, PATH = INTEGRATION.kind, INTEGRATION.path


router = APIRouter(tags=["configuration"])


class KeyTest(BaseModel):
    kind: KeyKind  # a kind of `targets.KEY_TESTS`
    api_key: str = Field(min_length=1, max_length=500, pattern=r"^[\x21-\x7e]+$")  # what an HTTP header can carry
    url: str | None = Field(default=None, pattern=r"^https?://[\x21-\x7e]+$")  # EU or another base URL


class KeyCheck(BaseModel):
    ok: bool
    message: str


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def check_key(kind: str, key: str, url: str | None = None) -> dict[str, Any]:
    """Ask the provider whether an API key works, with the cheapest read it allows."""
    test = KEY_TESTS.get(kind)  # declared by the provider's target module
    if test is None:
        return {"ok": False, "message": f"cannot test {kind!r} keys: {' or '.join(KEY_TESTS)}"}
    base = url or os.environ.get(test.url_env, test.default_url)
    target, headers, name = test.path, test.headers(key), test.label
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(base.rstrip("/") + target, headers=headers)
    except httpx.HTTPError as exc:
        return {"ok": False, "message": f"{name} could not be reached: {type(exc).__name__}"}
    except (ValueError, UnicodeError):
        return {"ok": False, "message": "the key or the URL cannot be sent in an HTTP request"}
    if answer.status_code == 200:
        return {"ok": True, "message": f"{name} accepted the API key"}
    reason = "refused the API key" if answer.status_code in (401, 403) else f"answered {answer.status_code}"
    return {"ok": False, "message": f"{name} {reason}"}


@router.post("/integrations/test", response_model=KeyCheck)
async def test_key(request: KeyTest, caller: Caller) -> KeyCheck:
    """Test connection: does PagerDuty (or Opsgenie) accept this API key? The key is not stored."""
    if caller.role != "admin":  # it makes this server call out: admins only
        raise HTTPException(403, "only an admin can test keys")
    return KeyCheck(**await check_key(request.kind, request.api_key, request.url))


def apply(endpoints: MutableMapping[str, Endpoint], org: str, config: dict[str, Any], vault: Vault) -> bool:
    """Put saved settings into the live endpoint; False if this org has no such endpoint."""
    endpoint = endpoints.get(PATH)
    if endpoint is None or endpoint.org != org or endpoint.source.name != SOURCE.name:
        return False
    secret = vault.open(config["webhookSecret"]) if config.get("webhookSecret") else None
    extra = INTEGRATION.apply(endpoint.config.extra, config, secret)  # the source's own settings keys
    settings = endpoint.source.settings.model_validate(extra)
    endpoints[PATH] = dataclasses.replace(endpoint, settings=settings, enabled=bool(config.get("enabled", True)))
    return True


def integrations_api(
    store: Store,
    endpoints: Callable[[], MutableMapping[str, Endpoint]],
    vault: Vault,
    clock: Callable[[], float] = time.time,
) -> list[Route]:
    async def identify(request: Request) -> tuple[str, str, str] | Response:
        try:
            found = await caller(request, store, clock)
        except Refused as exc:
            return _error(exc.status, exc.message)
        return found.org, found.role, found.user or found.name

    async def saved(org: str) -> dict[str, Any]:
        return next((c for o, kind, c in await store.integrations() if o == org and kind == KIND), {})

    def view(request: Request, org: str, config: dict[str, Any]) -> dict[str, Any]:
        key = None
        if config.get("apiKey"):
            try:
                key = mask(vault.open(config["apiKey"]))
            except VaultUnavailable:
                key = "••••"
        endpoint = endpoints().get(PATH)
        live = (
            endpoint if endpoint is not None and endpoint.org == org and endpoint.source.name == SOURCE.name else None
        )
        return {
            "enabled": bool(live and live.enabled),
            "webhookUrl": str(request.base_url).rstrip("/") + PATH,
            "apiKey": key,
            "integrationKey": config.get("integrationKey"),
            # Whether webhooks must be signed: a secret saved here, or one in the configuration file.
            "webhookSecretSet": bool(config.get("webhookSecret")) or bool(live and live.settings.secrets()),
        }

    async def settings(request: Request) -> Response:
        found = await identify(request)
        if isinstance(found, Response):
            return found
        org, role, who = found
        config = await saved(org)
        if request.method == "GET":
            return JSONResponse(view(request, org, config))
        if role != "admin":
            return _error(403, "only an admin can change integrations")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "the body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "the body must be an object: {enabled, apiKey, integrationKey, webhookSecret}")
        unknown = [k for k in body if k not in ("enabled", "apiKey", "integrationKey", "webhookSecret")]
        if unknown:
            return _error(400, f"unknown setting {unknown[0]!r}")
        wrong = [
            k
            for k in ("apiKey", "integrationKey", "webhookSecret")
            if body.get(k) not in (None, "") and not isinstance(body[k], str)
        ]
        if wrong:
            return _error(400, f'{wrong[0]} must be a string (or null / "" to clear it)')
        try:
            updated = dict(config)
            if "enabled" in body:
                updated["enabled"] = bool(body["enabled"])
            if "integrationKey" in body:
                updated["integrationKey"] = (body["integrationKey"] or "").strip() or None
            for name in ("apiKey", "webhookSecret"):
                value = body.get(name)
                if isinstance(value, str) and value and not value.startswith("••••"):  # a masked value: unchanged
                    updated[name] = vault.seal(value)
                elif name in body and not value:
                    updated.pop(name, None)
        except VaultUnavailable as exc:
            return _error(409, str(exc))
        await store.save_integration(org, KIND, updated, clock(), who)
        applied = apply(endpoints(), org, updated, vault)
        log.info("integration_saved", org=org, kind=KIND, by=who, applied=applied)
        return JSONResponse(view(request, org, updated))

    async def test(request: Request) -> Response:
        found = await identify(request)
        if isinstance(found, Response):
            return found
        org, _, _ = found
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return _error(400, "the body is not JSON")
        key = body.get("apiKey") if isinstance(body, dict) else None
        if not key:
            config = await saved(org)
            if not config.get("apiKey"):
                return _error(400, "no apiKey given and none saved")
            key = vault.open(config["apiKey"])
        return JSONResponse(await check_key(INTEGRATION.key_test, key))

    return [
        Route(f"/api/integrations/{KIND}", settings, methods=["GET", "POST"]),
        Route(f"/api/integrations/{KIND}/test", test, methods=["POST"]),
    ]
