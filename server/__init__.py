"""HTTP inference server: one frozen speech backbone, ELP adapter sets for ASR, verification,
emotion and intent. Entry points: ``server.app.create_app`` and ``python -m server`` / ``elp-server``.

Names are imported on first use (PEP 562): a decoding process imports ``server.audio`` alone, not the
app, torch and the model (``server.decoding``)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.app import create_app
    from server.settings import Settings

_MODULE_OF = {"create_app": "server.app", "Settings": "server.settings"}
__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        return getattr(importlib.import_module(_MODULE_OF[name]), name)
    raise AttributeError(f"module 'server' has no attribute {name!r}")
