"""The try-it page's routes without a browser: served with a same-origin CSP, nothing loaded from
outside the server, off (404) when ``ui_enabled`` is false, and not in the JSON contract's schema.
The page itself is driven in a real browser by tests/ui/test_page_browser.py."""

from __future__ import annotations

import re

import pytest

from server.__main__ import settings_from_args
from server.ui import ASSETS, read_static
from tests.server.helpers import make_settings, running_app

pytestmark = pytest.mark.anyio


async def test_page_and_its_assets_are_served_same_origin_only(tiny_store, tmp_path) -> None:
    async with running_app(make_settings(*tiny_store, tmp_path)) as (_, client):
        page = await client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "script-src 'self'" in csp
        for reference in re.findall(r'(?:src|href)="([^"]+)"', page.text):
            assert not re.match(r"^(https?:)?//", reference), reference  # no CDN, no fonts, no absolute URL
        for name, media_type in ASSETS.items():
            assert f'"ui/{name}"' in page.text
            asset = await client.get(f"/ui/{name}")
            assert asset.status_code == 200 and asset.headers["content-type"] == media_type
        alias = await client.get("/ui", follow_redirects=False)
        assert alias.status_code == 307 and alias.headers["location"] == "."
        assert (await client.get("/ui/index.html")).json()["error"]["code"] == "not_found"
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert "/" not in paths and "/ui" not in paths


def test_static_files_fetch_nothing_from_outside() -> None:
    for name in ("index.html", *ASSETS):
        text = read_static(name).decode()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), name
        assert "@import" not in text and "@font-face" not in text, name


async def test_ui_disabled_means_404_on_the_page_and_the_api_still_serves(tiny_store, tmp_path) -> None:
    async with running_app(make_settings(*tiny_store, tmp_path, ui_enabled=False)) as (_, client):
        for path in ("/", "/ui", "/ui/ui.js"):
            answer = await client.get(path)
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found", path
        assert (await client.get("/adapters")).status_code == 200


def test_ui_setting_has_env_and_cli_forms(monkeypatch) -> None:
    assert settings_from_args([]).ui_enabled is True
    assert settings_from_args(["--no-ui-enabled"]).ui_enabled is False
    monkeypatch.setenv("ELP_UI_ENABLED", "false")
    assert settings_from_args([]).ui_enabled is False
    assert settings_from_args(["--ui-enabled"]).ui_enabled is True  # flags win over the environment
