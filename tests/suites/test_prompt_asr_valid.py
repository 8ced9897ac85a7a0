"""The real-voice ASR validation clips: valid readers only, transcribed prompts, no digits or letters."""

from __future__ import annotations

import gzip
import json

from training.data.manifest import ManifestRow
from training.suites.guard import held_out_reason
from training.suites.prompt_asr_valid import SPEAKERS, build
from training.suites.registry import ASTERISK_SOUNDS, human_speaker_roles

from .fixtures import _deb


def test_valid_readers_prompts_with_their_transcripts_and_nothing_unspellable(tmp_path):
    cache = tmp_path / "debs"
    listing = "; header\nhello: Bonjour à tous.\ndigits/1: un\nbeep: [beep]\nmissing: pas de fichier\n"
    for language, (_, folder) in SPEAKERS.items():
        root = f"{ASTERISK_SOUNDS}/{folder}"
        _deb(cache, f"asterisk-core-sounds-{language}-g722",
             {f"{root}/hello.g722": 1.1, f"{root}/digits/1.g722": 0.6, f"{root}/beep.g722": 0.5})
        _deb(cache, f"asterisk-core-sounds-{language}",
             {f"usr/share/doc/asterisk-core-sounds-{language}/core-sounds-{language}.txt.gz":
              gzip.compress(listing.encode())})
    assert build(tmp_path / "out", cache, per_language=10) == {"fr": 1, "it": 1}
    for language, (speaker, _) in SPEAKERS.items():
        (row,) = [json.loads(line) for line in (tmp_path / "out" / language / "asr.jsonl").read_text().splitlines()]
        assert row["speaker"] == speaker and row["split"] == "valid" and row["text"].startswith("bonjour")
        assert human_speaker_roles()[speaker] == "valid"
        assert (tmp_path / "out" / language / row["path"]).is_file() and 1.0 < row["duration_s"] < 1.2
        assert held_out_reason(ManifestRow(**{**row, "meta": row["meta"]})) is not None  # never trained on
