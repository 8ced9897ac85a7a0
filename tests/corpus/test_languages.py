"""The language-ID data builder: held-out real speakers are refused for training, splits are disjoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.corpus.language_text import LANGUAGES, SENTENCES, sentence_split
from training.corpus.languages import (
    GAME_TRAIN,
    GAME_VALID,
    KTUBERLING,
    REAL_TEST,
    REAL_TRAIN,
    RealSource,
    check_language_training_rows,
    held_out_speakers,
    real_rows,
)
from training.data.manifest import ManifestRow, read_manifest, write_manifest
from training.suites.guard import SUITE_MARKER, HeldOutDataError


def _row(speaker: str, path: str = "/nowhere/clip.flac", meta: dict | None = None) -> ManifestRow:
    return ManifestRow(id=f"{speaker}-1", path=path, duration_s=1.0, split="train", task="language", speaker=speaker,
                       label="en", meta=meta or {})


@pytest.mark.parametrize("speaker", sorted({s.speaker for s in REAL_TEST}))
def test_every_held_out_real_speaker_is_refused(speaker: str) -> None:
    with pytest.raises(HeldOutDataError, match="held out for the language-ID test"):
        check_language_training_rows([_row("espeak-ng:en-us+m1"), _row(speaker)])


def test_training_speakers_and_synthetic_voices_pass() -> None:
    check_language_training_rows([_row(s.speaker) for s in REAL_TRAIN] + [_row("espeak-ng:de+f2")])


def test_kokoro_and_suite_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(HeldOutDataError):
        check_language_training_rows([_row("someone", meta={"synth": "kokoro"})])
    (tmp_path / SUITE_MARKER).write_text("{}")
    with pytest.raises(HeldOutDataError):
        check_language_training_rows([_row("someone", path=str(tmp_path / "audio" / "x.flac"))])


def test_no_person_both_trains_and_tests() -> None:
    assert not {s.speaker for s in REAL_TRAIN} & held_out_speakers()
    assert {s.language for s in REAL_TEST} >= set(LANGUAGES)  # every language has a held-out real speaker


def test_game_voices_are_no_test_speakers_and_give_every_language_a_real_training_voice() -> None:
    game = GAME_TRAIN + GAME_VALID
    assert not {s.speaker for s in game} & held_out_speakers()
    assert not {s.speaker for s in GAME_TRAIN} & {s.speaker for s in GAME_VALID}
    assert all(s.package != KTUBERLING for s in game)  # KTuberling's readers are language-ID test speakers
    check_language_training_rows([_row(s.speaker) for s in GAME_TRAIN])
    assert {s.language for s in REAL_TRAIN + GAME_TRAIN} == set(LANGUAGES)


def test_real_rows_pick_by_name_and_a_validation_voice_gets_valid_rows_only(tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    stamps = tmp_path / "root" / "stamps"
    (stamps / "animals").mkdir(parents=True)
    for name in ("frog_desc", "frog_desc_fr", "cat_desc_fr", "dog_desc_fr", "frog"):
        sf.write(stamps / "animals" / f"{name}.wav", 0.1 * np.ones(16000, dtype=np.float32), 16000)
    source = RealSource("reader-fr", "fr", "pkg", "stamps", "wav", "tuxpaint", 10, "_desc_fr")
    valid = real_rows(tmp_path / "out", source, tmp_path / "root", seed=0, role="valid")
    assert sorted(r.id.rsplit("-", 1)[-1] for r in valid) == ["cat_desc_fr", "dog_desc_fr", "frog_desc_fr"]
    assert {r.split for r in valid} == {"valid"} and {r.label for r in valid} == {"fr"}
    trained = real_rows(tmp_path / "out2", source, tmp_path / "root", seed=0, role="train")
    assert {r.split for r in trained} == {"train"}  # 3 clips: the 7th would be the first valid one
    tested = real_rows(tmp_path / "out3", source, tmp_path / "root", seed=0, role="test")
    assert {r.split for r in tested} == {"test"}
    with pytest.raises(ValueError, match="speaker role"):
        real_rows(tmp_path / "out4", source, tmp_path / "root", seed=0, role="training")


def test_sentence_splits_are_fixed_and_disjoint() -> None:
    for language in LANGUAGES:
        splits = [sentence_split(language, i) for i in range(len(SENTENCES[language]))]
        assert splits.count("valid") == 5 and splits.count("test") == 5
        assert splits == [sentence_split(language, i) for i in range(len(SENTENCES[language]))]


def test_language_rows_round_trip_through_the_manifest(tmp_path: Path) -> None:
    write_manifest([_row("espeak-ng:ru+m3", path="audio/x.flac")], tmp_path / "language.jsonl")
    (row,) = read_manifest(tmp_path / "language.jsonl")
    assert (row.task, row.label) == ("language", "en")
    line = json.loads((tmp_path / "language.jsonl").read_text())
    line["label"] = None
    (tmp_path / "bad.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(ValueError, match="needs a 'label'"):
        read_manifest(tmp_path / "bad.jsonl")


def _tiny_language_corpus(root: Path, train_speaker: str) -> None:
    """Two languages told apart by pitch (tones), one real-speaker row in the training split."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    (root / "audio").mkdir(parents=True)
    rows = []
    for split, count in (("train", 4), ("valid", 2), ("test", 2)):
        for i in range(count):
            label = ("en", "fr")[i % 2]
            t = np.arange(8000) / 16000
            wave = 0.3 * np.sin(2 * np.pi * (150 if label == "en" else 300) * t) + 0.01 * rng.standard_normal(t.size)
            path = f"audio/{split}-{i}.wav"
            sf.write(root / path, wave.astype(np.float32), 16000)
            speaker = train_speaker if (split, i) == ("train", 0) else "espeak-ng:en-us+m1"
            rows.append(ManifestRow(f"{split}-{i}", path, 0.5, split, "language", speaker, None, label, {}))
    write_manifest(rows, root / "language.jsonl")


@pytest.mark.slow
def test_training_cached_uses_the_named_guard(tmp_path: Path) -> None:
    from elp import load_backbone
    from elp.testing import make_random_adapter_set, save_tiny_backbone
    from training import cached

    backbone = save_tiny_backbone(tmp_path / "whisper", "whisper")
    make_random_adapter_set(load_backbone(backbone), "language", method="l", labels=["en", "fr"]).save(tmp_path / "set")
    language_guard = ["--held-out-guard", "training.corpus.languages:check_language_training_rows"]
    for speaker, guard, refused in (("june", [], True), ("june", language_guard, False),
                                    ("armelle", language_guard, True)):
        corpus = tmp_path / f"corpus-{speaker}-{bool(guard)}"
        _tiny_language_corpus(corpus, speaker)
        argv = [str(tmp_path / "set"), "--out", str(tmp_path / "out"), "--backbone", str(backbone),
                "--corpus", str(corpus), "--epochs", "1", "--batch-size", "2", *guard]
        if refused:  # a human-suite person by the project guard; a language-ID test speaker by the builder's
            with pytest.raises(HeldOutDataError):
                cached.main(argv)
        else:  # a language-ID training speaker passes the builder's guard and trains
            assert cached.main(argv) == 0
