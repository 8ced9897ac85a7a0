"""training.corpus.derive: a validation folder from one split of another, an even spread of its rows, optionally
through the telephone channel, readable as a corpus."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from training.corpus.derive import derive, even_spread
from training.data.manifest import ManifestRow, read_manifest, write_manifest
from training.dataset import SAMPLE_RATE, load_audio, telephone_band


def _corpus(root) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(5):
        for split in ("train", "valid"):
            path = root / "audio" / f"{split}-{i}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, (0.1 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32), SAMPLE_RATE, format="FLAC")
            rows.append(ManifestRow(f"{split}-{i}", str(path), 1.0, split, "asr", "s", f"words {i}", None))
    write_manifest(rows, root / "asr.jsonl")


def test_even_spread_keeps_both_ends() -> None:
    assert even_spread(3, 5) == [0, 2, 4] and even_spread(0, 4) == [0, 1, 2, 3] and even_spread(9, 2) == [0, 1]


def test_a_spread_of_one_split_points_at_the_same_audio(tmp_path) -> None:
    _corpus(tmp_path / "src")
    report = derive(tmp_path / "src", tmp_path / "out", "asr", "valid", spread=3)
    rows = read_manifest(tmp_path / "out" / "asr.jsonl")
    assert [r.id for r in rows] == ["valid-0", "valid-2", "valid-4"] and report["rows"] == 3
    assert rows[0].path == str((tmp_path / "src" / "audio" / "valid-0.flac").resolve())
    assert json.loads((tmp_path / "out" / "derived.json").read_text())["spread"] == 3


def test_the_telephone_channel_writes_new_audio_through_the_training_channel(tmp_path) -> None:
    _corpus(tmp_path / "src")
    derive(tmp_path / "src", tmp_path / "out", "asr", "valid", channel="telephone")
    rows = read_manifest(tmp_path / "out" / "asr.jsonl")
    assert len(rows) == 5 and all(r.meta["channel"] == "telephone" for r in rows)
    original = load_audio(str(tmp_path / "src" / "audio" / "valid-1.flac"))
    written = load_audio(rows[1].path)
    np.testing.assert_allclose(written, telephone_band(original), atol=1 / 2**14)  # 16-bit FLAC of the channel
