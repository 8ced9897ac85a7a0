"""Post-processing that turns a raw synthesiser output into a corpus clip.

Everything random here draws from a numpy Generator seeded per clip, so a clip's bytes depend
only on (corpus seed, clip id), never on worker scheduling.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy import signal

SR = 16000


def trim(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Cut synthesiser silence to a short random pad, so durations reflect speech."""
    frame = max(1, int(0.01 * sr))
    n = len(x) // frame
    if n == 0:
        return x
    energy = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1))
    active = np.flatnonzero(energy > 0.02 * (energy.max() + 1e-9))
    if active.size == 0:
        return x
    pad_a = int(rng.uniform(0.05, 0.25) * sr)
    pad_b = int(rng.uniform(0.05, 0.25) * sr)
    a = max(0, active[0] * frame - pad_a)
    b = min(len(x), (active[-1] + 1) * frame + pad_b)
    return x[a:b]


def resample_warp(x: np.ndarray, sr: int, warp: float) -> np.ndarray:
    """Resample to 16 kHz while scaling pitch and formants by `warp` (duration by 1/warp).

    This is the classic speed-perturbation trick; with a fixed per-speaker warp it turns one
    synthetic voice into a family of voices with different vocal-tract lengths.
    """
    ratio = Fraction(SR, sr) / Fraction(warp).limit_denominator(200)
    ratio = ratio.limit_denominator(400)
    y = signal.resample_poly(x.astype(np.float64), ratio.numerator, ratio.denominator)
    return y.astype(np.float32)


def tilt(x: np.ndarray, db: float) -> np.ndarray:
    """Spectral tilt: +db boosts, -db cuts energy above ~1.5 kHz (tense vs. lax voice)."""
    if abs(db) < 1e-6:
        return x
    sos = signal.butter(2, 1500, "highpass", fs=SR, output="sos")
    high = signal.sosfilt(sos, x)
    return (x + (10 ** (db / 20) - 1.0) * high).astype(np.float32)


def soft_clip(x: np.ndarray, drive: float) -> np.ndarray:
    """Mild saturation (angry 'pressed' voice); drive 0 leaves the signal untouched."""
    if drive <= 0:
        return x
    peak = np.max(np.abs(x)) + 1e-9
    g = 1.0 + drive
    return (np.tanh(g * x / peak) / np.tanh(g) * peak).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise by spectral shaping of white noise."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / np.sqrt(f), n).astype(np.float32)


def babble(n: int, bank: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Babble: 3-6 overlapping speech snippets from a seeded bank of synthetic talkers."""
    out = np.zeros(n, dtype=np.float32)
    for _ in range(int(rng.integers(3, 7))):
        src = bank[int(rng.integers(len(bank)))]
        reps = int(np.ceil((n + len(src)) / len(src))) + 1
        tiled = np.tile(src, reps)
        start = int(rng.integers(len(src)))
        seg = tiled[start:start + n]
        out += seg / (np.sqrt(np.mean(seg ** 2)) + 1e-9)
    return out


def reverb(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cheap synthetic room: exponentially decaying noise impulse response (RT60 0.2-0.6 s)."""
    rt60 = rng.uniform(0.2, 0.6)
    n = int(rt60 * SR)
    t = np.arange(n) / SR
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir[0] = 1.0 / rng.uniform(0.3, 0.8)  # direct path dominates
    y = signal.fftconvolve(x, ir)[: len(x)]
    return (y / (np.max(np.abs(y)) + 1e-9) * np.max(np.abs(x))).astype(np.float32)


def finish(x: np.ndarray, rng: np.random.Generator, level_dbfs: float, noise: str, snr_db: float,
           bank: list[np.ndarray]) -> np.ndarray:
    """Set the speech level, add noise at the given SNR and keep the peak below full scale."""
    rms = np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12
    x = (x * (10 ** (level_dbfs / 20) / rms)).astype(np.float32)
    if noise != "none":
        if noise == "white":
            nz = rng.standard_normal(len(x)).astype(np.float32)
        elif noise == "pink":
            nz = pink_noise(len(x), rng)
        else:
            nz = babble(len(x), bank, rng)
        speech_p = np.mean(x.astype(np.float64) ** 2)
        noise_p = np.mean(nz.astype(np.float64) ** 2) + 1e-12
        x = x + nz * np.sqrt(speech_p / noise_p / 10 ** (snr_db / 10)).astype(np.float32)
    peak = float(np.max(np.abs(x)))
    if peak > 0.98:
        x = x * (0.98 / peak)
    return x.astype(np.float32)


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """Quantise once, deterministically, so FLAC bytes are reproducible."""
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
