"""One audio entry point: the server's upload decoding, training's clip loading and the benchmarks'
decoding give bit-identical model input for the same file, whatever its rate, channels or format."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmarks.common import decode_clip
from elp.audio import MAX_ABS_AMPLITUDE, load_audio
from elp.errors import AudioError
from server.audio import AudioLimits, decode_audio
from server.errors import InvalidAudioError
from tests.server.helpers import wav_bytes
from training.dataset import load_audio as training_load_audio

LIMITS = AudioLimits(max_duration_s=30.0, min_duration_s=0.1)
CLIPS = {
    "mono-16k-pcm16": dict(sample_rate=16000),
    "stereo-44k1-pcm16": dict(sample_rate=44100, channels=2),
    "mono-48k-float": dict(sample_rate=48000, subtype="FLOAT"),
    "stereo-22k05-flac": dict(sample_rate=22050, channels=2, fmt="FLAC", subtype="PCM_24"),
    "mono-8k-flac": dict(sample_rate=8000, fmt="FLAC"),
}


@pytest.mark.parametrize("name", list(CLIPS))
def test_server_training_and_benchmarks_see_the_same_samples(name: str, tmp_path: Path) -> None:
    data = wav_bytes(1.3, seed=7, **CLIPS[name])
    path = tmp_path / f"{name}.audio"
    path.write_bytes(data)
    served = decode_audio(data, target_rate=16000, limits=LIMITS).waveform
    trained = training_load_audio(str(path))
    benchmarked = decode_clip(data)
    assert served.dtype == trained.dtype == benchmarked.dtype == np.float32 and served.ndim == 1
    assert len(served) == pytest.approx(1.3 * 16000, abs=2)
    np.testing.assert_array_equal(served, trained)
    np.testing.assert_array_equal(served, benchmarked)


def test_both_sides_refuse_what_the_model_must_not_see(tmp_path: Path) -> None:
    samples, rate = sf.read(io.BytesIO(wav_bytes(0.5, subtype="FLOAT")), dtype="float32")
    buffer = io.BytesIO()
    sf.write(buffer, samples / np.abs(samples).max() * (2 * MAX_ABS_AMPLITUDE), rate, format="WAV", subtype="FLOAT")
    path = tmp_path / "loud.wav"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(AudioError, match="beyond"):
        training_load_audio(str(path))
    with pytest.raises(InvalidAudioError, match="beyond"):
        decode_audio(buffer.getvalue(), target_rate=16000, limits=LIMITS)
    with pytest.raises(AudioError, match="could not be decoded"):
        load_audio(b"not audio at all", 16000)
