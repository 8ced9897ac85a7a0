"""The human suite builder on a fake package cache: schema, roles, trials, transcripts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from training.data.manifest import read_manifest, read_trials
from training.suites import registry
from training.suites.human import build, prompt_text
from training.suites.writer import READY

from .fixtures import fake_deb_cache, fake_sdist

TOOLS = ("ffmpeg", "sox", "dpkg-deb")
pytestmark = [pytest.mark.slow,  # builds eleven small .deb files and decodes them (~20 s on 2 shared cores)
              pytest.mark.skipif(not all(shutil.which(t) for t in TOOLS),
                                 reason="needs ffmpeg, sox and dpkg-deb (scripts/run_tests.sh installs them)")]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("human")
    cache = fake_deb_cache(root / "debs")
    summary = build(root / "human", cache, fake_sdist(root / "pocketsphinx-5.1.1.tar.gz"), per_source=3,
                    test_trials=40, valid_trials=20, log=lambda *_: None)
    return root / "human", summary


def test_prompt_texts_drop_non_speech_and_unspellable_items() -> None:
    assert prompt_text("[ascending tones]") is None
    assert prompt_text("Please leave your message. (simple tone sound plays)") == "please leave your message"
    assert prompt_text("press * to toggle pause") is None
    assert prompt_text("IAX (note: does not say \"2\")") is None
    assert prompt_text("Press 1 to accept") == "press one to accept"


def test_manifests_follow_the_corpus_schema_and_the_ready_marker_comes_last(suite) -> None:
    folder, summary = suite
    for name in ("asr", "asr_phone", "verification"):
        read_manifest(folder / f"{name}.jsonl", check_exists=True)  # raises on any schema violation
    for split in ("valid", "test"):
        read_trials(folder / f"verification_trials_{split}.txt", check_exists=True)
    assert (folder / READY).read_text().strip() == summary["manifest_sha256"]
    written = json.loads((folder / "suite.json").read_text())
    assert written["packages"]["asterisk-core-sounds-en-g722"] == "1.0"
    assert written["speakers"]["allison"]["role"] == "test" and written["speakers"]["june"]["role"] == "valid"


def test_allison_asr_has_wide_and_telephone_copies_of_the_transcribed_prompts(suite) -> None:
    folder, _ = suite
    wide = {r.meta.get("prompt"): r.text for r in read_manifest(folder / "asr.jsonl") if r.speaker == "allison"}
    phone = {r.meta["prompt"]: r.text for r in read_manifest(folder / "asr_phone.jsonl")}
    assert wide == phone == {"activated": "activated", "vm-intro": "please leave your message after the tone",
                             "digits/7": "seven", "auth-thankyou": "thank you two times"}
    sources = {r.meta.get("source") for r in read_manifest(folder / "asr.jsonl")}
    assert {"librivox", "alsa", "cards", "goforward"} <= sources


def test_roles_and_trials_keep_valid_and_test_speakers_apart(suite) -> None:
    folder, _ = suite
    rows = {r.path: r for r in read_manifest(folder / "verification.jsonl")}
    roles = registry.human_speaker_roles()
    assert all(r.split == roles[r.speaker] and r.label == r.speaker and r.duration_s >= 1.0 for r in rows.values())
    assert not any(r.speaker.startswith("unknown") or r.meta.get("source") == "cards" for r in rows.values())
    cross_language = 0
    for split in ("valid", "test"):
        trials = read_trials(folder / f"verification_trials_{split}.txt")
        assert sum(t.label for t in trials) * 2 == len(trials)  # balanced
        assert len({frozenset((t.path_a, t.path_b)) for t in trials}) == len(trials)  # no pair twice
        for trial in trials:
            a, b = rows[trial.path_a], rows[trial.path_b]
            assert a.split == b.split == split  # no test speaker in valid trials, and the other way round
            assert trial.label == int(a.speaker == b.speaker)
            cross_language += a.speaker == "allison" and a.meta["language"] != b.meta["language"] and trial.label
    assert cross_language > 0  # Allison's English and Spanish clips pair as one person


def test_long_clips_leave_the_trials_which_stay_balanced() -> None:
    from training.data.manifest import ManifestRow
    from training.suites.human import without_long_clips

    rows = [ManifestRow(p, p, seconds, "test", "verification", "x", None, "x")
            for p, seconds in (("a", 2.0), ("b", 3.0), ("c", 45.0), ("d", 2.0))]
    lines = ["1 a b", "1 a c", "1 b d", "0 a d", "0 c d", "0 b a"]
    assert without_long_clips(lines, rows) == ["1 a b", "1 b d", "0 a d", "0 b a"]
    assert without_long_clips(["1 a b", "1 b d", "0 c d", "0 a d"], rows) == ["1 a b", "0 a d"]
