"""Short-clip verification trials of the realvox *validation* voices: their single source clips (a word, a
letter, a line) instead of the 1-20 s segments that ``training.corpus.realvox_trials`` glues them into.

Why: a served verification pair is often two short utterances (a telephone prompt is ~1.5 s), and a speaker
network reads a clip under one 1.6 s window differently from a longer one. The realvox validation trials are
segments of 1.6 s or more, so only the human suite's 3 telephone readers had short clips; this gives the
question 25 more voices. Same voices and links as the realvox validation suite (read from its
``suite.json``): validation data of the same people, never a test set or a cohort.

Rule: for each validation voice, the source clips of its segments (``meta.clips``) that last ``min_s``-``max_s``
seconds, in ``sha256(seed|file name)`` order, at most ``per_voice``, decoded to 16 kHz mono FLAC under
``<out>/audio``; balanced trials by the corpus' ``make_trials``, minus impostor pairs between linked voices.

    python -m training.corpus.realvox_short data/realvox{,-ktuberling,-tuxpaint,-fillets}/verification.jsonl \\
        --suite data/realvox-valid --out data/realvox-short
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import soundfile as sf

from training.corpus.realvox_trials import linked_free_trials
from training.data.manifest import ManifestRow, read_manifest
from training.dataset import SAMPLE_RATE, load_audio
from training.suites.writer import write_suite


def source_clips(manifests: Sequence[str], voices: set[str]) -> dict[str, list[Path]]:
    """The distinct source clips of each voice's segments (``meta.clips`` is relative to its manifest)."""
    found: dict[str, set[Path]] = {}
    for manifest in manifests:
        base = Path(manifest).resolve().parent
        for row in read_manifest(manifest):
            if row.speaker in voices:
                found.setdefault(row.speaker, set()).update((base / c).resolve() for c in row.meta.get("clips", []))
    return {voice: sorted(clips) for voice, clips in found.items()}


def short_rows(voice: str, clips: Sequence[Path], out: Path, args: argparse.Namespace) -> list[ManifestRow]:
    """Up to ``per_voice`` of ``clips`` lasting ``min_s``-``max_s`` s, written under ``out`` as 16 kHz FLAC."""
    rows: list[ManifestRow] = []
    for clip in sorted(clips, key=lambda p: hashlib.sha256(f"{args.seed}|{p.name}".encode()).hexdigest()):
        wave = load_audio(str(clip))
        seconds = wave.size / SAMPLE_RATE
        if not args.min_s <= seconds <= args.max_s:
            continue
        relative = f"audio/{voice}/{len(rows):03d}-{clip.stem}.flac"
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        sf.write(out / relative, wave, SAMPLE_RATE, format="FLAC")
        rows.append(ManifestRow(id=f"{voice}-short-{len(rows):03d}", path=relative, duration_s=round(seconds, 3),
                                split="valid", task="verification", speaker=voice, label=voice,
                                meta={"source_clip": clip.name}))
        if len(rows) == args.per_voice:
            break
    return rows


def build(manifests: Sequence[str], out: Path, args: argparse.Namespace) -> dict:
    started = time.time()
    suite = json.loads((Path(args.suite) / "suite.json").read_text())
    valid = list(suite["valid_voices"])
    clips = source_clips(manifests, set(valid))
    missing = sorted(set(valid) - set(clips))
    if missing:
        raise ValueError(f"no source clips for validation voices {missing}: pass every realvox manifest")
    out.mkdir(parents=True, exist_ok=True)
    rows = [row for voice in valid for row in short_rows(voice, clips[voice], out, args)]
    linked = {frozenset((a, b)) for part in suite["components"] for a in part for b in part if a != b}
    trials = linked_free_trials(rows, linked, args.trials, args.seed)  # paths relative to the suite folder
    info = {"suite": "realvox-short", "rule": __doc__.split("Rule: ", 1)[1].split("\n\n", 1)[0],
            "voices_from": str(args.suite), "seed": args.seed, "min_s": args.min_s, "max_s": args.max_s,
            "per_voice": args.per_voice}
    return write_suite(out, {"verification": rows}, {"valid": trials}, info, started)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("manifests", nargs="+", help="realvox verification.jsonl files")
    p.add_argument("--suite", default="data/realvox-valid", help="the realvox validation suite: voices and links")
    p.add_argument("--out", default="data/realvox-short")
    p.add_argument("--min-s", type=float, default=0.3)
    p.add_argument("--max-s", type=float, default=2.0)
    p.add_argument("--per-voice", type=int, default=16)
    p.add_argument("--trials", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    info = build(args.manifests, Path(args.out).resolve(), args)
    print(json.dumps(info["counts"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
