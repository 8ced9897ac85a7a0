"""training.diarization_naming: each conversation's enrolments leave one of its speakers out and never use its own
clips; speech is right under the enrolled id, or under no name for the voice left out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.suites import test_conversations
from training.data.manifest import ManifestRow
from training.diarization_naming import (
    SourceClips,
    draw_enrolments,
    gallery_of,
    named_turns,
    naming_frames,
    source_clips,
    summary,
)

far_data = test_conversations.far_data  # the tiny far manifest conversations are built from (a fixture)


def row(speaker: str, index: int) -> ManifestRow:
    return ManifestRow(id=f"{speaker}-{index}", path=f"/clips/{speaker}-{index}.wav", duration_s=1.5, split="valid",
                       task="verification", speaker=speaker)


def sources() -> SourceClips:
    by_speaker = {speaker: [row(speaker, i) for i in range(6)] for speaker in ("a", "b", "c", "d", "e")}
    return SourceClips(by_speaker, {"conv": {"a-0", "a-1", "a-2", "b-0", "c-5"}})


@pytest.mark.parametrize("seed", range(5))
def test_enrolments_leave_one_speaker_out_and_use_other_clips(seed: int) -> None:
    left_out, enrolments = draw_enrolments(("a", "b", "c"), "conv", sources(), np.random.default_rng(seed))
    assert left_out in {"a", "b", "c"} and left_out not in enrolments
    assert set(enrolments) - {"a", "b", "c"} <= {"d", "e"} and len(enrolments) == 4  # 2 speakers + 2 distractors
    for speaker, rows in enrolments.items():
        assert len(rows) == 3 and all(r.speaker == speaker and r.id not in sources().used["conv"] for r in rows)


def test_the_gallery_is_the_mean_unit_embedding_and_the_seconds() -> None:
    vectors = {"/clips/a-3.wav": torch.tensor([2.0, 0.0]), "/clips/a-4.wav": torch.tensor([0.0, 3.0])}
    gallery = gallery_of({"a": [row("a", 3), row("a", 4)]}, lambda r: vectors[r.path])
    assert gallery[0].speaker == "a" and gallery[0].duration_s == 3.0
    assert torch.allclose(gallery[0].embedding, torch.tensor([0.7071, 0.7071]), atol=1e-4)


def test_frames_are_right_under_the_enrolled_id_or_under_no_name_for_the_voice_left_out() -> None:
    reference = [(0.0, 1.0, "a"), (1.0, 2.0, "b"), (2.0, 2.5, "c")]  # c was not enrolled
    answer = {"speakers": [{"speaker": "speaker_1", "speech_s": 1.0, "name": "a"}, {"speaker": "speaker_2",
                                                                                     "speech_s": 1.0}],
              "turns": [{"start_s": 0.0, "end_s": 1.5, "speaker": "speaker_1"},
                        {"start_s": 1.5, "end_s": 2.5, "speaker": "speaker_2"}]}
    counts = naming_frames(reference, named_turns(answer), enrolled={"a", "b"})
    # a: 100 right; b: 50 frames named a (wrong), 50 unnamed; c: 50 unnamed = right
    assert counts == {"frames": 250, "right": 150, "wrong_name": 50, "unnamed": 50}
    assert summary([counts]) == {"naming_accuracy": 60.0, "wrong_name": 20.0, "unnamed": 20.0, "speech_s": 2.5}


def test_the_evaluation_names_speakers_on_a_built_suite_and_refuses_a_grid_on_test(far_data, tiny_store, tmp_path,
                                                                                   monkeypatch) -> None:
    """End to end on a tiny built conversation folder: its sources and clip lists are read back, the served task
    names speakers from enrolments of unused clips; a grid of naming offsets on a test suite is refused."""
    import dataclasses
    import json

    from elp.tasks import get_task
    from training import diarization_eval
    from training.suites import conversations as cv

    monkeypatch.setenv("ELP_SPEECH_DETECTOR", "level")
    spec = dataclasses.replace(cv.SPECS["conversations-far-test"], count=2)
    folder = far_data / "conversations-far-test"
    cv.build_suite("conversations-far-test", far_data, folder, seed=0, length_s=(15.0, 25.0), spec=spec)
    read = source_clips(folder)
    assert sorted(read.by_speaker) == sorted({r.speaker for rows in read.by_speaker.values() for r in rows})
    assert len(read.used) == 2 and all(ids and ids <= {r.id for rows in read.by_speaker.values() for r in rows}
                                       for ids in read.used.values())
    backbone, store = tiny_store
    common = [str(store / "verify-default"), "--suite", str(folder), "--backbone", str(backbone), "--dtype", "float32"]
    with pytest.raises(SystemExit, match="valid suites only"):
        diarization_eval.main([*common, "--name-speakers", "0", "0.1"])
    out = tmp_path / "report.json"
    assert diarization_eval.main([*common, "--name-speakers", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["sets"]["verify-default"]["conversations-far-test"]
    naming = rows[f"naming_offset={get_task('diarization').naming_offset:g}"]  # the served offset
    assert naming["speech_s"] > 0 and naming["naming_accuracy"] + naming["wrong_name"] + naming["unnamed"] == \
        pytest.approx(100.0, abs=0.02)
