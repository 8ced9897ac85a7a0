"""Real-voice *validation* clips for language identification: game-package readers of the six languages.

Why: the language sets' own validation flatters the trained set (its validation clips come from its
training voices: the synthetic voices and the three real prompt readers it trained on), and a converted
set (``language-whisper``) trained on none of them. Choosing between such sets needs real speakers that
neither set trained on and the test never hears. The realvox segments (``training.corpus.realvox``) of
KLettres (letters and syllables) and Tux Paint (stamp names) give them; KTuberling's voices are left out,
because its spoken words are the language test's isolated words. Role: valid.

    python -m training.suites.language_valid [--out data/language-valid] [--per-voice 30]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from training.data.manifest import read_manifest, write_manifest

LANGUAGES = ("de", "en", "es", "fr", "it", "ru")
SOURCES = ("data/realvox/verification.jsonl", "data/realvox-tuxpaint/verification.jsonl")
EXCLUDED_PACKAGES = ("ktuberling",)  # the language test's KTuberling words


def voice_language(speaker: str) -> str | None:
    """``klettres-en_GB`` -> ``en``; None for a voice of another language or an excluded package."""
    package, _, rest = speaker.partition("-")
    language = rest.split("_")[0].split("-")[0]
    return language if language in LANGUAGES and package not in EXCLUDED_PACKAGES else None


def build(sources: tuple[str, ...], out: Path, per_voice: int) -> dict[str, int]:
    """Up to ``per_voice`` segments of each voice, evenly spread over its sorted segments."""
    rows = []
    for source in sources:
        by_voice: dict[str, list] = {}
        for row in read_manifest(source):
            if voice_language(row.speaker):
                by_voice.setdefault(row.speaker, []).append(row)
        for speaker, segments in sorted(by_voice.items()):
            segments.sort(key=lambda r: r.path)
            picked = [segments[int(i * len(segments) / per_voice)] for i in range(min(per_voice, len(segments)))]
            rows += [replace(r, split="valid", task="language", label=voice_language(speaker)) for r in picked]
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(rows, out / "language.jsonl")
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.label] = counts.get(row.label, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("data/language-valid"))
    p.add_argument("--per-voice", type=int, default=30)
    args = p.parse_args(argv)
    print(build(SOURCES, args.out, args.per_voice))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
