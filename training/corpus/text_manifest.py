"""``python -m training.corpus.text_manifest``: a corpus' ASR manifest for ``elp-add-lm`` without synthesising it.

Why: an LM learns from the training *transcripts*, which the corpus plan (``training.corpus.plan``) fixes without any
audio. ``asr-default``'s LM is built from scale ``full-wide``'s 14,626 training transcripts, but a machine may hold
only the smaller generated corpus (``full``: the same valid and test clips, by the same ids). This writes a manifest
with the plan's training rows (text only: their audio is never read by ``elp-add-lm``) beside the generated corpus'
own valid and test rows, whose audio chooses and scores the LM. Each of those must be the plan's (same id, same
text), or nothing is written.

    python -m training.corpus.text_manifest --scale full-wide --corpus data/corpus --out data/corpus-wide-text
    elp-add-lm adapters_store/asr-default --corpus data/corpus-wide-text ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.corpus.plan import SCALES, make_plan
from training.data.manifest import ManifestRow, filter_split, read_manifest, write_manifest


def text_manifest(scale: str, seed: int, corpus: Path) -> list[ManifestRow]:
    """The plan's training rows (placeholder duration; the path their audio would have) and the corpus' valid and
    test rows, checked to be the plan's."""
    _, clips, _ = make_plan(seed, scale)
    generated = read_manifest(corpus / "asr.jsonl")
    planned = {clip.id: clip.text for clip in clips if clip.split != "train"}
    held_out = [row for row in generated if row.split != "train"]
    mismatched = [row.id for row in held_out if planned.get(row.id) != row.text]
    if mismatched or not held_out:
        raise SystemExit(f"{corpus} was not generated from this plan (scale {scale}, seed {seed}): "
                         f"{len(mismatched)} of its {len(held_out)} valid/test rows are not the plan's")
    train = [ManifestRow(id=clip.id, path=str(corpus.resolve() / clip.path), duration_s=1.0, split="train",
                         task="asr", speaker=clip.speaker.id, text=clip.text, meta={"text_only": True})
             for clip in clips if clip.split == "train" and clip.text]
    return train + held_out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="full-wide")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"), help="a generated corpus of the same seed")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    rows = text_manifest(args.scale, args.seed, args.corpus)
    write_manifest(rows, args.out / "asr.jsonl")
    counts = {split: len(filter_split(rows, split)) for split in ("train", "valid", "test")}
    print(json.dumps({"out": str(args.out / "asr.jsonl"), **counts}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
