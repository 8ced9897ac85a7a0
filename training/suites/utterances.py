"""One speaker's clip made ready for a conversation suite: resampled, trimmed of its silence, levelled, and its
truth turns (the clip's speech, cut at the pauses inside it). Shared by the simulated conversations
(:mod:`training.suites.conversations`) and the game's dialogues (:mod:`training.suites.game_dialogues`).
"""

from __future__ import annotations

from math import gcd

import numpy as np
from scipy.signal import resample_poly

from elp.speech_activity import FRAME_S, HOP_S, frame_levels_dbfs, true_runs
from training.suites.debian import SAMPLE_RATE

PEAK = 0.99  # a leveled clip whose peak would pass this is lowered to it
TRIM_DB, MARGIN_S = 35.0, 0.050  # frames: elp.speech_activity (25 ms every 10 ms)
#: a stretch this long inside a clip, every frame TRIM_DB under its loudest, is a pause: no one's speech in the truth
PAUSE_S = 0.3


def to_rate(wave: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    if rate == target:
        return wave.astype(np.float32)
    g = gcd(rate, target)
    return resample_poly(wave, target // g, rate // g).astype(np.float32)


def trim_silence(wave: np.ndarray, rate: int = SAMPLE_RATE, below_db: float = TRIM_DB) -> np.ndarray:
    """Drop leading and trailing frames more than ``below_db`` under the loudest frame, keeping a margin."""
    frame, hop, margin = int(FRAME_S * rate), int(HOP_S * rate), int(MARGIN_S * rate)
    if len(wave) <= frame:
        return wave
    starts = np.arange(0, len(wave) - frame + 1, hop)
    db = frame_levels_dbfs(wave, rate)
    loud = np.flatnonzero(db > db.max() - below_db)
    begin = max(0, int(starts[loud[0]]) - margin)
    end = min(len(wave), int(starts[loud[-1]]) + frame + margin)
    return wave[begin:end]


def speech_turns(start: int, wave: np.ndarray, speaker: str, rate: int = SAMPLE_RATE,
                 below_db: float = TRIM_DB, pause_s: float = PAUSE_S) -> list[tuple[float, float, str]]:
    """The truth turns of a clip placed at sample ``start``: its span cut at every pause inside it (``pause_s`` or
    longer of frames more than ``below_db`` under its loudest, ``MARGIN_S`` kept either side), so a turn is speech.
    Some sources join several utterances into one clip (realvox segments hold words with 0.1-0.3 s of noise between,
    game lines breathe); without the cut those pauses count as speech no one can find."""
    frame, hop, margin = int(FRAME_S * rate), int(HOP_S * rate), int(MARGIN_S * rate)
    bounds = [(0, len(wave))]
    if len(wave) > frame:
        starts = np.arange(0, len(wave) - frame + 1, hop)
        db = frame_levels_dbfs(wave, rate)
        quiet = db <= db.max() - below_db
        for first, last in true_runs(quiet):
            a, b = int(starts[first]) + frame // 2, int(starts[last - 1]) + frame // 2  # the pause's frame centres
            if first == 0 or last == len(quiet) or b - a < pause_s * rate:
                continue  # leading or trailing quiet (trimmed already) or a short pause
            begin, end = bounds.pop()
            bounds += [(begin, a + margin), (b - margin, end)]
    return [(round((start + a) / rate, 3), round((start + b) / rate, 3), speaker) for a, b in bounds]


def level(wave: np.ndarray, dbfs: float) -> tuple[np.ndarray, bool]:
    """``wave`` at an RMS of ``dbfs``; lowered to a peak of PEAK where that would clip (second value True)."""
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
    if rms <= 0:
        return wave.astype(np.float32), False
    out = wave * (10 ** (dbfs / 20) / rms)
    peak = float(np.max(np.abs(out)))
    if peak > PEAK:
        return (out * (PEAK / peak)).astype(np.float32), True
    return out.astype(np.float32), False
