"""training.corpus.gamevox: the FOTAQ resource table is read as ScummVM writes it, groups keep a scene's (or a
character's) lines together, sound effects stay out, and implausible teacher transcripts are dropped."""

from __future__ import annotations

import json
import struct

import pytest

from training.corpus.gamevox import (
    DRASCULA,
    FOTAQ,
    earlier_labels,
    fotaq_lines,
    group_of,
    plausible,
    seeded_pick,
)
from training.data.manifest import ManifestRow


def fotaq_file(tmp_path, entries: dict[str, bytes], compression: int = 1):
    """A rebuilt queen.1c: QTBL, version, 2 bytes, compression, count, then name/bundle/offset/size entries."""
    header = b"QTBL" + b"CEM10\0" + b"\0\0" + bytes([compression]) + struct.pack(">H", len(entries))
    offset = len(header) + 21 * len(entries)
    table, payload = b"", b""
    for name, data in entries.items():
        table += name.encode().ljust(12, b"\0") + b"\x01" + struct.pack(">II", offset + len(payload), len(data))
        payload += data
    path = tmp_path / "queen.1c"
    path.write_bytes(header + table + payload)
    return path


def test_the_resource_table_gives_every_speech_line(tmp_path) -> None:
    path = fotaq_file(tmp_path, {"020001P2.SB": b"first", "QUEEN.JAS": b"logic", "020006J1.SB": b"second!"})
    assert list(fotaq_lines(path)) == [("020001P2.SB", b"first"), ("020006J1.SB", b"second!")]
    with pytest.raises(ValueError, match="MP3"):
        list(fotaq_lines(fotaq_file(tmp_path, {"A.SB": b"x"}, compression=0)))


def test_groups() -> None:
    assert group_of(FOTAQ, "020006J1.SB") == group_of(FOTAQ, "029999P1.SB") == "fotaq-02"
    assert group_of(DRASCULA, "3.ALS") == group_of(DRASCULA, "463.ALS") == "drascula-hacker"
    assert group_of(DRASCULA, "VB12.ALS") == "drascula-vb" and group_of(DRASCULA, "AN7_3.ALS") == "drascula-an"


def test_plausible_transcripts() -> None:
    assert plausible("where is the key", 1.5)
    assert not plausible("", 2.0)
    assert not plausible("a" * 60, 2.0)  # more letters than two seconds of speech hold
    assert not plausible(" ".join(["go to the door"] * 6), 20.0)  # a loop


def test_seeded_pick_is_stable_and_capped() -> None:
    names = [f"n{i}" for i in range(50)]
    assert seeded_pick(names, 10, 0) == seeded_pick(list(reversed(names)), 10, 0)
    assert len(seeded_pick(names, 10, 0)) == 10 and seeded_pick(names, 0, 0) == set(names)
    assert seeded_pick(names, 10, 0) != seeded_pick(names, 10, 1)


def extracted(line_id: str, seconds: float = 2.0) -> ManifestRow:
    return ManifestRow(id=line_id, path=f"/data/gamevox/audio/g/{line_id}.flac", duration_s=seconds, split="train",
                       task="asr", speaker="g", text=None, meta={"source": FOTAQ, "real_voice": True})


def test_a_larger_extraction_reuses_the_same_teachers_labels_only(tmp_path) -> None:
    manifest = tmp_path / "asr.jsonl"
    earlier = [
        {"id": "a", "path": "audio/g/a.flac", "duration_s": 2.0, "text": "open the door",
         "meta": {"pseudo_label": "asr-whisper"}},
        {"id": "b", "path": "audio/g/b.flac", "duration_s": 2.0, "text": "look", "meta": {"pseudo_label": "other"}},
        {"id": "c", "path": "audio/g/c.flac", "duration_s": 3.5, "text": "changed audio",
         "meta": {"pseudo_label": "asr-whisper"}},
        {"id": "gone", "path": "audio/g/gone.flac", "duration_s": 2.0, "text": "not extracted now",
         "meta": {"pseudo_label": "asr-whisper"}},
    ]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in earlier))
    rows = [extracted("a"), extracted("b"), extracted("c"), extracted("new")]
    reused = earlier_labels(manifest, rows, "asr-whisper")
    assert [(row.id, row.text) for row in reused] == [("a", "open the door")]
    assert reused[0].path == rows[0].path and reused[0].meta["pseudo_label"] == "asr-whisper"
    assert earlier_labels(tmp_path / "missing.jsonl", rows, "asr-whisper") == []


def test_a_rerun_with_every_label_reused_needs_no_teacher(tmp_path) -> None:
    from training.corpus.gamevox import main

    line = {"id": "a", "path": "audio/g/a.flac", "duration_s": 2.0, "split": "train", "task": "asr", "speaker": "g",
            "text": None, "label": None, "meta": {"source": FOTAQ, "real_voice": True}}
    (tmp_path / "unlabelled.jsonl").write_text(json.dumps(line) + "\n")
    (tmp_path / "asr.jsonl").write_text(json.dumps(line | {"text": "open the door",
                                                            "meta": {"pseudo_label": "asr-whisper"}}) + "\n")
    (tmp_path / "gamevox.json").write_text("{}")
    # neither the backbone nor the set exists: loading either would fail
    assert main(["label", "--out", str(tmp_path), "--set", str(tmp_path / "asr-whisper"),
                 "--backbone", str(tmp_path / "no-backbone")]) == 0
    report = json.loads((tmp_path / "gamevox.json").read_text())
    assert report["reused_labels"] == 1 and report["labelled"] == 1
    assert json.loads((tmp_path / "asr.jsonl").read_text())["text"] == "open the door"
