"""Manifest format, trial lists, text normaliser and the four corpus readers on fake trees."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from training.data import (
    ManifestError,
    ManifestRow,
    Trial,
    filter_split,
    normalize_text,
    read_manifest,
    read_trials,
    write_manifest,
    write_trials,
)
from training.data.fsc import read_fsc
from training.data.iemocap import fold_splits, parse_emo_evaluation, read_iemocap, speaker_of
from training.data.librispeech import read_librispeech
from training.data.prepare import main as prepare_main
from training.data.voxceleb import read_voxceleb1, read_voxceleb1_trials


def _row(i: int, path: str, split: str = "train", task: str = "asr") -> ManifestRow:
    return ManifestRow(
        id=f"utt{i}", path=path, duration_s=1.5, split=split, task=task, speaker="spk1",
        text="hello world" if task == "asr" else None, label=None if task in ("asr", "verification") else "x",
        meta={"i": i},
    )  # fmt: skip


# ----------------------------------------------------------------------------- manifest format


def test_round_trip_paths_relative_on_disk_absolute_in_memory(tmp_path: Path, audio_writer) -> None:
    audio = audio_writer(tmp_path / "audio" / "a.wav")
    rows = [_row(0, str(audio)), _row(1, str(audio), split="test", task="emotion")]
    out = write_manifest(rows, tmp_path / "manifests" / "all.jsonl")
    first = json.loads(out.read_text().splitlines()[0])
    assert first["path"] == "../audio/a.wav"
    assert list(first) == ["id", "path", "duration_s", "split", "task", "speaker", "text", "label", "meta"]
    back = read_manifest(out, check_exists=True)
    assert [r.id for r in back] == ["utt0", "utt1"]
    assert back[0].path == str(audio) and back[1].label == "x" and back[1].meta == {"i": 1}
    assert [r.id for r in filter_split(back, "test")] == ["utt1"]
    assert filter_split(back, "train", task="emotion") == []
    with pytest.raises(ValueError):
        filter_split(back, "dev")


def test_manifest_moves_with_its_folder(tmp_path: Path, audio_writer) -> None:
    audio_writer(tmp_path / "corpus" / "a.wav")
    write_manifest([_row(0, str(tmp_path / "corpus" / "a.wav"))], tmp_path / "corpus" / "m.jsonl")
    (tmp_path / "corpus").rename(tmp_path / "moved")
    rows = read_manifest(tmp_path / "moved" / "m.jsonl", check_exists=True)
    assert rows[0].path == str(tmp_path / "moved" / "a.wav")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(split="dev"), "'split'"),
        (lambda d: d.update(task="sid"), "'task'"),
        (lambda d: d.update(duration_s="1.0"), "'duration_s'"),
        (lambda d: d.update(duration_s=-1), "'duration_s'"),
        (lambda d: d.pop("speaker"), "missing key"),
        (lambda d: d.update(extra=1), "unknown key"),
        (lambda d: d.update(text=None), "needs a 'text'"),
        (lambda d: d.update(meta=[]), "'meta'"),
    ],
)
def test_read_manifest_reports_line_number(tmp_path: Path, mutate, message: str) -> None:
    good = _row(0, "a.wav").to_dict()
    bad = _row(1, "b.wav").to_dict()
    mutate(bad)
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n")
    with pytest.raises(ManifestError, match=rf"m\.jsonl:3: .*{message}"):
        read_manifest(path)


def test_read_manifest_rejects_bad_json_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(_row(0, "a.wav").to_dict()) + "\n{not json\n")
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: invalid JSON"):
        read_manifest(path)
    path.write_text("\n".join(json.dumps(_row(0, p).to_dict()) for p in ("a.wav", "b.wav")))
    with pytest.raises(ManifestError, match=r":2: duplicate id 'utt0' \(first on line 1\)"):
        read_manifest(path)


def test_write_manifest_refuses_invalid_rows(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="'split'"):
        write_manifest([_row(0, "a.wav", split="dev")], tmp_path / "m.jsonl")
    assert not (tmp_path / "m.jsonl").exists()


def test_trials_resolve_against_base_dir_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "lists" / "veri.txt"
    path.parent.mkdir()
    path.write_text("1 id1/v/00001.wav id1/w/00002.wav\n\n0 id1/v/00001.wav id2/x/00001.wav\n")
    trials = read_trials(path, base_dir=tmp_path / "wav")
    assert trials[0] == Trial(1, str(tmp_path / "wav/id1/v/00001.wav"), str(tmp_path / "wav/id1/w/00002.wav"))
    assert [t.label for t in trials] == [1, 0]
    out = write_trials(trials, tmp_path / "out" / "trials.txt")
    assert out.read_text().splitlines()[1] == "0 ../wav/id1/v/00001.wav ../wav/id2/x/00001.wav"
    assert read_trials(out) == trials
    path.write_text("1 a.wav b.wav\n2 a.wav b.wav\n")
    with pytest.raises(ManifestError, match=r"veri\.txt:2"):
        read_trials(path)
    path.write_text("1 a.wav\n")
    with pytest.raises(ManifestError, match=r"veri\.txt:1"):
        read_trials(path)
    path.write_text("1 a.wav b.wav\n")
    with pytest.raises(ManifestError, match="not found"):
        read_trials(path, check_exists=True)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("CHAPTER ONE MISSUS RACHEL LYNDE", "chapter one missus rachel lynde"),
        ("Don\u2019t  stop -- the café's   lights!", "don't stop the cafe's lights"),
        ("  Turn on the lights.  ", "turn on the lights"),
        ("room 101, please", "room please"),
        ("", ""),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


# ----------------------------------------------------------------------------- readers


def test_librispeech(librispeech_root: Path) -> None:
    rows = read_librispeech(librispeech_root)
    assert len(rows) == 5
    assert Counter(r.split for r in rows) == {"train": 3, "valid": 1, "test": 1}
    by_id = {r.id: r for r in rows}
    r = by_id["103-1240-0000"]
    assert (r.task, r.speaker, r.text) == ("asr", "103", "chapter one missus rachel lynde")
    assert r.meta["subset"] == "train-clean-100" and r.meta["chapter"] == "1240"
    assert r.duration_s == pytest.approx(0.1, abs=1e-3)
    assert by_id["103-1240-0001"].duration_s == pytest.approx(0.15, abs=1e-3)
    assert {r.speaker for r in rows if r.split == "train"} == {"103", "19"}
    # the parent of the LibriSpeech folder works too, and subsets can be picked
    assert len(read_librispeech(librispeech_root.parent, subsets=["dev-clean"])) == 1
    with pytest.raises(ManifestError, match="not found"):
        read_librispeech(librispeech_root, subsets=["train-other-500"])


def test_librispeech_missing_audio_is_an_error(librispeech_root: Path) -> None:
    (librispeech_root / "dev-clean/84/121123/84-121123-0000.flac").unlink()
    with pytest.raises(ManifestError, match=r"84-121123\.trans\.txt:1: audio missing"):
        read_librispeech(librispeech_root)


def test_voxceleb1_verification_split_and_trials(voxceleb_root: Path) -> None:
    rows = read_voxceleb1(voxceleb_root)
    assert len(rows) == 7
    split_of = {r.id: r.split for r in rows}
    assert {r.speaker for r in rows if r.split == "test"} == {"id10270", "id10309"}
    # id10001 has two videos: the last one (sorted) is validation; id10002 has one, all train
    assert split_of["id10001/7gWzIy6yIIk/00001"] == "valid"
    assert split_of["id10001/1zcIwhmdeo4/00002"] == "train"
    assert split_of["id10002/0_laIeN-Q44/00001"] == "train"
    assert all(r.task == "verification" and r.label == r.speaker for r in rows)
    trials = read_voxceleb1_trials(voxceleb_root)
    wav = voxceleb_root / "wav"
    assert trials == [
        Trial(1, str(wav / "id10270/x6uYqmx31kE/00001.wav"), str(wav / "id10270/8jEAjG6SegY/00008.wav")),
        Trial(0, str(wav / "id10270/x6uYqmx31kE/00001.wav"), str(wav / "id10309/0cYFdtyWVds/00001.wav")),
    ]
    ids = {r.path for r in rows}
    assert all(t.path_a in ids and t.path_b in ids for t in trials)


def test_voxceleb1_iden_split(voxceleb_root: Path, tmp_path: Path) -> None:
    split_file = tmp_path / "iden_split.txt"
    split_file.write_text(
        "1 id10001/1zcIwhmdeo4/00001.wav\n2 id10001/1zcIwhmdeo4/00002.wav\n3 id10002/0_laIeN-Q44/00001.wav\n"
    )
    rows = read_voxceleb1(voxceleb_root, split_file=split_file)
    assert {r.id: r.split for r in rows} == {
        "id10001/1zcIwhmdeo4/00001": "train",
        "id10001/1zcIwhmdeo4/00002": "valid",
        "id10002/0_laIeN-Q44/00001": "test",
    }
    split_file.write_text("4 id10001/1zcIwhmdeo4/00001.wav\n")
    with pytest.raises(ManifestError, match=r"iden_split\.txt:1"):
        read_voxceleb1(voxceleb_root, split_file=split_file)


def test_voxceleb1_trial_with_missing_file(voxceleb_root: Path) -> None:
    (voxceleb_root / "veri_test2.txt").write_text("1 id10270/nope/00001.wav id10309/0cYFdtyWVds/00001.wav\n")
    with pytest.raises(ManifestError, match=r"veri_test2\.txt:1: audio file not found"):
        read_voxceleb1_trials(voxceleb_root)


def test_iemocap_labels_speakers_and_merge(iemocap_root: Path) -> None:
    rows = read_iemocap(iemocap_root, fold=1)
    assert len(rows) == 25  # 6 turns per session, fru dropped
    assert Counter(r.label for r in rows) == {"neu": 5, "hap": 10, "ang": 5, "sad": 5}
    exc = next(r for r in rows if r.id == "Ses03F_impro01_M000")
    assert (exc.label, exc.meta["raw_label"], exc.speaker) == ("hap", "exc", "Ses03M")
    assert {r.speaker for r in rows} == {f"Ses0{s}{g}" for s in range(1, 6) for g in "FM"}
    assert all(r.task == "emotion" for r in rows)
    assert speaker_of("Ses02M_script01_1_F012") == "Ses02F"


@pytest.mark.parametrize("fold", [1, 2, 3, 4, 5])
def test_iemocap_folds_are_speaker_disjoint(iemocap_root: Path, fold: int) -> None:
    rows = read_iemocap(iemocap_root, fold=fold)
    spk = {s: {r.speaker for r in rows if r.split == s} for s in ("train", "valid", "test")}
    assert spk["test"] == {f"Ses0{fold}F", f"Ses0{fold}M"}
    assert spk["valid"] == {f"Ses0{fold % 5 + 1}F"}
    assert (
        not (spk["train"] & spk["valid"])
        and not (spk["train"] & spk["test"])
        and not (spk["valid"] & spk["test"])
    )
    assert len(spk["train"]) == 7
    whole = fold_splits(fold, valid_mode="session")
    assert sorted(k for k, v in whole.items() if v == "valid") == [
        f"Ses0{fold % 5 + 1}F",
        f"Ses0{fold % 5 + 1}M",
    ]
    with pytest.raises(ValueError):
        fold_splits(6)


def test_iemocap_malformed_line(iemocap_root: Path) -> None:
    ev = iemocap_root / "Session2/dialog/EmoEvaluation/Ses02F_impro01.txt"
    lines = ev.read_text().splitlines(keepends=True)
    idx = next(i for i, line in enumerate(lines) if line.startswith("["))
    lines[idx] = "[6.2901 - 8.2357] Ses02F_impro01_F000 neu\n"
    ev.write_text("".join(lines))
    with pytest.raises(ManifestError, match=rf"Ses02F_impro01\.txt:{idx + 1}: malformed turn line"):
        parse_emo_evaluation(ev)
    with pytest.raises(ManifestError, match="malformed"):
        read_iemocap(iemocap_root)


def test_fsc(fsc_root: Path) -> None:
    rows = read_fsc(fsc_root)
    assert Counter(r.split for r in rows) == {"train": 2, "valid": 1, "test": 1}
    r = rows[1]
    assert r.label == "increase_heat_kitchen" and r.text == "turn up the heat in the kitchen"
    assert r.speaker == "2BqVo8kVB2Skwgyb" and r.task == "intent"
    assert r.id == "2BqVo8kVB2Skwgyb/0ee42a80-4474-11e9-a9a5-5dbec3b8816a"
    assert rows[0].label == "activate_lights_none"
    csv = fsc_root / "data" / "test_data.csv"
    csv.write_text(",path,speakerId,transcription,action,object\n0,x.wav,s,t,a,o\n")
    with pytest.raises(ManifestError, match=r"test_data\.csv:1: missing column"):
        read_fsc(fsc_root)
    csv.write_text(",path,speakerId,transcription,action,object,location\n0,wavs/nope.wav,s,t,a,o,l\n")
    with pytest.raises(ManifestError, match=r"test_data\.csv:2: audio missing"):
        read_fsc(fsc_root)


# ----------------------------------------------------------------------------- CLI


def test_prepare_cli_writes_readable_manifests(
    voxceleb_root: Path, iemocap_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "manifests"
    assert prepare_main(["voxceleb1", "--root", str(voxceleb_root), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"verification.jsonl", "verification_trials_test.txt"}
    rows = read_manifest(out / "verification.jsonl", check_exists=True)
    assert len(rows) == 7 and all(r.label == r.speaker for r in rows)
    trials = read_trials(out / "verification_trials_test.txt", check_exists=True)
    assert {t.path_a for t in trials} <= {r.path for r in filter_split(rows, "test")}
    assert "verification: 7 rows (train 3, valid 1, test 3)" in capsys.readouterr().out

    # a second task shares the folder, under the same file name the synthetic generator uses
    assert prepare_main(["iemocap", "--root", str(iemocap_root), "--out", str(out), "--fold", "2"]) == 0
    emo = read_manifest(out / "emotion.jsonl")
    assert {r.speaker for r in filter_split(emo, "test")} == {"Ses02F", "Ses02M"}

    assert prepare_main(["fsc", "--root", str(tmp_path / "missing"), "--out", str(out)]) == 1
    assert "not found" in capsys.readouterr().err
    assert prepare_main(["librispeech", "--root", str(tmp_path / "manifests"), "--out", str(out)]) == 1
    assert "no librispeech clips" in capsys.readouterr().err
