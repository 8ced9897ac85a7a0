"""The guard between the held-out suites and training: training rows may not come from them.

Held out (see :mod:`training.suites.registry`): every real person of the human suite, of both
roles (valid speakers choose thresholds and models, test speakers are never used for anything but
the final figure); the Kokoro synthesiser family (the far suite); the held-out intent phrasing family.
A row is also refused when its audio lies in a suite folder (one holding ``suite.json``).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable
from pathlib import Path

from training.data.manifest import ManifestRow
from training.suites.registry import KOKORO_SYNTH, human_speaker_roles

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
def _in_suite_folder(folder: str) -> bool:
    return any((parent / SUITE_MARKER).is_file() for parent in (Path(folder), *Path(folder).parents))


def held_out_reason(row: ManifestRow) -> str | None:
    """Why ``row`` may not be trained on, or None when it may."""
    if row.speaker in human_speaker_roles() or (row.meta or {}).get("human"):
        return f"speaker {row.speaker!r} is a held-out real person (human suite)"
    if str((row.meta or {}).get("synth", "")).lower() == KOKORO_SYNTH:
        return "it is a Kokoro clip (the far suite's held-out synthesiser family)"
    if row.text is not None and row.text.strip() in _held_out_phrasings():
        return f"its text {row.text!r} is a held-out intent phrasing"
    if _in_suite_folder(str(Path(row.path).parent)):
        return f"its audio {row.path} lies in an evaluation suite folder"
    return None


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
