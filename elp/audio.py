"""The one way a clip becomes model input: mono float32 at the backbone's rate, finite and bounded.

The server's upload decoding (``server.audio``, which adds the HTTP budget and limits around it),
training (``training.dataset.load_audio``) and the benchmarks all call this module, so a clip is
never seen differently in training and in serving: the same channel mix, the same resampler with
the same ratio, the same sample checks.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from elp.errors import AudioError

#: float samples beyond this are not audio (PCM decodes to [-1, 1]; a float WAV may be a few x louder)
MAX_ABS_AMPLITUDE = 1e4
#: largest up/down factor of the resampler: rates are mapped to the nearest ratio with this denominator
#: (44.1 kHz -> 16 kHz is 160/441 exactly; 191,999 Hz -> 16 kHz becomes 1/12, 4 ppm off in pitch)
MAX_RESAMPLE_FACTOR = 1000

AudioSource = bytes | str | Path
FrameBudget = Callable[[int, int, int], int]


def read_samples(source: AudioSource, budget: FrameBudget | None = None) -> tuple[np.ndarray, int]:
    """(samples of shape (frames, channels) as float32, sample rate) of a file or its bytes.

    ``budget(rate, channels, declared_frames)`` sees the header before any sample is decoded and
    returns how many frames to read at most (or raises); without it the whole clip is read. Raises
    ``AudioError`` for anything libsndfile cannot decode."""
    try:
        clip = sf.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else str(source))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"could not be decoded as audio: {_reason(exc)}") from None
    with clip:
        frames = -1 if budget is None else budget(clip.samplerate, clip.channels, clip.frames)
        try:
            return clip.read(frames=frames, dtype="float32", always_2d=True), clip.samplerate
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise AudioError(f"could not be decoded as audio: {_reason(exc)}") from None


def check_samples(samples: np.ndarray) -> None:
    """What the model must never see: no samples, NaN or infinite values, or values past
    ``MAX_ABS_AMPLITUDE`` (they turn an answer into NaN)."""
    if samples.size == 0:
        raise AudioError("contains no samples")
    if not np.isfinite(samples).all():
        raise AudioError("contains NaN or infinite samples")
    if float(np.abs(samples).max()) > MAX_ABS_AMPLITUDE:
        raise AudioError(f"has samples beyond +/-{MAX_ABS_AMPLITUDE:g}: not audio")


def to_model_input(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Mono (mean of the channels) float32 at ``target_rate`` from (frames, channels) or 1-D samples."""
    if samples.ndim == 2:
        mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    else:
        mono = samples
    if source_rate != target_rate:
        ratio = Fraction(target_rate, source_rate).limit_denominator(MAX_RESAMPLE_FACTOR)
        mono = resample_poly(mono, ratio.numerator, ratio.denominator)
    return np.ascontiguousarray(mono, dtype=np.float32)


def load_audio(source: AudioSource, sample_rate: int) -> np.ndarray:
    """A whole clip (path or bytes) as model input at ``sample_rate``, checked."""
    samples, rate = read_samples(source)
    check_samples(samples)
    return to_model_input(samples, rate, sample_rate)


def _reason(exc: Exception) -> str:
    """libsndfile's reason without its "Error opening <BytesIO at 0x...>:" prefix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.rsplit(">: ", 1)[-1].strip()[:200]
