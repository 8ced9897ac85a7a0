"""Render the intent paraphrase family with the corpus' training and validation voices.

    python -m training.corpus.paraphrase_audio --out data/intent-para --seed 0

Training sentences are spoken by the corpus' *training* speakers, validation sentences by its
*validation* speakers (the same seeded :class:`~training.corpus.plan.Speaker` list as
``training.corpus.generate --scale full``), through the corpus' own synthesis and augmentation
(espeak-ng, flite, festival; level, noise, babble, reverberation), so the only new thing in these
clips is their wording. No test speaker speaks a clip; the output is an intent manifest in the
corpus schema (splits train and valid only) that ``training.cached --extra-corpus`` adds to a refit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

from training.corpus import generate as G
from training.corpus import wordnet
from training.corpus.paraphrase import Paraphrase, family_digest, held_out, paraphrase_family
from training.corpus.plan import SCALES, Clip, Speaker, make_plan, stable_seed

SPLITS = ("train", "valid")


def plan_clips(family: dict[str, list[Paraphrase]], speakers: list[Speaker], seed: int) -> list[Clip]:
    """One clip per sentence, its speaker drawn (seeded) from the corpus speakers of the same split."""
    clips = []
    for split in SPLITS:
        pool = [s for s in speakers if s.split == split]
        if not pool:
            raise ValueError(f"no {split} speakers")
        rng = np.random.default_rng([seed, 31, SPLITS.index(split)])
        for i, sentence in enumerate(family[split]):
            cid = f"para-{split}-{i:05d}"
            clips.append(Clip(cid, split, pool[int(rng.integers(len(pool)))], sentence.text, "intent",
                              intent=sentence.intent,
                              extra={"seed": stable_seed(seed, cid), "paraphrase": sentence}))
    return clips


def manifest_rows(clips: list[Clip], done: dict[str, tuple[float, dict[str, object]]]) -> list[dict[str, object]]:
    """Corpus-schema intent rows; ``meta`` also names the sentence's group, frame, family and filler."""
    rows = []
    for c in clips:
        duration, meta = done[c.id]
        sentence: Paraphrase = c.extra["paraphrase"]  # type: ignore[assignment]
        row = G._entry(c, "intent", c.split, duration, meta)
        row["meta"] = dict(row["meta"], paraphrase={"group": sentence.group, "frame": sentence.frame,  # type: ignore[arg-type]
                                                     "family": sentence.family, "verb": sentence.verb,
                                                     "filler": sentence.filler})
        rows.append(row)
    return rows


def render(out: Path, seed: int, scale: str = "full", workers: int = 2,
           per_intent: dict[str, int] | None = None, log=print,
           family: dict[str, list[Paraphrase]] | None = None) -> dict[str, object]:
    """Render the family (the paraphrase grammar's, or the one given) into ``out`` (audio/<split>/para-*.flac,
    intent.jsonl, paraphrase.json)."""
    started = time.time()
    family = family if family is not None else paraphrase_family(seed, per_intent)
    speakers, _, info = make_plan(0, scale)  # the corpus' voices (seed 0, as data/corpus) and babble talkers
    clips = plan_clips(family, speakers, seed)
    out.mkdir(parents=True, exist_ok=True)
    bank = G._babble_bank(list(info["babble_sentences"]), 0)  # type: ignore[arg-type]
    chunks: list[tuple[str, list[Clip]]] = []
    for synth in ("festival", "flite", "espeak"):
        chosen = sorted((c for c in clips if c.speaker.synth == synth), key=lambda c: (c.speaker.voice, c.id))
        chunks += [(str(out), chosen[i:i + G.CHUNK]) for i in range(0, len(chosen), G.CHUNK)]
    done: dict[str, tuple[float, dict[str, object]]] = {}
    if workers <= 1:
        G._init(bank)
        results = map(G._process_chunk, chunks)
        for result in results:
            done.update({cid: (d, m) for cid, d, m in result})
    else:
        with mp.get_context("fork").Pool(workers, initializer=G._init, initargs=(bank,)) as pool:
            for k, result in enumerate(pool.imap_unordered(G._process_chunk, chunks), 1):
                done.update({cid: (d, m) for cid, d, m in result})
                if k % 10 == 0 or k == len(chunks):
                    log(f"[paraphrase] {k}/{len(chunks)} chunks, {len(done)}/{len(clips)} clips, "
                        f"{time.time() - started:.0f}s")
    rows = manifest_rows(clips, done)
    manifest = out / "intent.jsonl"
    manifest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    held = held_out(seed)
    summary: dict[str, object] = {
        "seed": seed, "speaker_scale": scale, "wordnet": wordnet.available(),
        "counts": {s: len(family[s]) for s in SPLITS},
        "speakers": {s: sorted({c.speaker.id for c in clips if c.split == s}) for s in SPLITS},
        "held_out": {k: sorted(v) for k, v in dataclasses.asdict(held).items()},
        "family_sha256": family_digest(family),
        "manifest_sha256": G.sha256_files([manifest]),
        "audio_sha256": G.sha256_files(sorted(out / c.path for c in clips)),
        "hours": round(sum(d for d, _ in done.values()) / 3600, 4),
    }
    (out / "paraphrase.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    log(f"[paraphrase] done: {len(clips)} clips in {time.time() - started:.0f}s")
    return summary


def subset(source: Path, out: Path, per_intent: dict[str, int]) -> dict[str, int]:
    """A smaller family over the same audio: the first ``per_intent[split]`` of every 2nd clip of each
    intent (then the rest), so the subset keeps the spread of frames; paths point into ``source``.
    For a CPU too busy to encode the whole family: the encoder pass costs more than rendering."""
    rows = [json.loads(line) for line in (source / "intent.jsonl").read_text(encoding="utf-8").splitlines() if line]
    kept: list[dict[str, object]] = []
    for split in SPLITS:
        by_intent: dict[str, list[dict[str, object]]] = {}
        for row in rows:
            if row["split"] == split:
                by_intent.setdefault(str(row["label"]), []).append(row)
        for intent in sorted(by_intent):
            group = by_intent[intent]
            kept += (group[::2] + group[1::2])[: per_intent[split]]
    out.mkdir(parents=True, exist_ok=True)
    prefix = os.path.relpath(source, out)
    lines = [json.dumps(dict(r, path=f"{prefix}/{r['path']}"), ensure_ascii=False) + "\n" for r in kept]
    (out / "intent.jsonl").write_text("".join(lines), encoding="utf-8")
    return {split: sum(r["split"] == split for r in kept) for split in SPLITS}


def _taken_phrasings(seed: int) -> set[str]:
    """Normalised texts a written family may not repeat: every corpus phrasing, every sentence of the paraphrase
    family rendered for training or validation, and every held-out test phrasing."""
    from training.corpus.text import intent_phrasings
    from training.data.manifest import normalize_text
    from training.suites.phrasings import held_out_set

    generated = paraphrase_family(seed)
    taken = {normalize_text(t) for texts in intent_phrasings().values() for t in texts}
    taken |= {normalize_text(p.text) for split in SPLITS for p in generated[split]}
    return taken | {normalize_text(t) for t in held_out_set()}


def handwritten_family(seed: int) -> tuple[dict[str, list[Paraphrase]], list[str]]:
    """The hand-written validation family (``training.corpus.intent_handwritten``) as a valid-only family, without
    any sentence that equals a corpus phrasing, a sentence of the paraphrase family rendered for training, or a
    held-out test phrasing; and the dropped texts."""
    from training.corpus import intent_handwritten

    kept, dropped = intent_handwritten.family(_taken_phrasings(seed))
    valid = [Paraphrase(text, intent, "handwritten", f"handwritten/{i:03d}", "handwritten", "", "|")
             for i, (text, intent) in enumerate(kept)]
    return {"train": [], "valid": valid}, dropped


def written_family(seed: int, copies: int = 1) -> tuple[dict[str, list[Paraphrase]], list[str]]:
    """The hand-written training family (``training.corpus.intent_written``) as a train-only family, each sentence
    ``copies`` times (a voice drawn for each), without any sentence that equals a phrasing
    :func:`_taken_phrasings` lists or a hand-written validation sentence."""
    from training.corpus import intent_handwritten, intent_written

    taken = _taken_phrasings(seed)
    taken |= {intent_handwritten.normalised(t) for texts in intent_handwritten.SENTENCES.values() for t in texts}
    kept, dropped = intent_written.family(taken)
    train = [Paraphrase(text, intent, "written", f"written/{i:03d}", "written", "", "|")
             for _ in range(copies) for i, (text, intent) in enumerate(kept)]
    return {"train": train, "valid": []}, dropped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data/intent-para"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", choices=sorted(SCALES), default="full", help="whose speakers (the corpus' scale)")
    p.add_argument("--train-per-intent", type=int, default=80)
    p.add_argument("--valid-per-intent", type=int, default=10)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--subset-of", type=Path, help="write a smaller manifest over this rendered family's audio "
                                                  "(no synthesis) instead of rendering")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--handwritten", action="store_true",
                       help="render the hand-written validation family (training.corpus.intent_handwritten) instead")
    which.add_argument("--written", action="store_true",
                       help="render the hand-written training family (training.corpus.intent_written) instead")
    p.add_argument("--copies", type=int, default=1, help="with --written: clips of each sentence")
    args = p.parse_args(argv)
    if args.handwritten or args.written:
        family, dropped = handwritten_family(args.seed) if args.handwritten else written_family(args.seed, args.copies)
        print(json.dumps({"dropped": len(dropped)}))  # how many, not which: some may be held-out test phrasings
        summary = render(args.out, args.seed, args.scale, args.workers, log=lambda m: print(m, flush=True),
                         family=family)
        print(json.dumps({k: summary[k] for k in ("counts", "hours", "family_sha256", "manifest_sha256")}))
        return 0
    if args.subset_of:
        counts = subset(args.subset_of, args.out, {"train": args.train_per_intent, "valid": args.valid_per_intent})
        print(json.dumps({"counts": counts}))
        return 0
    summary = render(args.out, args.seed, args.scale, args.workers,
                     {"train": args.train_per_intent, "valid": args.valid_per_intent},
                     log=lambda m: print(m, flush=True))
    print(json.dumps({k: summary[k] for k in ("counts", "hours", "family_sha256", "manifest_sha256")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
