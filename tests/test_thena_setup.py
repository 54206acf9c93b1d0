"""`alertbridge thena setup` against a fake apps-studio over real HTTP."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from . import processes
from .fakes.thena import FakeThenaAppsStudio

API_KEY = "pk_live_thena_key_42"
TOKEN = "webhook-token-77"


def setup(apps_url: str, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "THENA_API_KEY": API_KEY,
        "THENA_TEAM_IDS": "TLL2UCCRSG, TGCA9557W4 ,",
        "PUBLIC_BASE": "https://alerts.example.com/",
        "WEBHOOK_TOKEN": TOKEN,
        "THENA_APPS_URL": apps_url,
    }
    full = {k: v for k, v in {**os.environ, **base, **env}.items() if v is not None}
    for key, value in env.items():
        if value == "":
            full.pop(key, None)
    return processes.run(["thena", "setup", *args], cwd=tmp_path, env=full)


@pytest.mark.parametrize(("id_field", "wrap"), [("uid", False), ("appId", False), ("uid", True)])
def test_creates_and_installs_the_app(tmp_path: Path, id_field: str, wrap: bool) -> None:
    with FakeThenaAppsStudio(API_KEY, id_field=id_field, wrap_in_data=wrap) as thena:
        result = setup(thena.url, tmp_path)
        assert result.returncode == 0, result.stderr
        ((app_id, app),) = thena.apps.items()
        (install,) = thena.installs
    hooks = app["manifest"]["integration"]["webhooks"]
    for key, path in (("events", "/thena/events"), ("installations", "/thena/installations")):
        url = urlparse(hooks[key])
        assert (url.scheme, url.netloc, url.path) == ("https", "alerts.example.com", path)
        assert parse_qs(url.query) == {"token": [TOKEN]}
    assert app["visibility"] == "private"
    assert app["manifest"]["events"]["subscribe"] == []
    assert install == {
        "teamIds": ["TLL2UCCRSG", "TGCA9557W4"],
        "appId": app_id,
        "appConfiguration": {"required_settings": [], "optional_settings": []},
    }
    assert all(r.headers["x-api-key"] == API_KEY for r in thena.requests)
    assert app_id in result.stdout and "TLL2UCCRSG, TGCA9557W4" in result.stdout
    shown = result.stdout + result.stderr
    for secret in (TOKEN, API_KEY, "pk_live_fake_bot_token_123"):
        assert secret not in shown
    assert "token=***" in result.stdout


def test_a_refused_key_says_what_to_do(tmp_path: Path) -> None:
    with FakeThenaAppsStudio("another-key") as thena:
        result = setup(thena.url, tmp_path)
    assert result.returncode == 1
    assert "Thena refused the API key (HTTP 403)" in result.stderr and "THENA_API_KEY" in result.stderr
    assert API_KEY not in result.stderr + result.stdout
    assert thena.installs == []


def test_a_taken_slug(tmp_path: Path) -> None:
    with FakeThenaAppsStudio(API_KEY) as thena:
        assert setup(thena.url, tmp_path, "--slug", "mine").returncode == 0
        again = setup(thena.url, tmp_path, "--slug", "mine")
    assert again.returncode == 1 and "slug is taken" in again.stderr and "--slug" in again.stderr


def test_thena_down_or_failing(tmp_path: Path) -> None:
    with FakeThenaAppsStudio(API_KEY) as thena:
        thena.behave(502, times=1)
        failing = setup(thena.url, tmp_path)
        thena.down()
        down = setup(thena.url, tmp_path)
    assert failing.returncode == 1 and "HTTP 502" in failing.stderr and "try again later" in failing.stderr
    assert down.returncode == 1 and "unreachable" in down.stderr and "THENA_APPS_URL" in down.stderr


def test_missing_variables_are_listed(tmp_path: Path) -> None:
    result = setup("http://127.0.0.1:9", tmp_path, THENA_API_KEY="", PUBLIC_BASE="")
    assert result.returncode == 2
    assert "THENA_API_KEY" in result.stderr and "PUBLIC_BASE" in result.stderr


def test_dry_run_sends_nothing_and_masks_the_token(tmp_path: Path) -> None:
    with FakeThenaAppsStudio(API_KEY) as thena:
        result = setup(thena.url, tmp_path, "--dry-run")
        assert thena.requests == []
    assert result.returncode == 0, result.stderr
    assert "/thena/events?token=***" in result.stdout and TOKEN not in result.stdout
