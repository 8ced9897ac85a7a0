"""Views of a training clip for speaker distillation: what the student hears and what the teacher hears.

The student must give real people's telephone-band, noisy, re-encoded speech the embedding the
teacher gives the clean voice, so a view degrades the student's audio (8 kHz band, mu-law or GSM
codec, noise, gain) while the teacher hears the same voice clean. Speed perturbation moves pitch,
formants and tempo together (a vocal-tract-length change): it makes a *new* speaker, so the teacher
hears the perturbed voice too (Ko et al.'s speed perturbation counted as new speakers).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import numpy as np
from scipy.signal import resample_poly

from training.dataset import narrowband, telephone_band

SAMPLE_RATE = 16000
SPEEDS = (0.88, 0.94, 1.06, 1.12)


@dataclass
class View:
    """One view of a clip: ``student`` audio (degraded) and ``teacher`` audio (clean, same voice)."""

    student: np.ndarray
    teacher: np.ndarray
    recipe: str


def speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Resample so the clip plays ``factor`` times faster: pitch and formants move with the tempo."""
    return resample_poly(audio, 100, int(round(100 * factor))).astype(np.float32)


def gsm(audio: np.ndarray) -> np.ndarray:
    """GSM 06.10 full-rate codec at 8 kHz through sox, back to 16 kHz float."""
    raw = np.clip(audio, -1, 1).astype(np.float32).tobytes()
    encoded = subprocess.run(["sox", "-q", "-t", "f32", "-r", str(SAMPLE_RATE), "-c", "1", "-", "-r", "8000",
                              "-t", "gsm", "-"], input=raw, capture_output=True, check=True).stdout
    decoded = subprocess.run(["sox", "-q", "-t", "gsm", "-r", "8000", "-c", "1", "-", "-t", "f32", "-r",
                              str(SAMPLE_RATE), "-"], input=encoded, capture_output=True, check=True).stdout
    out = np.frombuffer(decoded, dtype=np.float32)
    return np.pad(out, (0, max(0, audio.size - out.size)))[: audio.size].copy()


def telephone(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """300-3400 Hz band, 8 kHz sampling, then mu-law or (a third of the time) GSM."""
    if rng.random() < 1 / 3:
        return gsm(resample_poly(narrowband(audio), 2, 1).astype(np.float32))
    return telephone_band(audio)


def add_noise(audio: np.ndarray, rng: np.random.Generator, snr_db: tuple[float, float] = (5.0, 30.0)) -> np.ndarray:
    """White or pink (1/f) noise at a random SNR."""
    if rng.random() < 0.5:
        spectrum = np.fft.rfft(rng.standard_normal(audio.size))
        noise = np.fft.irfft(spectrum / np.sqrt(np.arange(1, spectrum.size + 1)), n=audio.size)
    else:
        noise = rng.standard_normal(audio.size)
    power = float(np.mean(audio**2)) + 1e-10
    noise *= np.sqrt(power / (float(np.mean(noise**2)) + 1e-10) / 10 ** (rng.uniform(*snr_db) / 10))
    return (audio + noise).astype(np.float32)


def make_view(audio: np.ndarray, view: int, rng: np.random.Generator, telephone_share: float = 0.45) -> View:
    """View 0 is the clean clip; later views are a new speaker (speed, half the time) heard through
    a telephone line (``telephone_share`` of them), noise or both, with random gain (the target
    deployment decides the share: the human suite is all telephone band)."""
    if view == 0:
        return View(audio, audio, "clean")
    recipe = []
    voice = audio
    if rng.random() < 0.5:
        factor = float(rng.choice(SPEEDS))
        voice, recipe = speed(audio, factor), [f"speed{factor}"]
    heard = voice
    channel = rng.random()
    if channel < telephone_share:
        heard, recipe = telephone(heard, rng), [*recipe, "telephone"]
    if channel > telephone_share * 2 / 3:  # a third of the telephone views and every other one get noise
        heard, recipe = add_noise(heard, rng), [*recipe, "noise"]
    heard = heard * 10 ** (rng.uniform(-12, 6) / 20)
    peak = float(np.abs(heard).max())
    heard = heard / peak * 0.99 if peak > 0.99 else heard
    return View(heard.astype(np.float32), voice, "+".join(recipe))
