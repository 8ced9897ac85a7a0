"""Thin wrappers around the espeak-ng, flite and festival command-line synthesisers.

Each returns (float32 mono waveform, native sample rate); post-processing lives in audio.py.
Festival is driven in batches through one process per batch, because its start-up (voice
loading) costs more than synthesising a sentence.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

BINARIES = {"espeak": "espeak-ng", "flite": "flite", "festival": "festival"}


def missing_synthesisers() -> list[str]:
    """Names of synthesiser binaries that are not installed (tests skip on these)."""
    return [name for name, exe in BINARIES.items() if shutil.which(exe) is None]


@dataclass(frozen=True)
class Render:
    """Everything a synthesiser needs to render one clip (already includes emotion and jitter)."""

    synth: str  # espeak | flite | festival
    voice: str
    text: str
    variant: str = ""  # espeak variant
    pitch: float = 50.0  # espeak -p (0-99); flite/festival diphone: target f0 mean in Hz
    pitch_range: float = 1.0  # multiplier of the voice's range (espeak: SSML level; diphone: f0 std)
    f0_std: float = 15.0  # Hz, diphone voices only
    f0_shift: float = 1.0  # flite clustergen voices (awb, slt)
    rate: float = 1.0  # speed factor (>1 = faster)
    wpm: int = 160  # espeak base words per minute
    amplitude: int = 100  # espeak -a
    extra: dict[str, str] = field(default_factory=dict)


def _read(path: Path) -> tuple[np.ndarray, int]:
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return x[:, 0].copy(), int(sr)


def _espeak_range_level(mult: float) -> str:
    """espeak-ng exposes pitch range only through SSML levels (relative to the voice's range)."""
    for level, upper in (("x-low", 0.55), ("low", 0.85), ("medium", 1.15), ("high", 1.5)):
        if mult < upper:
            return level
    return "x-high"


def render_espeak(r: Render, tmp: Path) -> tuple[np.ndarray, int]:
    """espeak-ng: accent+variant voice, -p pitch, -s rate, -a amplitude, SSML pitch range."""
    out = tmp / "e.wav"
    voice = r.voice + (f"+{r.variant}" if r.variant else "")
    ssml = f'<speak><prosody range="{_espeak_range_level(r.pitch_range)}">{r.text}</prosody></speak>'
    cmd = ["espeak-ng", "-m", "-v", voice, "-p", str(int(round(np.clip(r.pitch, 0, 99)))),
           "-s", str(int(round(r.wpm * r.rate))), "-a", str(int(r.amplitude)), "-w", str(out), ssml]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return _read(out)


def render_flite(r: Render, tmp: Path) -> tuple[np.ndarray, int]:
    """flite: diphone voices (kal, kal16) take f0 mean/std; clustergen ones (awb, slt) an f0 shift."""
    out = tmp / "f.wav"
    cmd = ["flite", "-voice", r.voice, "--setf", f"duration_stretch={1.0 / r.rate:.4f}"]
    if r.voice in ("kal", "kal16"):
        cmd += ["--setf", f"int_f0_target_mean={r.pitch:.2f}",
                "--setf", f"int_f0_target_stddev={r.f0_std * r.pitch_range:.2f}"]
    elif r.voice in ("awb", "slt"):
        cmd += ["--setf", f"f0_shift={r.f0_shift:.4f}"]
    cmd += ["-t", r.text, "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return _read(out)


_HTS_BASE = ('(list "-m" (path-append hts_data_dir "cmu_us_slt_arctic_hts.htsvoice")) '
             "'(\"-g\" 0.0) '(\"-b\" 0.0) '(\"-u\" 0.5)")


def render_festival_batch(renders: list[Render], tmp: Path) -> list[tuple[np.ndarray, int]]:
    """festival: one process for a batch; diphone voices get int_lr_params, HTS gets -r speed."""
    lines: list[str] = []
    current = None
    for i, r in enumerate(renders):
        if r.voice != current:
            lines.append(f"(voice_{r.voice})")
            current = r.voice
        if r.voice.endswith("_diphone"):
            lines.append(f"(set! int_lr_params '((target_f0_mean {r.pitch:.2f}) "
                         f"(target_f0_std {r.f0_std * r.pitch_range:.2f}) "
                         "(model_f0_mean 170) (model_f0_std 34)))")
            lines.append(f"(Parameter.set 'Duration_Stretch {1.0 / r.rate:.4f})")
        else:
            lines.append(f"(set! hts_engine_params (list {_HTS_BASE} '(\"-r\" {r.rate:.4f})))")
        text = r.text.replace("\\", " ").replace('"', " ")
        lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{text}")) "{tmp / f"{i}.wav"}" \'riff)')
    script = tmp / "batch.scm"
    script.write_text("\n".join(lines) + "\n")
    subprocess.run(["festival", "-b", str(script)], check=True, capture_output=True, timeout=600)
    return [_read(tmp / f"{i}.wav") for i in range(len(renders))]


def render_many(renders: list[Render]) -> list[tuple[np.ndarray, int]]:
    """Render a list of clips (any synthesisers) in a private temporary folder."""
    with tempfile.TemporaryDirectory(prefix="corpus_synth_") as d:
        tmp = Path(d)
        results: list[tuple[np.ndarray, int] | None] = [None] * len(renders)
        fest = [i for i, r in enumerate(renders) if r.synth == "festival"]
        if fest:
            for i, res in zip(fest, render_festival_batch([renders[i] for i in fest], tmp), strict=True):
                results[i] = res
        for i, r in enumerate(renders):
            if r.synth == "espeak":
                results[i] = render_espeak(r, tmp)
            elif r.synth == "flite":
                results[i] = render_flite(r, tmp)
        assert all(res is not None for res in results)
        return [res for res in results if res is not None]
