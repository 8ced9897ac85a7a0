"""Upload decoding: any soundfile-readable clip -> mono float32 at the backbone's rate.

The clip becomes model input through ``elp.audio`` (the same reader, channel mix, resampler and
sample checks as training); this module adds the HTTP side: limits and the contract's errors. Runs
in the decode thread pool (never on the event loop, never on the model worker). The budget is
decided from the header before any sample is decoded: the declared sample rate must lie in the
accepted range, and at most ``max_duration_s x max_sample_rate`` samples (all channels together, 4
bytes each) are ever read, whatever the container or its compression claims. The real length is
checked again after reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from elp.audio import MAX_ABS_AMPLITUDE, check_samples, read_samples, to_model_input
from elp.errors import AudioError
from elp.speech_activity import SpeechGate
from server.errors import InvalidAudioError, NoSpeechError, PayloadTooLargeError

__all__ = ["LONG_FORM_SAMPLES_PER_S", "MAX_ABS_AMPLITUDE", "AudioLimits", "DecodedAudio", "decode_audio"]


#: a long recording's decoding budget a second (all channels): 44.1/48 kHz stereo lasts the whole
#: ``max_long_form_s``; the default 300 s decode to at most 28.8 M samples (115 MB of float32)
LONG_FORM_SAMPLES_PER_S = 96_000


@dataclass(frozen=True)
class AudioLimits:
    max_duration_s: float
    min_duration_s: float
    min_sample_rate: int = 8000
    max_sample_rate: int = 192000
    #: samples a clip may decode to over all channels; 0: the longest clip, mono, at the highest rate
    sample_budget: int = 0

    @property
    def max_samples(self) -> int:
        """Decoding budget over all channels (``sample_budget``, else the longest clip at the highest rate)."""
        return self.sample_budget or int(math.ceil(self.max_duration_s * self.max_sample_rate))

    def for_long_form(self, max_long_form_s: float) -> AudioLimits:
        """The limits of a task that takes long recordings: ``max_long_form_s`` (never less than a clip's) and a
        decoding budget of that many seconds at ``LONG_FORM_SAMPLES_PER_S`` (never less than a clip's)."""
        longest = max(self.max_duration_s, max_long_form_s)
        budget = max(self.max_samples, int(math.ceil(longest * LONG_FORM_SAMPLES_PER_S)))
        return replace(self, max_duration_s=longest, sample_budget=budget)


@dataclass(frozen=True)
class DecodedAudio:
    waveform: np.ndarray  # 1-D float32 at ``sample_rate``
    sample_rate: int
    source_sample_rate: int
    source_channels: int

    @property
    def duration_s(self) -> float:
        return len(self.waveform) / self.sample_rate


def decode_audio(data: bytes, *, target_rate: int, limits: AudioLimits, field: str = "file",
                 speech_gate: SpeechGate | None = None) -> DecodedAudio:
    """Decode, mix to mono, resample; raise the contract's errors for bad or out-of-limit clips, and
    ``NoSpeechError`` when a ``speech_gate`` is given and the clip is (nearly) silent."""
    if not data:
        raise InvalidAudioError(f"'{field}' is empty")
    def budget(rate: int, channels: int, declared_frames: int) -> int:
        return _frame_budget(field, rate, channels, declared_frames, limits)

    try:
        samples, source_rate = read_samples(data, budget)  # (frames, channels), even for no frames
    except AudioError as exc:
        raise InvalidAudioError(f"'{field}' {exc}") from None
    if samples.shape[0] / source_rate > limits.max_duration_s:
        raise PayloadTooLargeError(_too_long(field, samples.shape[0] / source_rate, limits))
    if samples.size > limits.max_samples:
        raise PayloadTooLargeError(_over_budget(field, samples.shape[1], limits))
    try:
        check_samples(samples)
    except AudioError as exc:
        raise InvalidAudioError(f"'{field}' {exc}") from None
    mono = to_model_input(samples, source_rate, target_rate)

    duration = len(mono) / target_rate
    if duration < limits.min_duration_s:
        raise InvalidAudioError(
            f"'{field}' is {duration:.3f} s long; the minimum is {limits.min_duration_s:g} s"
        )
    if speech_gate is not None and not speech_gate.has_speech(mono, target_rate):
        active_s = speech_gate.active_seconds(mono, target_rate)
        raise NoSpeechError(f"'{field}' holds no voice: {speech_gate.shortfall(active_s)}")
    return DecodedAudio(mono, target_rate, source_rate, samples.shape[1])


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
    per_second = limits.max_samples / limits.max_duration_s
    return (f"'{field}' has {channels} channels: more samples than the decoding budget of "
            f"{limits.max_samples} ({limits.max_duration_s:g} s at {per_second:.0f} samples a second, all channels)")


def _too_long(field: str, duration_s: float, limits: AudioLimits) -> str:
    return f"'{field}' is {duration_s:.1f} s long; the maximum is {limits.max_duration_s:g} s"
