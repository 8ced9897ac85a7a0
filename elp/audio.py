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
from typing import Any

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
    returns how many frames to read at most (or raises); without it the whole clip is read. libsndfile reads
    WAV, FLAC, OGG (Vorbis, Opus), MP3 and the rest of its formats; the containers it cannot read that browsers
    and phones record (:func:`sniff_container`) are decoded by PyAV. Raises ``AudioError`` for anything else."""
    try:
        clip = sf.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else str(source))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        container = sniff_container(_head(source))
        if container is None:
            raise AudioError(f"could not be decoded as audio: {_reason(exc)}") from None
        return _read_with_pyav(source, container, budget)
    with clip:
        frames = -1 if budget is None else budget(clip.samplerate, clip.channels, clip.frames)
        try:
            return clip.read(frames=frames, dtype="float32", always_2d=True), clip.samplerate
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise AudioError(f"could not be decoded as audio: {_reason(exc)}") from None


def sniff_container(head: bytes) -> str | None:
    """The FFmpeg demuxer for a container libsndfile cannot read, from its first bytes: ``matroska`` (WebM, as
    browsers' MediaRecorder writes it; Matroska), ``mov`` (MP4, M4A, MOV, 3GP: phones' recorders), ``aac`` (ADTS
    AAC); None for anything else. The demuxer is always named, never probed: FFmpeg's probing picks among all of
    its demuxers, playlists and concat lists that open other files or URLs included."""
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[4:8] == b"ftyp":
        return "mov"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "aac"
    return None


def _head(source: AudioSource, size: int = 12) -> bytes:
    if isinstance(source, bytes):
        return source[:size]
    try:
        with open(source, "rb") as file:
            return file.read(size)
    except OSError:
        return b""


def _read_with_pyav(source: AudioSource, container_format: str, budget: FrameBudget | None) -> tuple[np.ndarray, int]:
    """The first audio stream of a ``container_format`` file decoded by PyAV (FFmpeg's decoders) as float32,
    channels and rate kept; decoding stops once ``budget``'s frames are read, whatever the container declares.
    A broken file may fail anywhere in PyAV (a stream without a codec, a frame of another layout): every such
    failure is ``AudioError``; the budget's own errors pass through."""
    import av

    broken = (av.error.FFmpegError, ValueError, TypeError, AttributeError, OverflowError, ZeroDivisionError,
              RuntimeError, OSError, IndexError)
    try:
        container = av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), format=container_format,
                            metadata_errors="ignore")
    except broken as exc:
        raise AudioError(f"could not be decoded as audio: {str(exc)[:200]}") from None
    with container:
        try:
            rate, channels, declared, layout, stream = _audio_stream(container)
        except broken as exc:
            raise AudioError(f"could not be decoded as audio: {str(exc)[:200]}") from None
        limit = -1 if budget is None else budget(rate, channels, declared)
        chunks, read = [], 0
        try:
            to_float = av.AudioResampler(format="flt", layout=layout, rate=rate)
            for frame in container.decode(stream):
                for converted in to_float.resample(frame):
                    chunk = converted.to_ndarray().reshape(-1, channels)
                    chunks.append(chunk)
                    read += len(chunk)
                if 0 <= limit <= read:
                    break
        except broken as exc:
            raise AudioError(f"could not be decoded as audio: {str(exc)[:200]}") from None
    samples = np.concatenate(chunks) if chunks else np.zeros((0, channels), dtype=np.float32)
    return np.ascontiguousarray(samples[:limit] if limit >= 0 else samples, dtype=np.float32), rate


def _audio_stream(container: Any) -> tuple[int, int, int, Any, Any]:
    """(rate, channels, declared frames, channel layout, stream) of a container's first audio stream."""
    if not container.streams.audio:
        raise AudioError("has no audio stream")
    stream = container.streams.audio[0]
    context = stream.codec_context
    rate = int(context.sample_rate or 0)
    layout = context.layout
    channels = int(layout.nb_channels) if layout is not None else 0
    if rate <= 0 or channels <= 0:
        raise AudioError("has no audio stream")
    declared = int(float(stream.duration * stream.time_base) * rate) if stream.duration and stream.time_base else 0
    return rate, channels, max(declared, 0), layout, stream


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
