"""Evaluation scores the trials the server would answer: a trial on a clip the task's speech gate refuses
(``422 no_speech``) is left out, and counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from training.data.manifest import Trial
from training.evaluation import gated_trials
from training.verify_calibrate import read_speech_trials


def write(path: Path, level: float, seed: int) -> str:
    sf.write(path, (level * np.random.default_rng(seed).standard_normal(24000)).astype(np.float32), 16000,
             subtype="PCM_16")
    return str(path)


def test_trials_on_silent_clips_are_left_out(tmp_path: Path) -> None:
    speech = [write(tmp_path / f"s{i}.wav", 0.1, i) for i in range(3)]
    silent = write(tmp_path / "silence.wav", 0.0, 9)
    trials = [Trial(1, speech[0], speech[1]), Trial(0, speech[0], silent), Trial(0, silent, speech[2]),
              Trial(0, speech[1], speech[2])]
    kept, left_out = gated_trials(trials)
    assert kept == [trials[0], trials[3]] and left_out == 2
    assert gated_trials(trials, "asr") == (trials, 0)  # a task without a gate keeps every trial
    listing = tmp_path / "trials.txt"
    listing.write_text("".join(f"{t.label} {t.path_a} {t.path_b}\n" for t in trials))
    assert len(read_speech_trials(str(listing), True)) == 2 and len(read_speech_trials(str(listing), False)) == 4
