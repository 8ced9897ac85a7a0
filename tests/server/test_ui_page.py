"""The try-it page's routes without a browser: served with a same-origin CSP, nothing loaded from
outside the server, off (404) when ``ui_enabled`` is false, and not in the JSON contract's schema;
the tasks it shows are the registry's (a task registered here appears), and its scripts name none.
The page itself is driven in a real browser by tests/ui/test_page_browser.py."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator

import pytest

from elp.tasks import TASKS, ExtraClip, register
from elp.tasks.classifier import ClassifierTask
from server.__main__ import settings_from_args
from server.ui import ASSETS, read_static
from tests.server.helpers import make_settings, running_app

#: a task known only to this module, its summary trying to end the page's data block
TONE = ClassifierTask(name="tone", route="/tone", summary="Low or high? </script><script>alert(1)</script> & co",
                      default_adapter="tone-default", activation="relu", class_noun="tone",
                      example_labels=("low", "high"), display_name="Voice tone",
                      extra_clips=(ExtraClip("example", "a clip of the other tone"),))

pytestmark = pytest.mark.anyio


async def test_page_and_its_assets_are_served_same_origin_only(tiny_store, tmp_path) -> None:
    async with running_app(make_settings(*tiny_store, tmp_path)) as (_, client):
        page = await client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "script-src 'self'" in csp
        for reference in re.findall(r'(?:src|href)="([^"]+)"', page.text):
            assert not re.match(r"^(https?:)?//", reference), reference  # no CDN, no fonts, no absolute URL
        scripts = "".join(read_static(name).decode() for name in ASSETS if name.endswith(".js"))
        for name, media_type in ASSETS.items():  # each loaded by the page, or by its scripts (the audio worklet)
            assert f'"ui/{name}"' in page.text + scripts, name
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


def page_tasks_block(page: str) -> list[dict]:
    """The JSON of the page's ``<script type="application/json" id="elp-tasks">`` data block (exactly one)."""
    blocks = re.findall(r'<script type="application/json" id="elp-tasks">(.*?)</script>', page, re.S)
    assert len(blocks) == 1
    return json.loads(blocks[0])


@contextlib.contextmanager
def registered(spec: ClassifierTask) -> Iterator[None]:
    register(spec)
    try:
        yield
    finally:
        TASKS.remove(spec)


async def test_the_page_describes_the_registered_tasks_a_new_one_included(tiny_store, tmp_path) -> None:
    settings = make_settings(*tiny_store, tmp_path, default_emotion_adapter="emotion-alt",
                             default_intent_adapter="intent-missing")
    async with running_app(settings) as (_, client):
        with registered(TONE):  # after startup: the settings and the service know only the shipped tasks
            page = (await client.get("/")).text
            described = page_tasks_block(page)
            assert [entry["name"] for entry in described] == [spec.name for spec in TASKS]
    assert described[-1]["name"] == "tone"
    for entry, spec in zip(described, [*TASKS, TONE], strict=True):
        assert entry["route"] == spec.route and entry["title"] == spec.heading and entry["summary"] == spec.summary
        assert entry["answer_fields"] == list(spec.answer_fields.model_fields)
        assert entry["headline"] == spec.headline and entry["headline"] in entry["answer_fields"]
        assert entry["extra_clips"] == [{"name": c.name, "description": c.description} for c in spec.extra_clips]
        reference = spec.enrolled_reference
        assert entry["enrolled_reference"] == (None if reference is None else
                                               {"field": reference.field, "instead_of": reference.instead_of,
                                                "description": reference.description})
        assert entry["stream"] == spec.streams and entry["partials"] == spec.partial_answers
        assert entry["enrolled_gallery"] is spec.enrolled_gallery
    by_name = {entry["name"]: entry for entry in described}
    assert by_name["emotion"]["default_adapter"] == "emotion-alt"  # the deployment's default, not the registry's
    # the set that answers: the deployment's intent default is not in this store, so the registry's answers
    assert by_name["intent"]["default_adapter"] == "intent-default"
    assert by_name["tone"]["default_adapter"] == "tone-default"  # no setting for a task registered after startup
    assert by_name["tone"]["title"] == "Voice tone" and by_name["tone"]["headline"] == "label"
    assert by_name["tone"]["extra_clips"] == [{"name": "example", "description": "a clip of the other tone"}]
    assert "alert(1)" in page and "<script>alert" not in page  # the summary stays data, inside its block


def test_the_scripts_name_no_task() -> None:
    """What the page shows of a task comes from its description, so no script spells a task's name
    or endpoint as a string (comments may)."""
    names = {spec.name for spec in TASKS} | {spec.route.strip("/") for spec in TASKS}
    for script in (name for name in ASSETS if name.endswith(".js")):
        code = read_static(script).decode()
        strings = re.findall(r'"([^"\\\n]*)"|\'([^\'\\\n]*)\'|`([^`]*)`', code)
        found = {text for match in strings for text in match if text} & names
        assert not found, (script, found)
    assert re.search(r"\bTASKS = JSON\.parse\(", read_static("ui.js").decode())
