"""Seeded harmonic tones with a little noise: stand-in clips whose pitch carries a class."""

from __future__ import annotations

import numpy as np

SR = 16000


def tone(f0: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 4))
    return (0.3 * wave / np.abs(wave).max() + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
