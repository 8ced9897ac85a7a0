"""Upload decoding: formats, rates, channels, and every way a clip can be refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from server.audio import AudioLimits, decode_audio
from server.errors import InvalidAudioError, PayloadTooLargeError
from tests.server.helpers import wav_bytes

LIMITS = AudioLimits(max_duration_s=30.0, min_duration_s=0.1)


def test_stereo_44k_is_mixed_down_and_resampled() -> None:
    clip = decode_audio(wav_bytes(1.5, sample_rate=44100, channels=2), target_rate=16000, limits=LIMITS)
    assert clip.waveform.ndim == 1 and clip.waveform.dtype == np.float32
    assert clip.source_channels == 2 and clip.source_sample_rate == 44100
    assert clip.duration_s == pytest.approx(1.5, abs=1e-3)


@pytest.mark.parametrize("fmt,subtype", [("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("WAV", "FLOAT"), ("WAV", "PCM_24")])
def test_other_containers_decode(fmt: str, subtype: str) -> None:
    clip = decode_audio(wav_bytes(0.5, sample_rate=8000, fmt=fmt, subtype=subtype), target_rate=16000, limits=LIMITS)
    assert clip.duration_s == pytest.approx(0.5, abs=0.01)


def _float_wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples.astype(np.float32), rate, subtype="FLOAT", format="WAV")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data,fragment",
    [
        (b"", "empty"),
        (b"RIFF....not really audio", "could not be decoded"),
        (_float_wav(np.full(1600, np.nan)), "NaN"),
        (_float_wav(np.full(1600, np.inf)), "NaN or infinite"),
        (_float_wav(np.zeros(800)), "minimum"),
    ],
)
def test_bad_clips_are_invalid_audio(data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidAudioError, match=fragment) as info:
        decode_audio(data, target_rate=16000, limits=LIMITS)
    assert "0x" not in info.value.message  # no object reprs leak into messages


def test_too_long_is_payload_too_large() -> None:
    with pytest.raises(PayloadTooLargeError, match="maximum"):
        decode_audio(wav_bytes(2.0, sample_rate=8000), target_rate=16000, limits=AudioLimits(1.0, 0.1))
