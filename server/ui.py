"""The try-it page: ``GET /`` serves one self-contained HTML page (its CSS and JS from server/static/).

Not part of the JSON contract: the page only calls the public endpoints of docs/API.md, with relative
URLs (so it works behind a path prefix), and loads nothing from outside the server (no CDN, no fonts),
which its Content-Security-Policy enforces. ``ELP_UI_ENABLED=false`` leaves these routes out (404).

The page knows no task by name: ``GET /`` carries :func:`page_tasks`, a JSON description of the
registered tasks (``elp/tasks``), in a ``<script type="application/json" id="elp-tasks">`` data block
(read by ui.js, never executed, so the CSP stays ``script-src 'self'``), and ui.js draws a card,
an adapter choice and any extra inputs per task from it. Embedded rather than a ``GET /tasks``
endpoint: no new public API to keep stable, and the page and its description cannot disagree.
Each entry (all read from the task's ``TaskSpec``):

- ``name`` (adapter configs' ``task``), ``route`` (its endpoint), ``title`` (``heading``), ``summary``;
- ``default_adapter``: the set that answers the route when a request names none: the deployment's default
  (``ELP_DEFAULT_<ENDPOINT>_ADAPTER``) as the server resolved it against the store (a fallback set where the one
  named is missing), or the setting itself for a task the server did not resolve;
- ``answer_fields``: the task's own answer fields in order; ``headline``: the one that states the result;
- ``extra_clips``: ``[{name, description}]`` uploads besides ``file`` (verification's ``reference``);
- ``enrolled_reference``: ``{field, instead_of, description}`` or null (an enrolled speaker may
  replace the clip ``instead_of``; enrolment is ``POST /speakers/{id}`` with that task's set);
- ``enrolled_gallery``: whether the clip is compared with every enrolled speaker (identification: needs the key,
  so the page sends it only once a key is typed in);
- ``set_task``: the ``task`` of the adapter sets that answer it (diarization's: verification sets);
- ``options``: ``[{name, description, minimum, maximum, integer, switch, text}]`` form fields that tune an answer
  (diarization's ``num_speakers``; a ``switch`` is a checkbox, sent as ``true`` when ticked; ``text`` a text input:
  identification's ``speakers``);
- ``stream``: whether the task has a live stream (``WS <route>/stream``); ``partials``: whether it sends the
  answer of the utterance being spoken.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from elp.tasks import TASKS
from server.settings import Settings, default_adapter_setting

router = APIRouter(include_in_schema=False)

#: file name under server/static/ -> media type; nothing else is served from there. (Route names
#: ui_page, ui_redirect, ui_asset are the endpoint labels of the request metrics.)
ASSETS: dict[str, str] = {name: "text/javascript; charset=utf-8" for name in ("answers.js", "ui.js", "live.js",
                                                                               "capture.js")}
ASSETS["ui.css"] = "text/css; charset=utf-8"

#: same-origin only: the page's own script and style, the API, and blob: for playing the recorded clip
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


#: what index.html holds where the task description goes (inside its application/json data block)
TASKS_PLACEHOLDER = b"__ELP_TASKS__"


def page_tasks(settings: Settings, resolved: Mapping[str, str | None] | None = None) -> list[dict[str, Any]]:
    """The registered tasks as the page reads them (the module docstring lists the fields); ``resolved``: the
    service's default set per task."""
    resolved = resolved or {}
    return [{
        "name": spec.name,
        "set_task": spec.set_task,
        "route": spec.route,
        "title": spec.heading,
        "summary": spec.summary,
        "default_adapter": resolved.get(spec.name) or getattr(settings, default_adapter_setting(spec.endpoint),
                                                              spec.default_adapter),
        "answer_fields": list(spec.answer_fields.model_fields),
        "headline": spec.headline,
        "extra_clips": [dataclasses.asdict(clip) for clip in spec.extra_clips],
        "enrolled_reference": dataclasses.asdict(spec.enrolled_reference) if spec.enrolled_reference else None,
        "enrolled_gallery": spec.enrolled_gallery,
        "options": [{"name": option.name, "description": option.description, "minimum": option.minimum,
                     "maximum": option.maximum, "integer": option.kind is int, "switch": option.kind is bool,
                     "text": option.kind is str} for option in spec.options],
        "stream": spec.streams,
        "partials": spec.partial_answers,
    } for spec in TASKS]


def script_safe_json(value: Any) -> bytes:
    """JSON that cannot end its ``<script>`` block or open markup (``<``, ``>``, ``&`` escaped)."""
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


@cache
def read_static(name: str) -> bytes:
    """A packaged file, read once (package data, so it also works from a wheel install)."""
    return resources.files("server").joinpath("static", name).read_bytes()


@router.get("/")
async def ui_page(request: Request) -> Response:
    """The page (HTML), with the registered tasks' description filled in."""
    described = script_safe_json(page_tasks(request.app.state.settings, request.app.state.service.defaults))
    page = read_static("index.html").replace(TASKS_PLACEHOLDER, described)
    return Response(page, media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/ui")
async def ui_redirect() -> RedirectResponse:
    """``/ui`` -> the page; relative, so a proxy's path prefix is kept."""
    return RedirectResponse(".", status_code=307)


@router.get("/ui/{name}")
async def ui_asset(name: str) -> Response:
    """The page's script and stylesheet; any other name is the usual JSON 404."""
    if name not in ASSETS:
        raise HTTPException(status_code=404)
    return Response(read_static(name), media_type=ASSETS[name], headers=_HEADERS)
