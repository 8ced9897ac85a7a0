"""training.suites.language_valid: real game-package readers of the six languages, KTuberling's left out."""

from __future__ import annotations

from pathlib import Path

from training.data.manifest import ManifestRow, read_manifest, write_manifest
from training.suites import language_valid


def test_voices_of_the_six_languages_become_validation_rows(tmp_path: Path) -> None:
    rows = []
    for speaker, count in (("klettres-en_GB", 5), ("klettres-ar", 4), ("tuxpaint-ru-1", 3), ("ktuberling-de", 4)):
        for index in range(count):
            path = tmp_path / "segments" / f"{speaker}-{index}.flac"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(b"")
            rows.append(ManifestRow(id=f"{speaker}-{index}", path=str(path), duration_s=2.0, split="train",
                                    task="verification", speaker=speaker, label=speaker))
    source = write_manifest(rows, tmp_path / "verification.jsonl")
    counts = language_valid.build((str(source),), tmp_path / "out", per_voice=2)
    assert counts == {"en": 2, "ru": 2}  # Arabic is not one of the six; KTuberling's words are the test's
    written = read_manifest(tmp_path / "out" / "language.jsonl")
    assert {(r.speaker, r.label, r.split, r.task) for r in written} == {
        ("klettres-en_GB", "en", "valid", "language"), ("tuxpaint-ru-1", "ru", "valid", "language")}
    assert [r.id for r in written if r.speaker == "klettres-en_GB"] == ["klettres-en_GB-0", "klettres-en_GB-2"]
