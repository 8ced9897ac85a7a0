"""The guard between the held-out suites and training: training rows may not come from them.

Held out (see :mod:`training.suites.registry`): every real person of the human suite, of both
roles (valid speakers choose thresholds and models, test speakers are never used for anything but
the final figure); the Kokoro synthesiser family (the far suite); the held-out intent phrasing family;
for tasks that learn speakers, the actors of the game dialogue suite (diarization).
A row is also refused when its audio lies in a suite folder (one holding ``suite.json``).

Choosing (a model, a threshold, a decoding setting) has its own, looser check, :func:`choice_refusal`:
validation data may come from a suite marked ``"role": "valid"`` or from the human suite's valid
speakers, never from a test speaker, a test suite or the held-out phrasing family.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from elp.tasks import get_task
from training.data.manifest import ManifestRow
from training.suites.registry import GAME_DIALOGUE_SOURCE, KOKORO_SYNTH, human_speaker_roles

SUITE_MARKER = "suite.json"
#: the ``--held-out-guard`` of training tools: the check below, unless a corpus names its own
DEFAULT_GUARD = "training.suites.guard:check_training_rows"


class HeldOutDataError(ValueError):
    """Training rows include data that the held-out evaluation suites reserve."""


@functools.lru_cache(maxsize=1)
def _held_out_phrasings() -> frozenset[str]:
    from training.suites.phrasings import held_out_set

    return held_out_set()


@functools.lru_cache(maxsize=4096)
def _suite_of(folder: str) -> tuple[str, str] | None:
    """(suite name, role) of the nearest suite folder holding ``folder``; None outside every suite. A marker
    that is not a JSON object still makes a suite folder, one with no role."""
    for parent in (Path(folder), *Path(folder).parents):
        marker = parent / SUITE_MARKER
        if marker.is_file():
            try:
                info = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                info = None
            if not isinstance(info, dict):
                return parent.name, ""
            return str(info.get("suite", parent.name)), str(info.get("role", ""))
    return None


def held_out_reason(row: ManifestRow) -> str | None:
    """Why ``row`` may not be trained on, or None when it may."""
    if row.speaker in human_speaker_roles() or (row.meta or {}).get("human"):
        return f"speaker {row.speaker!r} is a held-out real person (human suite)"
    if str((row.meta or {}).get("synth", "")).lower() == KOKORO_SYNTH:
        return "it is a Kokoro clip (the far suite's held-out synthesiser family)"
    if row.text is not None and row.text.strip() in _held_out_phrasings():
        return f"its text {row.text!r} is a held-out intent phrasing"
    if (row.meta or {}).get("source") == GAME_DIALOGUE_SOURCE and get_task(row.task).target_field == "speaker":
        return "its speaker acts in the game dialogue suite (conversations-game-test), held out from speaker tasks"
    if _suite_of(str(Path(row.path).parent)) is not None:
        return f"its audio {row.path} lies in an evaluation suite folder"
    return None


def choice_refusal(row: ManifestRow) -> str | None:
    """Why ``row`` may not help choose anything (it belongs to a final figure), or None when it may."""
    role = human_speaker_roles().get(row.speaker)
    if role == "test":
        return f"speaker {row.speaker!r} is a test speaker of the human suite"
    if row.text is not None and row.text.strip() in _held_out_phrasings():
        return f"its text {row.text!r} is a held-out intent phrasing (a test family)"
    suite = _suite_of(str(Path(row.path).parent))
    if suite is None or suite[1] == "valid" or role == "valid":
        return None
    return f"its audio lies in the {suite[0]!r} suite, which is not marked for validation (\"role\": \"valid\")"


def check_choice_rows(rows: Iterable[ManifestRow], where: str = "validation rows",
                      manifest: str | Path | None = None) -> None:
    """Raise :class:`HeldOutDataError` when any row may not choose a setting, or when ``manifest`` itself
    lies in a suite not marked for validation; silent when all may."""
    suite = _suite_of(str(Path(manifest).resolve().parent)) if manifest is not None else None
    if suite is not None and suite[1] != "valid":
        raise HeldOutDataError(f"{where}: {manifest} lies in the {suite[0]!r} suite, which is not marked for "
                               f"validation: its rows may not choose a setting")
    offending = [(row, reason) for row in rows if (reason := choice_refusal(row)) is not None]
    if offending:
        shown = "; ".join(f"{row.id}: {reason}" for row, reason in offending[:3])
        raise HeldOutDataError(f"{where}: {len(offending)} row(s) are reserved for final figures and may not "
                               f"choose a setting ({shown}).")


def check_training_rows(rows: Iterable[ManifestRow], where: str = "training rows") -> None:
    """Raise :class:`HeldOutDataError` naming the first offending rows; silent when all are allowed."""
    offending = [(row, reason) for row in rows if (reason := held_out_reason(row)) is not None]
    if offending:
        shown = "; ".join(f"{row.id}: {reason}" for row, reason in offending[:3])
        raise HeldOutDataError(f"{where}: {len(offending)} row(s) come from the held-out evaluation suites, which "
                               f"are never trained on ({shown}). Remove them from the training manifest.")


def guard_named(spec: str) -> Callable[..., None]:
    """The held-out check named ``module:function`` (a ``--held-out-guard`` value): a corpus with its own
    rule names it, e.g. ``training.corpus.languages:check_language_training_rows``."""
    module, function = spec.split(":")
    return getattr(importlib.import_module(module), function)
