"""`alertbridge thena setup`: create Thena's private webhook app and install it on teams.

Thena has no UI for webhook apps: the app is created through the apps-studio API with a
manifest naming our events and installations URLs (with the webhook token on them), then
installed on each team. Replaces seed 000's `thena_app_setup.py`, with the same variables.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

DEFAULT_APPS_URL = "https://apps-studio.thena.ai"
KEY_PAGE = "https://dashboard.thena.ai/organization/settings/personal/security-access"

app = typer.Typer(help="Thena: create and install the webhook app.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


class ThenaSetupError(Exception):
    """A refusal or failure, worded as what to do about it."""


@dataclass(frozen=True)
class SetupResult:
    app_id: str
    installed_teams: list[str]


def hook_url(public_base: str, path: str, token: str) -> str:
    return f"{public_base.rstrip('/')}{path}?{urlencode({'token': token})}"


def masked(url: str, token: str) -> str:
    return url.replace(urlencode({"token": token}), "token=***")


def build_manifest(
    name: str, slug: str, public_base: str, token: str, events_path: str, installations_path: str
) -> dict[str, Any]:
    """The private app's manifest, as seed 000's script built it (an empty subscribe list means every event)."""
    base = public_base.rstrip("/")
    events = hook_url(base, events_path, token)
    return {
        "app": {
            "name": name,
            "description": "Routes Thena tickets to PagerDuty through alertbridge.",
            "category": "webhooks",
            "icons": {"small": f"{base}/health", "large": f"{base}/health"},
            "supported_locales": ["en-US"],
            "slug": slug,
        },
        "developer": {
            "name": "alertbridge",
            "website": base,
            "support_email": "support@example.com",
            "privacy_policy_url": base,
            "terms_url": base,
            "documentation_url": base,
        },
        "integration": {
            "entry_points": {"main": f"{base}/app", "configuration": f"{base}/config"},
            "webhooks": {"events": events, "installations": hook_url(base, installations_path, token)},
            "interactivity": {"request_url": events, "message_menu_option_url": events},
        },
        "configuration": {"required_settings": [], "optional_settings": []},
        "scopes": {
            "required": {
                "platform": [
                    {
                        "scope": "webhooks:read",
                        "reason": "Receive ticket events",
                        "description": "Lets the app receive platform events as webhooks",
                    }
                ]
            },
            "optional": {"platform": []},
        },
        "events": {"subscribe": [], "publish": []},
        "activities": [],
        "metadata": {"is_privileged_app": False},
    }


def _app_id(body: Any) -> str | None:
    for holder in (body, body.get("data") if isinstance(body, dict) else None):
        if isinstance(holder, dict):
            for key in ("appId", "uid", "id"):
                if isinstance(holder.get(key), str) and holder[key]:
                    return str(holder[key])
    return None


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        found = body.get("message") or body.get("error")
        if isinstance(found, list):
            found = "; ".join(str(f) for f in found)
        if found:
            return str(found)[:300]
    return str(body)[:200]


def _check(response: httpx.Response, step: str, apps_url: str) -> Any:
    status = response.status_code
    if status in (401, 403):
        raise ThenaSetupError(
            f"Thena refused the API key (HTTP {status}) while trying to {step}: check THENA_API_KEY "
            f"(create one at {KEY_PAGE})"
        )
    if status == 409:
        raise ThenaSetupError(f"Thena says the app slug is taken ({_message(response)}): pass another with --slug")
    if status == 404 and step == "install the app":
        raise ThenaSetupError(f"Thena does not know the app it just created (HTTP 404): {_message(response)}")
    if status >= 500:
        raise ThenaSetupError(f"Thena failed (HTTP {status}) at {apps_url} while trying to {step}; try again later")
    if not response.is_success:
        raise ThenaSetupError(f"Thena refused to {step} (HTTP {status}): {_message(response)}")
    try:
        return response.json()
    except ValueError:
        return {}


async def create_and_install(
    client: httpx.AsyncClient, apps_url: str, api_key: str, manifest: dict[str, Any], team_ids: list[str]
) -> SetupResult:
    base = apps_url.rstrip("/")
    headers = {"x-api-key": api_key, "content-type": "application/json"}
    try:
        created = _check(
            await client.post(
                f"{base}/apps/create-app", json={"app_visibility": "private", "manifest": manifest}, headers=headers
            ),
            "create the app",
            base,
        )
        app_id = _app_id(created)
        if app_id is None:
            keys = ", ".join(sorted(created)) if isinstance(created, dict) else type(created).__name__
            raise ThenaSetupError(f"Thena created the app but its answer has no appId or uid (keys: {keys})")
        installed = _check(
            await client.post(
                f"{base}/apps/install",
                json={
                    "teamIds": team_ids,
                    "appId": app_id,
                    "appConfiguration": {"required_settings": [], "optional_settings": []},
                },
                headers=headers,
            ),
            "install the app",
            base,
        )
    except httpx.TimeoutException:
        raise ThenaSetupError(f"Thena did not answer in time at {base}; check THENA_APPS_URL and try again") from None
    except httpx.TransportError as exc:
        raise ThenaSetupError(f"Thena is unreachable at {base} ({type(exc).__name__}); check THENA_APPS_URL") from None
    teams = installed.get("appInstalledForTeams") if isinstance(installed, dict) else None
    return SetupResult(app_id, [str(t) for t in teams] if isinstance(teams, list) else team_ids)


@app.command()
def setup(
    name: Annotated[str, typer.Option(help="The app's name in Thena.")] = "Thena → PagerDuty (alertbridge)",
    slug: Annotated[str | None, typer.Option(help="The app's slug, unique in your Thena org.")] = None,
    events_path: Annotated[str, typer.Option(help="Path of the events endpoint.")] = "/thena/events",
    installations_path: Annotated[str, typer.Option(help="Path of the installations endpoint.")] = (
        "/thena/installations"
    ),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the manifest (token masked); send nothing.")] = False,
) -> None:
    """Create the private webhook app and install it on THENA_TEAM_IDS.

    Reads THENA_API_KEY, THENA_TEAM_IDS (comma-separated), PUBLIC_BASE (this service's public URL),
    WEBHOOK_TOKEN (the token the endpoints expect) and THENA_APPS_URL (default apps-studio.thena.ai).
    """
    env = {
        name: os.environ.get(name, "").strip()
        for name in ("THENA_API_KEY", "THENA_TEAM_IDS", "PUBLIC_BASE", "WEBHOOK_TOKEN")
    }
    missing = [name for name, value in env.items() if not value and not (dry_run and name == "THENA_API_KEY")]
    if missing:
        err.print(f"[red]Set {', '.join(missing)} first (see docs/sources/thena.md).[/red]")
        raise typer.Exit(2)
    team_ids = [t.strip() for t in env["THENA_TEAM_IDS"].split(",") if t.strip()]
    if not team_ids:
        err.print("[red]THENA_TEAM_IDS holds no team id (e.g. TLL2UCCRSG, or several separated by commas).[/red]")
        raise typer.Exit(2)
    public_base, token = env["PUBLIC_BASE"].rstrip("/"), env["WEBHOOK_TOKEN"]
    if not public_base.startswith(("https://", "http://")):
        err.print(f"[red]PUBLIC_BASE must be a URL such as https://alerts.example.com, not {public_base!r}.[/red]")
        raise typer.Exit(2)
    slug = slug or "alertbridge-" + hashlib.sha256(f"{public_base}|{','.join(team_ids)}".encode()).hexdigest()[:10]
    manifest = build_manifest(name, slug, public_base, token, events_path, installations_path)
    events_url = masked(manifest["integration"]["webhooks"]["events"], token)
    installations_url = masked(manifest["integration"]["webhooks"]["installations"], token)
    if dry_run:
        import json

        out.print_json(masked(json.dumps(manifest), token))
        return
    apps_url = os.environ.get("THENA_APPS_URL", "").strip() or DEFAULT_APPS_URL

    async def run() -> SetupResult:
        async with httpx.AsyncClient(timeout=httpx.Timeout(15.0)) as client:
            return await create_and_install(client, apps_url, env["THENA_API_KEY"], manifest, team_ids)

    try:
        with out.status("Creating and installing the Thena app…"):
            result = asyncio.run(run())
    except ThenaSetupError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]", highlight=False)
        raise typer.Exit(1) from None
    table = Table(title="Thena webhook app installed", show_header=False)
    table.add_row("app id", result.app_id)
    table.add_row("slug", slug)
    table.add_row("events URL", events_url)
    table.add_row("installations URL", installations_url)
    table.add_row("installed for teams", ", ".join(result.installed_teams))
    out.print(table)
    out.print("Thena will now POST ticket events to the events URL.")
