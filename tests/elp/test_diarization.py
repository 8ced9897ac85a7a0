"""Diarization's library parts: voiced regions and their windows, the clustering, turns read off the windows,
and the task's answer from window embeddings (fixed-seed stand-ins: tone bursts with the level detector)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from elp.config import AdapterSetConfig
from elp.diarization import SpeakerWindows, cluster_windows, first_appearance_order, turns_from_windows
from elp.errors import ConfigError
from elp.tasks import get_task
from elp.tasks.base import TaskRequest

RATE = 16000
LEVEL = SpeakerWindows(detector="level")


def bursts(layout: list[tuple[float, float]], seed: int = 0) -> np.ndarray:
    """Tone-plus-noise bursts at ``(start_s, end_s)`` over near-silence, 16 kHz."""
    rng = np.random.default_rng(seed)
    total = int((max(end for _, end in layout) + 0.5) * RATE)
    clip = 1e-4 * rng.standard_normal(total)
    for start, end in layout:
        a, b = int(start * RATE), int(end * RATE)
        t = np.arange(b - a) / RATE
        clip[a:b] = 0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * rng.standard_normal(t.size)
    return clip.astype(np.float32)


def test_regions_follow_the_bursts_bridge_short_pauses_and_drop_blips() -> None:
    clip = bursts([(0.5, 3.0), (3.15, 4.0), (5.0, 7.5), (8.5, 8.6)])
    regions = [(a / RATE, b / RATE) for a, b in LEVEL.regions(clip, RATE)]
    # 0.15 s pause bridged; the 0.1 s blip dropped; 0.1 s padding either side, 32 ms chunks
    assert len(regions) == 2
    (a1, b1), (a2, b2) = regions
    assert a1 == pytest.approx(0.4, abs=0.04) and b1 == pytest.approx(4.1, abs=0.04)
    assert a2 == pytest.approx(4.9, abs=0.04) and b2 == pytest.approx(7.6, abs=0.04)


def test_windows_tile_each_region_and_their_union_is_the_regions() -> None:
    clip = bursts([(0.5, 4.0), (5.0, 5.6), (6.5, 9.0)])
    regions, spans = LEVEL.regions(clip, RATE), LEVEL.spans(clip, RATE)
    window, hop = round(LEVEL.window_s * RATE), round(LEVEL.hop_s * RATE)
    assert all(b - a <= window for a, b in spans)
    for start, end in regions:
        inside = [(a, b) for a, b in spans if start <= a and b <= end]
        assert inside[0][0] == start and inside[-1][1] == end  # covered from its start to its end
        assert all(b2 - b1 <= hop and a2 - a1 <= hop for (a1, b1), (a2, b2) in zip(inside, inside[1:], strict=False))
        if end - start <= window:
            assert inside == [(start, end)]  # a short region is one window
    assert LEVEL.needs_split(10, RATE)  # even a short clip is windowed


def test_silence_has_no_windows() -> None:
    assert LEVEL.spans(np.zeros(3 * RATE, dtype=np.float32), RATE) == []


def two_voices(count_a: int, count_b: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(16), rng.standard_normal(16)
    rows = [a + 0.1 * rng.standard_normal(16) for _ in range(count_a)]
    rows += [b + 0.1 * rng.standard_normal(16) for _ in range(count_b)]
    return np.stack(rows)


def test_clustering_stops_at_the_threshold_or_the_given_count() -> None:
    vectors = two_voices(5, 4)
    assert cluster_windows(vectors, threshold=0.5).tolist() == [0] * 5 + [1] * 4
    assert cluster_windows(vectors, threshold=-1.0).tolist() == [0] * 9  # everything is "the same"
    assert len(set(cluster_windows(vectors, threshold=0.9999).tolist())) == 9  # nothing is
    assert len(set(cluster_windows(vectors, threshold=0.9999, max_speakers=3).tolist())) == 3
    assert cluster_windows(vectors, threshold=0.9999, num_speakers=2).tolist() == [0] * 5 + [1] * 4
    assert cluster_windows(vectors[:1], threshold=0.5).tolist() == [0]
    assert cluster_windows(np.zeros((0, 16)), threshold=0.5).tolist() == []


def nearest_mean_labels(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    names = sorted(set(labels.tolist()))
    means = np.stack([unit[labels == name].mean(axis=0) for name in names])
    return np.asarray(names)[np.argmax(unit @ means.T, axis=1)]


def test_refinement_leaves_every_window_with_its_nearest_cluster_mean() -> None:
    vectors = np.random.default_rng(6).standard_normal((12, 4))  # a case where average linkage leaves one astray
    plain = cluster_windows(vectors, threshold=0.0, num_speakers=3)
    assert not np.array_equal(nearest_mean_labels(vectors, plain), plain)
    refined = cluster_windows(vectors, threshold=0.0, num_speakers=3, refine_steps=10)
    assert np.array_equal(nearest_mean_labels(vectors, refined), refined)


def test_labels_are_named_in_order_of_first_appearance() -> None:
    assert first_appearance_order([7, 7, 2, 9, 2]).tolist() == [0, 0, 1, 2, 1]


def test_turns_split_overlapping_windows_at_their_midpoints_and_keep_gaps() -> None:
    turns = turns_from_windows([(0.0, 1.5), (0.75, 2.25), (1.5, 3.0), (4.0, 5.0)], [0, 0, 1, 1])
    assert turns == [(0.0, 1.88, 0), (1.88, 3.0, 1), (4.0, 5.0, 1)]
    assert turns_from_windows([], []) == []


def verification_config() -> AdapterSetConfig:
    return AdapterSetConfig(task="verification", backbone={"model_type": "wavlm", "hidden_size": 32, "num_layers": 2,
                                                                "fingerprint": "f"},
                            threshold=0.5, duration_thresholds=[[0.0, 0.4], [1.0, 0.6], [2.0, 0.7]])


def test_the_answer_names_speakers_in_order_and_uses_the_sets_threshold_at_the_window_duration() -> None:
    spec = get_task("diarization")
    vectors = two_voices(3, 3, seed=1)
    order = [3, 4, 0, 1, 2, 5]  # b first: b is speaker_1
    rows = [SimpleNamespace(embedding=torch.from_numpy(vectors[i]).float()) for i in order]
    spans = [(0.75 * k, 0.75 * k + 1.5) for k in range(6)]
    request = TaskRequest(config=verification_config(), rows=rows, durations_s=[1.5] * 6, segments_s=spans)
    answer = spec.respond(request)
    assert answer["threshold"] == pytest.approx(0.6 + spec.threshold_offset)  # the set's 1.0-2.0 s threshold
    assert answer["speaker_count"] == 2 and [s["speaker"] for s in answer["speakers"]] == ["speaker_1", "speaker_2"]
    assert answer["turns"][0]["speaker"] == "speaker_1" and answer["windows"] == 6
    assert sum(s["speech_s"] for s in answer["speakers"]) == pytest.approx(
        sum(t["end_s"] - t["start_s"] for t in answer["turns"]))
    assert answer["turns"][0]["start_s"] == 0.0 and answer["turns"][-1]["end_s"] == spans[-1][1]
    known = spec.respond(TaskRequest(config=verification_config(), rows=rows, durations_s=[1.5] * 6,
                                     segments_s=spans, fields={"num_speakers": 1}))
    assert known["speaker_count"] == 1 and "threshold" not in known
    empty = spec.respond(TaskRequest(config=verification_config(), rows=[], durations_s=[], segments_s=[]))
    assert empty == {"speaker_count": 0, "speakers": [], "turns": [], "windows": 0}
    spec.answer_fields.model_validate(answer)


def test_the_task_answers_with_verification_sets_and_has_no_live_stream() -> None:
    spec = get_task("diarization")
    assert spec.set_task == "verification" and spec.one_clip and not spec.streams
    assert [option.flag for option in spec.options] == ["--num-speakers", "--max-speakers", "--name-speakers",
                                                       "--name-among"]
    with pytest.raises(ConfigError, match="verification sets"):  # it has no sets of its own
        AdapterSetConfig(task="diarization", backbone={"model_type": "wavlm", "hidden_size": 32, "num_layers": 2,
                                                       "fingerprint": "f"})
