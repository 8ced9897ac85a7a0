"""training.corpus.voice_split: lines without speaker names split into training and validation *voices* by a
teacher's embeddings, whole voices held out, unsure clusters and training lines near a validation voice dropped."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from training.corpus.voice_split import split_folder, split_voices, voice_clusters
from training.data.manifest import ManifestRow, read_manifest, write_manifest
from training.dataset import SAMPLE_RATE


def _voices(sizes: list[int], dim: int = 32, spread: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around one random centre per voice (cosine ~0.98 within a voice, ~0 between voices)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(sizes), dim))
    truth = np.repeat(np.arange(len(sizes)), sizes)
    vectors = centres[truth] / np.sqrt(dim) + spread * rng.standard_normal((len(truth), dim)) / np.sqrt(dim)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), truth


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    one_to_one = len(set(a.tolist())) == len(set(b.tolist()))
    return one_to_one and all(len(set(b[a == k].tolist())) == 1 for k in set(a.tolist()))


def test_clusters_recover_the_voices_numbered_by_size() -> None:
    vectors, truth = _voices([30, 12, 20, 8])
    found = voice_clusters(vectors, merge_above=0.75)
    assert _same_partition(found, truth)
    assert np.bincount(found).tolist() == [30, 20, 12, 8]  # 0 is the largest


def test_validation_takes_whole_voices_and_drops_small_clusters() -> None:
    vectors, truth = _voices([40, 30, 25, 20, 20, 15, 3])
    plan = split_voices(vectors, valid_share=0.25, merge_above=0.75, min_lines=5, max_train_cosine=0.8, seed=1)
    splits = [plan.split_of(i) for i in range(len(truth))]
    for voice in set(truth.tolist()):
        assert len({splits[i] for i in np.flatnonzero(truth == voice)}) == 1  # a voice is never on both sides
    assert {splits[i] for i in np.flatnonzero(truth == 6)} == {None}  # 3 lines: not trusted as a voice
    valid = splits.count("valid")
    assert 0 < valid <= 0.25 * 150 * 1.1 and splits.count("train") == 150 - valid  # no overshoot past a tenth
    again = split_voices(vectors, 0.25, 0.75, 5, 0.8, seed=1)
    assert again.valid_clusters == plan.valid_clusters and (again.cluster == plan.cluster).all()  # seeded


def test_a_training_line_near_a_validation_voice_is_dropped() -> None:
    vectors, truth = _voices([30, 30, 30, 30])
    plan = split_voices(vectors, 0.25, 0.75, 5, 0.8, seed=0)
    held = plan.valid_clusters[0]
    stray = int(np.flatnonzero(plan.cluster != held)[0])
    moved = vectors.copy()
    moved[stray] = vectors[plan.cluster == held].mean(axis=0) + 0.4 * vectors[stray]  # between two voices
    moved[stray] /= np.linalg.norm(moved[stray])
    replanned = split_voices(moved, 0.25, 0.75, 5, 0.8, seed=0)
    if replanned.cluster[stray] in replanned.valid_clusters:  # the clustering put it with the held-out voice
        assert replanned.split_of(stray) == "valid"
    else:
        assert stray in replanned.near_valid and replanned.split_of(stray) is None


def test_a_folder_is_split_with_rows_pointing_at_the_source_audio(tmp_path) -> None:
    vectors, truth = _voices([12, 10, 9, 8])
    source = tmp_path / "src"
    rows = []
    for i in range(len(truth)):
        path = source / "audio" / f"line-{i:02d}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.full(SAMPLE_RATE // 10, i / 100, dtype=np.float32), SAMPLE_RATE, format="FLAC")
        relative = f"audio/line-{i:02d}.flac"
        rows.append(ManifestRow(f"sky-{i:02d}", relative, 0.1, "valid", "asr", "sky-0", f"w {i}", None))
    write_manifest(rows, source / "asr.jsonl")
    by_level = {round(i / 100, 3): vectors[i] for i in range(len(truth))}

    def teacher(audio: np.ndarray) -> np.ndarray:  # the clip's constant level names its line
        return by_level[round(float(np.median(audio)), 3)]

    report = split_folder(source, tmp_path / "out", teacher, 0.25, 0.75, 5, 0.8, seed=0)
    written = read_manifest(tmp_path / "out" / "asr.jsonl")
    assert report["train_lines"] + report["valid_lines"] == len(written) == len(truth)
    assert {r.split for r in written} == {"train", "valid"}
    assert all(r.path == str((source / "audio" / f"line-{r.id[4:]}.flac").resolve()) for r in written)
    assert all(r.meta["scene"] == "sky-0" and r.speaker.startswith("sky-v") for r in written)
    by_voice: dict[str, set[str]] = {}
    for r in written:
        by_voice.setdefault(r.speaker, set()).add(r.split)
    assert all(len(s) == 1 for s in by_voice.values()) and len(by_voice) == 4
    assert json.loads((tmp_path / "out" / "voice_split.json").read_text())["voices"] == 4
