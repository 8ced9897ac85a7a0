"""Who spoke when: a recording's voiced stretches cut into short overlapping windows, each window embedded by a
speaker-verification set (one row of the batch each), the windows clustered into speakers, and the speakers'
turns read back off the windows.

The recipe is the one diarization systems settled on before end-to-end models (the x-vector / ECAPA pipelines
of the DIHARD and VoxSRC baselines, pyannote's clustering stage): windows of ~1.5 s every ~0.75 s, agglomerative
clustering of their cosine similarities stopped at a threshold (or at the number of speakers, when the caller
knows it), each frame given to the window whose centre is nearest. Overlapping speech gets one speaker.

The server embeds the windows with the verification set the request names, so every verification set is also a
diarization set: no weights of its own, one resident encoder. The stopping threshold is the set's own
verification threshold for a window's duration (``duration_thresholds``: calibrated on real voices) moved by
``threshold_offset``, which was chosen on validation conversations (docs/results/diarization.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

from elp.speech_activity import DETECTORS, SpeechGate, chunk_levels_dbfs, true_runs

if TYPE_CHECKING:
    import numpy as np

#: the voice detector's chunk (32 ms at 16 kHz): voiced regions are whole chunks
CHUNK_SAMPLES = 512


@dataclass(frozen=True)
class SpeakerWindows:
    """A recording -> the windows diarization embeds: voiced regions (the voice detector's chunks at
    ``onset`` or above open one, below ``offset`` close it; pauses under ``min_pause_s`` are bridged, regions
    under ``min_region_s`` dropped, ``pad_s`` added either side), each tiled by windows of ``window_s`` every
    ``hop_s`` (the last one ending at the region's end; a shorter region is one window).

    The union of the windows is the voiced regions, so the answer's turns can be read off the windows alone.
    Same interface as :class:`elp.long_form.LongFormSplitter` (``needs_split``, ``spans``, ``for_detector``,
    ``speech_gate``), so the server plans a recording's rows with either."""

    #: never turned off: the windows are how the task reads any recording (``ELP_MAX_LONG_FORM_S=0`` only keeps
    #: its recordings within the clip limit)
    optional: ClassVar[bool] = False

    window_s: float = 1.5
    hop_s: float = 0.75
    onset: float = 0.5
    offset: float = 0.35
    min_pause_s: float = 0.3
    min_region_s: float = 0.3
    pad_s: float = 0.1
    floor_dbfs: float = -55.0
    #: ``voice`` (Silero's probabilities) or ``level`` (chunks within ``level_range_db`` of the loudest one)
    detector: str = "voice"
    level_range_db: float = 35.0
    #: not applied (the regions are the gate); kept so deployments treat every splitter alike
    speech_gate: SpeechGate | None = None

    def __post_init__(self) -> None:
        if not 0 < self.hop_s <= self.window_s:
            raise ValueError("speaker windows need 0 < hop_s <= window_s")
        if not 0 < self.offset <= self.onset < 1:
            raise ValueError("speaker windows need 0 < offset <= onset < 1")
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, not {self.detector!r}")

    def for_detector(self, detector: str) -> SpeakerWindows:
        return replace(self, detector=detector)

    def needs_split(self, num_samples: int, sample_rate: int) -> bool:
        """Always: even a short clip is read as its voiced windows (its silence is no one's turn)."""
        return True

    def voiced(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """Whether each 32 ms chunk is voiced, before bridging and padding (hysteresis between ``onset``
        and ``offset``)."""
        import numpy as np

        levels = chunk_levels_dbfs(waveform, CHUNK_SAMPLES)
        if levels.size == 0:
            return np.zeros(0, dtype=bool)
        loud = levels > self.floor_dbfs
        if self.detector == "level":
            return loud & (levels >= levels.max() - self.level_range_db)
        from elp.voice_activity import speech_probabilities

        probabilities = speech_probabilities(waveform, sample_rate)
        voiced, inside = np.zeros(probabilities.size, dtype=bool), False
        for index, probability in enumerate(probabilities):
            inside = probability >= (self.offset if inside else self.onset)
            voiced[index] = inside
        return voiced & loud[: voiced.size]

    def regions(self, waveform: np.ndarray, sample_rate: int) -> list[tuple[int, int]]:
        """``[(start, end), ...]`` sample indices of the voiced regions, in order, not overlapping."""
        import numpy as np

        total = int(np.asarray(waveform).reshape(-1).shape[0])
        voiced = self.voiced(waveform, sample_rate)
        runs = [[a * CHUNK_SAMPLES, b * CHUNK_SAMPLES] for a, b in true_runs(voiced)]
        bridged: list[list[int]] = []
        for run in runs:
            if bridged and run[0] - bridged[-1][1] < self.min_pause_s * sample_rate:
                bridged[-1][1] = run[1]
            else:
                bridged.append(run)
        pad = round(self.pad_s * sample_rate)
        shortest = self.min_region_s * sample_rate
        padded = [(max(0, a - pad), min(total, b + pad)) for a, b in bridged if b - a >= shortest]
        merged: list[tuple[int, int]] = []
        for start, end in padded:  # padding may join two regions
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def spans(self, waveform: np.ndarray, sample_rate: int) -> list[tuple[int, int]]:
        """The windows, ``[(start, end), ...]`` sample indices in order of their start."""
        window, hop = round(self.window_s * sample_rate), round(self.hop_s * sample_rate)
        spans: list[tuple[int, int]] = []
        for start, end in self.regions(waveform, sample_rate):
            if end - start <= window:
                spans.append((start, end))
                continue
            starts = list(range(start, end - window, hop)) + [end - window]
            spans += [(a, a + window) for a in starts]
        return spans


def cluster_windows(embeddings: np.ndarray, *, threshold: float, num_speakers: int | None = None,
                    max_speakers: int = 10, refine_steps: int = 0) -> np.ndarray:
    """Speaker index (0, 1, ... in order of first appearance) of each window's embedding (rows of
    ``embeddings``): average-linkage agglomerative clustering of cosine distances, stopped at ``num_speakers``
    clusters when given, else where the clusters' mean similarity falls under ``threshold`` (at most
    ``max_speakers``); then ``refine_steps`` rounds of moving each window to its nearest cluster mean."""
    import numpy as np

    vectors = np.asarray(embeddings, dtype=np.float64)
    count = vectors.shape[0]
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if count == 1 or num_speakers == 1:
        return np.zeros(count, dtype=np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage

    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    tree = linkage(vectors, method="average", metric="cosine")
    if num_speakers is not None:
        labels = fcluster(tree, t=min(num_speakers, count), criterion="maxclust")
    else:
        labels = fcluster(tree, t=1.0 - threshold, criterion="distance")
        if len(set(labels.tolist())) > max_speakers:
            labels = fcluster(tree, t=max_speakers, criterion="maxclust")
    for _ in range(refine_steps):
        names = sorted(set(labels.tolist()))
        means = np.stack([vectors[labels == name].mean(axis=0) for name in names])
        moved = np.asarray(names)[np.argmax(vectors @ means.T, axis=1)]
        if np.array_equal(moved, labels):
            break
        labels = moved
    return first_appearance_order(labels)


def first_appearance_order(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    """Labels renamed 0, 1, ... in the order they first appear."""
    import numpy as np

    order: dict[int, int] = {}
    return np.asarray([order.setdefault(int(label), len(order)) for label in labels], dtype=np.int64)


def turns_from_windows(spans_s: Sequence[tuple[float, float]], labels: Sequence[int],
                       resolution_s: float = 0.01) -> list[tuple[float, float, int]]:
    """``[(start_s, end_s, speaker), ...]``: every instant a window covers goes to the covering window whose
    centre is nearest (so overlapping windows split at their midpoints); runs of one speaker join; stretches
    no window covers are no one's."""
    import numpy as np

    if not spans_s:
        return []
    ends = np.asarray([end for _, end in spans_s])
    frames = int(np.ceil(ends.max() / resolution_s))
    times = (np.arange(frames) + 0.5) * resolution_s
    best, owner = np.full(frames, np.inf), np.full(frames, -1, dtype=np.int64)
    for (start, end), label in zip(spans_s, labels, strict=True):
        inside = (times >= start) & (times < end)
        distance = np.abs(times - (start + end) / 2.0)
        closer = inside & (distance < best)
        best[closer], owner[closer] = distance[closer], int(label)
    turns: list[tuple[float, float, int]] = []
    edges = np.flatnonzero(np.diff(np.concatenate(([-2], owner, [-2])))) if frames else np.zeros(0, dtype=int)
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if owner[a] >= 0:
            turns.append((round(float(a * resolution_s), 3), round(float(b * resolution_s), 3), int(owner[a])))
    return turns


def rttm_lines(recording: str, turns: Iterable[tuple[float, float, str]]) -> list[str]:
    """NIST RTTM ``SPEAKER`` lines (what md-eval, dscore and pyannote.metrics read) of ``(start_s, end_s, speaker)``
    turns of ``recording`` (a name without spaces)."""
    return [f"SPEAKER {recording} 1 {start:.3f} {end - start:.3f} <NA> <NA> {speaker} <NA> <NA>"
            for start, end, speaker in turns]
