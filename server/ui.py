"""The try-it page: ``GET /`` serves one self-contained HTML page (its CSS and JS from server/static/).

Not part of the JSON contract: the page only calls the public endpoints of docs/API.md, with relative
URLs (so it works behind a path prefix), and loads nothing from outside the server (no CDN, no fonts),
which its Content-Security-Policy enforces. ``ELP_UI_ENABLED=false`` leaves these routes out (404).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import RedirectResponse, Response

router = APIRouter(include_in_schema=False)

#: file name under server/static/ -> media type; nothing else is served from there. (Route names
#: ui_page, ui_redirect, ui_asset are the endpoint labels of the request metrics.)
ASSETS: dict[str, str] = {"ui.js": "text/javascript; charset=utf-8", "ui.css": "text/css; charset=utf-8"}

#: same-origin only: the page's own script and style, the API, and blob: for playing the recorded clip
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


@cache
def read_static(name: str) -> bytes:
    """A packaged file, read once (package data, so it also works from a wheel install)."""
    return resources.files("server").joinpath("static", name).read_bytes()


@router.get("/")
async def ui_page() -> Response:
    """The page (HTML)."""
    return Response(read_static("index.html"), media_type="text/html; charset=utf-8", headers=_HEADERS)


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
