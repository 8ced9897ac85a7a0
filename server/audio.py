"""Upload decoding: any soundfile-readable clip -> mono float32 at the backbone's rate.

Runs in the decode thread pool (never on the event loop, never on the model worker). Limits are
checked as early as the format allows: the declared length before decoding, the real one after.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from server.errors import InvalidAudioError, PayloadTooLargeError


@dataclass(frozen=True)
class AudioLimits:
    max_duration_s: float
    min_duration_s: float


@dataclass(frozen=True)
class DecodedAudio:
    waveform: np.ndarray  # 1-D float32 at ``sample_rate``
    sample_rate: int
    source_sample_rate: int
    source_channels: int

    @property
    def duration_s(self) -> float:
        return len(self.waveform) / self.sample_rate


def decode_audio(data: bytes, *, target_rate: int, limits: AudioLimits, field: str = "file") -> DecodedAudio:
    """Decode, mix to mono, resample; raise the contract's errors for bad or out-of-limit clips."""
    if not data:
        raise InvalidAudioError(f"'{field}' is empty")
    try:
        with sf.SoundFile(io.BytesIO(data)) as clip:
            source_rate, channels, declared_frames = clip.samplerate, clip.channels, clip.frames
            if source_rate <= 0 or channels <= 0:
                raise InvalidAudioError(f"'{field}' has no audio stream")
            if 0 < declared_frames < 2**62 and declared_frames / source_rate > limits.max_duration_s:
                raise PayloadTooLargeError(_too_long(field, declared_frames / source_rate, limits))
            # read at most one frame past the limit so a lying header cannot make us decode hours
            frame_cap = int(math.ceil(limits.max_duration_s * source_rate)) + 1
            samples = clip.read(frames=frame_cap, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise InvalidAudioError(f"'{field}' could not be decoded as audio: {_short(exc)}") from None

    if samples.shape[0] / source_rate > limits.max_duration_s:
        raise PayloadTooLargeError(_too_long(field, samples.shape[0] / source_rate, limits))
    if samples.shape[0] == 0:
        raise InvalidAudioError(f"'{field}' contains no samples")
    if not np.isfinite(samples).all():
        raise InvalidAudioError(f"'{field}' contains NaN or infinite samples")

    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if source_rate != target_rate:
        divisor = math.gcd(source_rate, target_rate)
        mono = resample_poly(mono, target_rate // divisor, source_rate // divisor).astype(np.float32)
    mono = np.ascontiguousarray(mono, dtype=np.float32)

    duration = len(mono) / target_rate
    if duration < limits.min_duration_s:
        raise InvalidAudioError(
            f"'{field}' is {duration:.3f} s long; the minimum is {limits.min_duration_s:g} s"
        )
    return DecodedAudio(mono, target_rate, source_rate, channels)


def _too_long(field: str, duration_s: float, limits: AudioLimits) -> str:
    return f"'{field}' is {duration_s:.1f} s long; the maximum is {limits.max_duration_s:g} s"


def _short(exc: Exception) -> str:
    """libsndfile's reason without its "Error opening <BytesIO at 0x...>:" prefix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.rsplit(">: ", 1)[-1].strip()[:200]
