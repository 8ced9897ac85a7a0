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


def _recorded(fmt: str, codec: str, rate: int, seconds: float, channels: int = 1) -> tuple[bytes, np.ndarray]:
    """A fixed-seed tone encoded as browsers (WebM/Opus) and phones (M4A/AAC) record, by PyAV's encoders."""
    import av

    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * np.random.default_rng(0).standard_normal(t.size))
    wave = wave.astype(np.float32)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo" if channels == 2 else "mono")
        frame = av.AudioFrame.from_ndarray(np.repeat(wave[:, None], channels, axis=1).reshape(1, -1),
                                           format="flt", layout=stream.layout)
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buffer.getvalue(), wave


@pytest.mark.parametrize("fmt,codec,rate,channels", [("webm", "libopus", 48000, 1), ("mp4", "aac", 44100, 2),
                                                     ("adts", "aac", 16000, 1)])
def test_browser_and_phone_recordings_decode(fmt: str, codec: str, rate: int, channels: int) -> None:
    """What OpenAI's audio API takes and libsndfile cannot read: WebM/Opus, M4A/AAC, ADTS AAC (PyAV)."""
    data, wave = _recorded(fmt, codec, rate, 1.5, channels)
    clip = decode_audio(data, target_rate=16000, limits=LIMITS)
    assert (clip.source_sample_rate, clip.source_channels) == (rate, channels)
    assert clip.duration_s == pytest.approx(1.5, abs=0.15)  # codecs add priming / padding samples
    level = float(np.sqrt(np.mean(clip.waveform[4000:-4000] ** 2)))  # the tone's level, edges aside
    assert level == pytest.approx(float(np.sqrt(np.mean(wave ** 2))), rel=0.15)


def test_a_compressed_recording_is_decoded_only_up_to_the_budget() -> None:
    """A long recording compresses to a few hundred KB; the decoder stops at the limit instead of decoding it all."""
    from elp.audio import read_samples

    data, _ = _recorded("webm", "libopus", 48000, 40.0)
    assert len(data) < 500_000  # 40 s at 48 kHz decode to 7.7 MB of float32
    with pytest.raises(PayloadTooLargeError, match="maximum"):
        decode_audio(data, target_rate=16000, limits=LIMITS)
    seen = []
    samples, _ = read_samples(data, lambda rate, channels, declared: seen.append((rate, channels)) or 4800)
    assert seen == [(48000, 1)] and samples.shape == (4800, 1)


@pytest.mark.parametrize("data", [
    b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",  # an HLS playlist
    b"ffconcat version 1.0\nfile /etc/passwd\n",  # FFmpeg's concat list
    b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8,  # an MP4 header and garbage
    b"\x1a\x45\xdf\xa3" + b"\x00" * 64,  # a Matroska magic and nothing else
])
def test_other_media_is_invalid_audio_and_never_probed(data: bytes) -> None:
    """Playlists and concat lists (which make FFmpeg open other files) are never handed to FFmpeg: only the named
    demuxers of recognised containers are; broken containers are invalid audio."""
    with pytest.raises(InvalidAudioError, match="could not be decoded|no audio stream"):
        decode_audio(data, target_rate=16000, limits=LIMITS)


def test_mutated_recordings_decode_or_are_invalid_audio_never_a_crash() -> None:
    """Seeded byte flips and truncations of each recognised container: PyAV's failures anywhere (a stream without a
    codec, a frame of another layout) become ``InvalidAudioError``, never another exception."""
    rng = np.random.default_rng(0)
    recordings = [_recorded(*args, 1.0)[0] for args in (("webm", "libopus", 48000), ("mp4", "aac", 44100),
                                                       ("adts", "aac", 16000))]
    outcomes = {"decoded": 0, "invalid": 0}
    for case in range(300):
        data = bytearray(recordings[case % 3])
        for _ in range(int(rng.integers(1, 20))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        if case % 5 == 0:
            data = data[: int(rng.integers(4, len(data)))]
        try:
            clip = decode_audio(bytes(data), target_rate=16000, limits=LIMITS)
            assert clip.waveform.dtype == np.float32 and np.isfinite(clip.waveform).all()
            outcomes["decoded"] += 1
        except InvalidAudioError:
            outcomes["invalid"] += 1
    assert outcomes["decoded"] > 30 and outcomes["invalid"] > 30, outcomes  # both paths were exercised
