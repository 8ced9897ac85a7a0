"""The suite tests' fixture clips are noise and tone stand-ins: see ``level_speech_gate``."""

from __future__ import annotations

from tests.training.conftest import level_speech_gate  # noqa: F401  (autouse: applies to every test here)
