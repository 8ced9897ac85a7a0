"""Upload decoding: any soundfile-readable clip -> mono float32 at the backbone's rate.

Runs in the decode thread pool (never on the event loop, never on the model worker). The budget is
decided from the header before any sample is decoded: the declared sample rate must lie in the
accepted range, and at most ``max_duration_s x max_sample_rate`` samples (all channels together, 4
bytes each) are ever read, whatever the container or its compression claims. The real length is
checked again after reading. Samples must be finite and within ``MAX_ABS_AMPLITUDE``, so the model
never sees numbers that turn its answer into NaN. Resampling uses a rational ratio with a small
denominator, so an odd rate (191,999 Hz) costs what a common one does.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from server.errors import InvalidAudioError, PayloadTooLargeError

#: float samples beyond this are not audio (PCM decodes to [-1, 1]; a float WAV may be a few x louder)
MAX_ABS_AMPLITUDE = 1e4
#: largest up/down factor of the resampler: rates are mapped to the nearest ratio with this denominator
#: (44.1 kHz -> 16 kHz is 160/441 exactly; 191,999 Hz -> 16 kHz becomes 1/12, 4 ppm off in pitch)
_MAX_RESAMPLE_FACTOR = 1000


@dataclass(frozen=True)
class AudioLimits:
    max_duration_s: float
    min_duration_s: float
    min_sample_rate: int = 8000
    max_sample_rate: int = 192000

    @property
    def max_samples(self) -> int:
        """Decoding budget over all channels: the longest clip, mono, at the highest rate."""
        return int(math.ceil(self.max_duration_s * self.max_sample_rate))


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
            frame_cap = _frame_budget(field, source_rate, channels, declared_frames, limits)
            samples = clip.read(frames=frame_cap, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise InvalidAudioError(f"'{field}' could not be decoded as audio: {_short(exc)}") from None

    if samples.shape[0] / source_rate > limits.max_duration_s:
        raise PayloadTooLargeError(_too_long(field, samples.shape[0] / source_rate, limits))
    if samples.size > limits.max_samples:
        raise PayloadTooLargeError(_over_budget(field, channels, limits))
    if samples.shape[0] == 0:
        raise InvalidAudioError(f"'{field}' contains no samples")
    if not np.isfinite(samples).all():
        raise InvalidAudioError(f"'{field}' contains NaN or infinite samples")
    if float(np.abs(samples).max()) > MAX_ABS_AMPLITUDE:
        raise InvalidAudioError(f"'{field}' has samples beyond +/-{MAX_ABS_AMPLITUDE:g}: not audio")

    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if source_rate != target_rate:
        ratio = Fraction(target_rate, source_rate).limit_denominator(_MAX_RESAMPLE_FACTOR)
        mono = resample_poly(mono, ratio.numerator, ratio.denominator).astype(np.float32)
    mono = np.ascontiguousarray(mono, dtype=np.float32)

    duration = len(mono) / target_rate
    if duration < limits.min_duration_s:
        raise InvalidAudioError(
            f"'{field}' is {duration:.3f} s long; the minimum is {limits.min_duration_s:g} s"
        )
    return DecodedAudio(mono, target_rate, source_rate, channels)


def _frame_budget(field: str, rate: int, channels: int, declared_frames: int, limits: AudioLimits) -> int:
    """Frames to read at most, decided from the header alone; raises for a clip outside the limits."""
    if rate <= 0 or channels <= 0:
        raise InvalidAudioError(f"'{field}' has no audio stream")
    if not limits.min_sample_rate <= rate <= limits.max_sample_rate:
        raise InvalidAudioError(
            f"'{field}' declares a sample rate of {rate} Hz; accepted rates are "
            f"{limits.min_sample_rate}-{limits.max_sample_rate} Hz"
        )
    if 0 < declared_frames < 2**62:
        if declared_frames / rate > limits.max_duration_s:
            raise PayloadTooLargeError(_too_long(field, declared_frames / rate, limits))
        if declared_frames * channels > limits.max_samples:
            raise PayloadTooLargeError(_over_budget(field, channels, limits))
    if channels * max(1, int(limits.min_duration_s * rate)) > limits.max_samples:  # not even the shortest fits
        raise PayloadTooLargeError(_over_budget(field, channels, limits))
    # one frame past either limit, so a lying header is caught after the read without decoding more
    duration_frames = int(math.ceil(limits.max_duration_s * rate)) + 1
    return min(duration_frames, limits.max_samples // channels + 1)


def _over_budget(field: str, channels: int, limits: AudioLimits) -> str:
    return (f"'{field}' has {channels} channels: more samples than the decoding budget of "
            f"{limits.max_samples} ({limits.max_duration_s:g} s at {limits.max_sample_rate} Hz, all channels)")


def _too_long(field: str, duration_s: float, limits: AudioLimits) -> str:
    return f"'{field}' is {duration_s:.1f} s long; the maximum is {limits.max_duration_s:g} s"


def _short(exc: Exception) -> str:
    """libsndfile's reason without its "Error opening <BytesIO at 0x...>:" prefix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.rsplit(">: ", 1)[-1].strip()[:200]
