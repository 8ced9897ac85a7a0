"""ASR validation clips from real people who are no test speaker: the human suite's *valid* prompt
readers (June, fr; Carlo, it), their 16 kHz G.722 prompts with the packages' transcripts.

Why: the ASR sets' decoding settings were chosen on synthetic voices only, and a setting that holds
there (how many zeros follow a clip, when a greedy decoder's loop is cut) can fail on short real
prompts. These speakers already choose thresholds (role ``valid``); English has no real speaker
outside the test split, so this set is French and Italian and serves settings that do not depend on
the language (a decoder set converted for the clip's language reads it). Digit and letter prompts are
left out (a decoder writes "1" where the transcript says "un"; spelling them is English-only here).

    python -m training.suites.prompt_asr_valid [--out data/human-asr-valid] [--per-language 150]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np

from training.suites.debian import decode_file, extract_deb, fetch_deb, write_flac
from training.suites.human import prompt_text
from training.suites.registry import ASTERISK_SOUNDS

SPEAKERS = {"fr": ("june", "fr_CA_f_June"), "it": ("carlo", "it_IT_m_Carlo")}
SKIPPED_FOLDERS = ("digits/", "letters/", "phonetic/")


def prompts(language: str, text_root: Path, audio_root: Path) -> list[tuple[str, Path, str]]:
    """(key, G.722 file, normalised transcript) of every usable prompt of one language, sorted."""
    listing = text_root / f"usr/share/doc/asterisk-core-sounds-{language}/core-sounds-{language}.txt.gz"
    folder = audio_root / ASTERISK_SOUNDS / SPEAKERS[language][1]
    found = []
    for line in gzip.decompress(listing.read_bytes()).decode("utf-8").splitlines():
        if line.startswith(";") or ":" not in line:
            continue
        key, raw = (part.strip() for part in line.split(":", 1))
        text = prompt_text(raw)
        audio = folder / f"{key}.g722"
        if text and audio.is_file() and not key.startswith(SKIPPED_FOLDERS):
            found.append((key, audio, text))
    return sorted(found)


def build(out: Path, deb_cache: Path, per_language: int, seed: int = 0) -> dict[str, int]:
    counts = {}
    for language, (speaker, _) in SPEAKERS.items():
        text_root = extract_deb(fetch_deb(deb_cache, f"asterisk-core-sounds-{language}"), deb_cache / "x")
        audio_root = extract_deb(fetch_deb(deb_cache, f"asterisk-core-sounds-{language}-g722"), deb_cache / "x")
        found = prompts(language, text_root, audio_root)
        picked = sorted(np.random.default_rng(seed).permutation(len(found))[:per_language].tolist())
        rows = []
        for index in picked:
            key, audio, text = found[index]
            rel = f"audio/{speaker}-{language}/{key.replace('/', '-')}.flac"
            seconds = write_flac(decode_file(audio), out / language / rel)
            rows.append({"id": f"{speaker}-{key}", "path": rel, "duration_s": round(seconds, 3), "split": "valid",
                         "task": "asr", "speaker": speaker, "text": text, "label": None,
                         "meta": {"language": language, "prompt": key, "human": True}})
        (out / language / "asr.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        counts[language] = len(rows)
    # the marker makes the training guard refuse the folder (its speakers are held out anyway)
    (out / "suite.json").write_text(json.dumps({"suite": "human-asr-valid", "role": "valid", "seed": seed,
                                                "speakers": SPEAKERS, "counts": counts}, indent=1))
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/human-asr-valid"))
    parser.add_argument("--deb-cache", type=Path, default=Path.home() / ".cache" / "elp-suites" / "debs")
    parser.add_argument("--per-language", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build(args.out, args.deb_cache, args.per_language, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
