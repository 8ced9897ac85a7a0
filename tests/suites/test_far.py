"""Two Kokoro clips through the far suite's renderer: 16 kHz FLAC in the corpus schema, and the
guard refuses them as training rows (skipped with the reason when Kokoro is not installed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from training.data.manifest import read_manifest, write_manifest
from training.suites import kokoro
from training.suites.guard import HeldOutDataError, check_training_rows

pytestmark = [pytest.mark.slow,  # loads the 88 MB Kokoro model
              pytest.mark.skipif(kokoro.kokoro_available() is not None, reason=str(kokoro.kokoro_available()))]


def test_two_kokoro_clips_render_in_the_schema_and_are_refused_for_training(tmp_path: Path) -> None:
    from training.suites.far import spoken_rows

    voices = kokoro.identities(seed=0)
    assert len(voices) == 12 and len({v.name for v in voices}) == 12
    rows = spoken_rows(tmp_path, "asr", [("go forward ten meters", None), ("turn it down", None)], voices, seed=0)
    write_manifest(rows, tmp_path / "asr.jsonl")
    for row in read_manifest(tmp_path / "asr.jsonl", check_exists=True):
        info = sf.info(row.path)
        assert info.samplerate == 16000 and info.channels == 1 and info.duration >= 1.0
        assert row.meta["synth"] == "kokoro" and row.speaker.startswith("kokoro-")
    again = spoken_rows(tmp_path, "asr", [("go forward ten meters", None), ("turn it down", None)], voices, seed=0)
    assert [r.to_dict() for r in again] == [r.to_dict() for r in rows]  # seeded and cached
    with pytest.raises(HeldOutDataError, match="Kokoro"):
        check_training_rows([r.__class__(**{**r.to_dict(), "split": "train"}) for r in rows])


def test_language_clips_are_read_from_their_own_languages_ipa(tmp_path: Path) -> None:
    from training.corpus.language_text import LANGUAGES
    from training.suites.far import language_items, spoken_rows

    items = language_items(2)
    assert len(items) == len(LANGUAGES) * 5 * 2 and {label for _, label in items} == set(LANGUAGES)
    text = "la réunion se termine à midi"
    assert kokoro.ipa(text, "fr-fr") != kokoro.ipa(text)  # French phonology, not English spelling rules
    voices = kokoro.identities(seed=0)
    french = spoken_rows(tmp_path, "language", [(text, "fr")], voices, seed=0, espeak_voices={"fr": "fr-fr"})
    english = spoken_rows(tmp_path / "en", "language", [(text, "fr")], voices, seed=0)
    assert french[0].label == "fr" and french[0].speaker == english[0].speaker
    a, b = (sf.read(base / row.path)[0] for base, row in ((tmp_path, french[0]), (tmp_path / "en", english[0])))
    assert len(a) != len(b) or (a != b).any()
