"""Cross-validated search over per-clip fusions of a text-branch intent set (``training.intent_text.fusion_search``).

    python -m training.intent_text.fusion_search --intent adapters_store/intent-default \
        --cache-dir data/cache/intent-para --corpus data/corpus --extra-corpus data/intent-para-50 \
        --transcripts data/candidates/intent-text/transcripts.jsonl data/candidates/intent-text/transcripts-lm.jsonl \
        --acoustic data/candidates/intent-text/acoustic.jsonl --report data/candidates/intent-text/fusion-cv.json

The shipped fusion is one weight for every clip (``log_softmax(acoustic) + w * log_softmax(text)``). This
asks whether the weight should follow how far each branch can be trusted on the clip: branch temperatures,
``w0 + w1 * c`` with an ASR confidence ``c`` of the transcript, a text-only override, per-slot weights. Each
family is a grid; its setting is chosen (accuracy, then log-likelihood) on four fifths of the union of the
validation clips and scored on the fifth left out, over several shuffles, so no clip scores the setting it
chose. Reads validation clips only (their cached encoder pass, for the CTC posteriors); no test clip.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open

from elp import AdapterSet
from elp.text_intent.features import feature_indices, words
from training.intent_text.train import merged_rows, read_jsonl
from training.intent_text.transcripts import cache_file_for, cached_blocks

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0)
SLOT_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)
Candidate = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def ctc_confidences(log_probs: torch.Tensor) -> tuple[float, float]:
    """(mean, min) over the frames whose best symbol is not the blank of that symbol's posterior: how
    sure the recogniser was of the characters it wrote (1.0, 1.0 when it wrote none)."""
    best = log_probs.max(-1)
    emitted = best.values[best.indices != 0].exp()
    if emitted.numel() == 0:
        return 1.0, 1.0
    return float(emitted.mean()), float(emitted.min())


def slot_log_probs(slot_scores: torch.Tensor, incidence: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """Per slot: (clips, intents) log-probability of each intent's value of that slot under the text
    classifier's slot scores (softmax within the slot's values)."""
    out, start = [], 0
    for size in sizes:
        block = slice(start, start + size)
        out.append(slot_scores[:, block].log_softmax(-1) @ incidence[:, block].T)
        start += size
    return out


def candidate_families(clips: dict[str, torch.Tensor]) -> dict[str, list[Candidate]]:
    """Each family's grid of fusions; a fusion maps the clips' tensors to (clips, intents) scores."""
    def tempered(c: dict, name: str, temperature: float) -> torch.Tensor:
        return (c[name] / temperature).log_softmax(-1)

    families: dict[str, list[Candidate]] = {
        "shipped weight (fixed, chosen on all validation)": [
            lambda c: tempered(c, "acoustic", 1) + float(c["shipped_weight"]) * tempered(c, "text", 1)],
        "one weight (shipped form)": [lambda c, w=w: tempered(c, "acoustic", 1) + w * tempered(c, "text", 1)
                                      for w in WEIGHTS],
        "branch temperatures + weight": [
            lambda c, ta=ta, tt=tt, w=w: tempered(c, "acoustic", ta) + w * tempered(c, "text", tt)
            for ta in (0.5, 1, 2, 4) for tt in (0.5, 1, 2, 4, 8) for w in WEIGHTS],
        "per-slot weights": [
            lambda c, a=a, o=o, loc=loc: tempered(c, "acoustic", 1) + a * c["slot_0"] + o * c["slot_1"]
            + loc * c["slot_2"] for a in SLOT_WEIGHTS for o in SLOT_WEIGHTS for loc in SLOT_WEIGHTS],
        "text-only override": [
            lambda c, tt=tt, ta=ta: torch.where(((c["text_max"] > tt) & (c["acoustic_max"] < ta))[:, None],
                                                10 * tempered(c, "text", 1),
                                                tempered(c, "acoustic", 1) + 0.3 * tempered(c, "text", 1))
            for tt in (0.5, 0.7, 0.8, 0.9, 0.95, 0.99) for ta in (0.3, 0.5, 0.7, 0.9, 1.01)],
    }
    for name in ("agree", "ctc_mean", "ctc_min", "known"):
        families[f"w0 + w1 * {name}"] = [
            lambda c, w0=w0, w1=w1, name=name: tempered(c, "acoustic", 1)
            + (w0 + w1 * c[name])[:, None] * tempered(c, "text", 1)
            for w0 in (0, 0.1, 0.2, 0.3, 0.5) for w1 in (-0.5, -0.2, 0, 0.2, 0.5, 1, 2, 3, 5)]
    return families


def _score(fused: torch.Tensor, targets: torch.Tensor) -> tuple[int, float]:
    log_probs = fused.log_softmax(-1)
    return int((log_probs.argmax(-1) == targets).sum()), float(log_probs.gather(1, targets[:, None]).sum())


def cross_validated(outputs: list[torch.Tensor], targets: torch.Tensor, folds: int = 5,
                    shuffles: int = 5) -> torch.Tensor:
    """Per shuffle and clip, 1.0 where the setting chosen on the other folds (accuracy, then
    log-likelihood) answers the clip right: a (shuffles, clips) tensor."""
    count = len(targets)
    correct = torch.zeros(shuffles, count)
    for seed in range(shuffles):
        order = list(range(count))
        random.Random(seed).shuffle(order)
        for k in range(folds):
            held = torch.tensor(sorted(order[k::folds]))
            chosen_on = torch.tensor(sorted(set(range(count)) - set(held.tolist())))
            best = max(range(len(outputs)), key=lambda j: _score(outputs[j][chosen_on], targets[chosen_on]))
            correct[seed, held] = (outputs[best][held].argmax(-1) == targets[held]).float()
    return correct


def search(clips: dict[str, torch.Tensor], targets: torch.Tensor, sources: list[str]) -> list[dict]:
    """Every family's cross-validated accuracy, overall and per source, and its in-sample best."""
    rows = []
    for name, grid in candidate_families(clips).items():
        outputs = [fusion(clips) for fusion in grid]
        correct = cross_validated(outputs, targets).mean(0)
        per_source = {s: round(100 * float(correct[[x == s for x in sources]].mean()), 2) for s in sorted(set(sources))}
        in_sample = max(_score(o, targets) for o in outputs)[0] / len(targets)
        source_mean = sum(per_source.values()) / len(per_source)
        rows.append({"family": name, "settings": len(grid), "cv_accuracy": round(100 * float(correct.mean()), 2),
                     "cv_by_source": per_source, "cv_mean_of_sources": round(source_mean, 2),
                     "in_sample_best": round(100 * in_sample, 2)})
    return rows


def validation_clips(args: argparse.Namespace) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[str]]:
    """The validation clips' acoustic logits, the shipped text branch's scores of their LM transcripts,
    and the per-clip confidences (CTC posteriors from the cached encoder pass)."""
    intent = AdapterSet.load(args.intent).eval()
    branch, labels = intent.text_branch, intent.config.labels or []
    classifier = branch.classifier()
    files = [read_jsonl(path) for path in (*args.transcripts, args.acoustic)]
    by_clip = {(r["source"], r["id"]): r for r in merged_rows(files)}
    rows, confidences = [], []
    with torch.no_grad():
        for source, block in zip([args.corpus, *args.extra_corpus], cached_blocks(args.corpus, args.extra_corpus),
                                 strict=True):
            with safe_open(str(cache_file_for(args.cache_dir, len(block))), "pt") as handle:
                layers = sum(1 for n in handle.keys() if n.startswith("0.") and n[2:].isdigit())  # noqa: SIM118
                for index, row in enumerate(block):
                    if row.split != "valid":
                        continue
                    states = [handle.get_tensor(f"{index}.{k}").float()[None] for k in range(layers)]
                    log_probs = branch(states, torch.tensor([states[0].shape[1]]))[0]
                    rows.append(by_clip[(source, row.id)])
                    confidences.append(ctc_confidences(log_probs))
    texts = [r["asr_lm"] for r in rows]
    slot_scores = torch.stack([classifier.slot_bias + (classifier.slot_weights[idx].sum(0) if idx else 0.0)
                               for idx in (feature_indices(t, classifier.lexicon, classifier.index) for t in texts)])
    sizes = [len({label.split("_")[i] for label in labels}) for i in range(len(intent.config.slot_names or []))]
    acoustic, text = torch.tensor([r["acoustic"] for r in rows]), slot_scores @ classifier.incidence.T
    clips = {"acoustic": acoustic, "text": text, "acoustic_max": acoustic.softmax(-1).max(-1).values,
             "text_max": text.softmax(-1).max(-1).values,
             "shipped_weight": torch.tensor(intent.config.text_branch.text_weight),
             "agree": torch.tensor([float(r["asr"] == r["asr_lm"]) for r in rows]),
             "ctc_mean": torch.tensor([c[0] for c in confidences]),
             "ctc_min": torch.tensor([c[1] for c in confidences]),
             "known": torch.tensor([sum(f"w:{w}" in classifier.index for w in words(t)) / max(1, len(words(t)))
                                    for t in texts])}
    clips |= {f"slot_{i}": lp for i, lp in enumerate(slot_log_probs(slot_scores, classifier.incidence, sizes))}
    targets = torch.tensor([labels.index(r["label"]) for r in rows])
    return clips, targets, [r["source"] for r in rows]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--intent", required=True, help="a set with a text branch (its classifier scores the transcripts)")
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--extra-corpus", action="append", default=[])
    p.add_argument("--transcripts", nargs="+", required=True, help="best path (asr) and LM (asr_lm) transcripts")
    p.add_argument("--acoustic", required=True)
    p.add_argument("--report")
    args = p.parse_args(argv)
    clips, targets, sources = validation_clips(args)
    oracle = (clips["acoustic"].argmax(-1) == targets) | (clips["text"].argmax(-1) == targets)
    result = {"clips": len(targets), "oracle_either_branch": round(100 * float(oracle.float().mean()), 2),
              "families": search(clips, targets, sources)}
    for row in result["families"]:
        print(json.dumps(row), flush=True)
    print(json.dumps({"oracle_either_branch": result["oracle_either_branch"], "clips": result["clips"]}))
    if args.report:
        Path(args.report).write_text(json.dumps(result, indent=1))
    return 0 if math.isfinite(result["oracle_either_branch"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
