"""Turn a public corpus in its published layout into JSONL manifests.

    python -m training.data.prepare librispeech --root /data/LibriSpeech --out manifests/librispeech
    python -m training.data.prepare voxceleb1   --root /data/voxceleb1   --out manifests/voxceleb1
    python -m training.data.prepare iemocap     --root /data/IEMOCAP     --out manifests/iemocap_f1 --fold 1
    python -m training.data.prepare fsc         --root /data/fsc         --out manifests/fsc

Writes the same file names as the synthetic corpus generator, so a prepared public corpus is a
drop-in replacement for it: ``<out>/<task>.jsonl`` (``asr``, ``verification``, ``emotion`` or
``intent``, all three splits in one file) and, for VoxCeleb1 when a trial list is found,
``<out>/verification_trials_test.txt`` with paths relative to ``<out>``. Corpora for different
tasks can therefore share one ``--out`` folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from training.data.fsc import read_fsc
from training.data.iemocap import read_iemocap
from training.data.librispeech import read_librispeech
from training.data.manifest import (
    SPLITS,
    ManifestError,
    ManifestRow,
    write_manifest,
    write_trials,
)
from training.data.voxceleb import read_voxceleb1, read_voxceleb1_trials

CORPUS_TASK: dict[str, str] = {
    "librispeech": "asr",
    "voxceleb1": "verification",
    "iemocap": "emotion",
    "fsc": "intent",
}
CORPORA: tuple[str, ...] = tuple(CORPUS_TASK)


def build_parser() -> argparse.ArgumentParser:
    """CLI definition, separate so tests and docs can introspect it."""
    p = argparse.ArgumentParser(prog="python -m training.data.prepare", description=__doc__.split("\n")[0])
    p.add_argument("corpus", choices=CORPORA)
    p.add_argument("--root", required=True, type=Path, help="corpus folder in its published layout")
    p.add_argument("--out", required=True, type=Path, help="folder for the JSONL manifests")
    p.add_argument("--subsets", nargs="*", help="librispeech: subset folders to read (default: all)")
    p.add_argument("--fold", type=int, default=1, help="iemocap: test session 1-5")
    p.add_argument(
        "--valid-mode",
        choices=("speaker", "session"),
        default="speaker",
        help="iemocap: validate on one speaker or the whole next session",
    )
    p.add_argument("--split-file", type=Path, help="voxceleb1: iden_split.txt for the identification split")
    p.add_argument(
        "--trials", type=Path, help="voxceleb1: trial list (default: <root>/veri_test2.txt if present)"
    )
    return p


def prepare(args: argparse.Namespace) -> dict[str, Path]:
    """Read the corpus and write its manifest; returns {task or 'trials': written path}."""
    rows: list[ManifestRow]
    if args.corpus == "librispeech":
        rows = read_librispeech(args.root, args.subsets or None)
    elif args.corpus == "voxceleb1":
        rows = read_voxceleb1(args.root, split_file=args.split_file)
    elif args.corpus == "iemocap":
        rows = read_iemocap(args.root, fold=args.fold, valid_mode=args.valid_mode)
    else:
        rows = read_fsc(args.root)
    if not rows:
        raise ManifestError(f"no {args.corpus} clips found under {args.root}")
    written: dict[str, Path] = {}
    task = CORPUS_TASK[args.corpus]
    written[task] = write_manifest(rows, args.out / f"{task}.jsonl")
    if args.corpus == "voxceleb1":
        has_default = any((args.root / d / "veri_test2.txt").is_file() for d in (".", "meta"))
        if args.trials is not None or has_default:
            trials = read_voxceleb1_trials(args.root, args.trials)
            written["trials"] = write_trials(trials, args.out / "verification_trials_test.txt")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; prints per-split counts so a wrong layout shows up immediately."""
    args = build_parser().parse_args(argv)
    try:
        written = prepare(args)
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, path in written.items():
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if name == "trials":
            print(f"trials: {len(lines)} -> {path}")
            continue
        per_split = Counter(json.loads(ln)["split"] for ln in lines)
        counts = ", ".join(f"{s} {per_split.get(s, 0)}" for s in SPLITS)
        print(f"{name}: {len(lines)} rows ({counts}) -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
