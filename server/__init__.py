"""HTTP inference server: one frozen speech backbone, ELP adapter sets for ASR, verification,
emotion and intent. Entry points: ``server.app.create_app`` and ``python -m server`` / ``elp-server``."""

from server.app import create_app
from server.settings import Settings

__all__ = ["Settings", "create_app"]
