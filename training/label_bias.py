"""Fit the label prior of a decoder label set (``DecoderConfig.label_bias``) on labelled clips.

Why: Whisper's decoder scores ``<|de|>``, ``<|en|>``... after ``<|startoftranscript|>`` with the prior of
its training data, mostly English: on short or telephone-band speech most errors are "en". A bias per label
(the first fixed at 0) moves that prior. It is fitted by class-balanced log-likelihood on the ``--fit-split``
clips of a corpus (never a suite's test clips: the held-out guard of ``--held-out-guard`` runs on them), and
accuracy is reported before and after on ``--check-split``. Nothing else of the set changes.

    python -m training.label_bias adapters_store/language-whisper --corpus data/language/train \
        --fit-split train --check-split valid --held-out-guard training.corpus.languages:check_language_training_rows \
        --out data/candidates/language-whisper-prior
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from elp import AdapterSet, MultiAdapterModel, load_backbone
from training.data.manifest import filter_split, read_manifest
from training.evaluation import predict_rows
from training.suites.guard import DEFAULT_GUARD, guard_named


def label_log_probs(model: MultiAdapterModel, key: str, rows: list, labels: list[str]) -> torch.Tensor:
    """(rows, labels) log-probabilities of the served set (its current bias included)."""
    predictions, _ = predict_rows(model, key, rows)
    return torch.tensor([[predictions[r.id].scores[x] for x in labels] for r in rows]).clamp(min=1e-12).log()


def fit_bias(log_probs: torch.Tensor, targets: torch.Tensor, l2: float = 1e-3, steps: int = 200) -> torch.Tensor:
    """Biases (labels,), the first 0, maximising the class-balanced log-likelihood of ``targets``."""
    labels = log_probs.shape[1]
    counts = torch.bincount(targets, minlength=labels).float()
    weights = (1.0 / counts.clamp(min=1))[targets]
    free = torch.zeros(labels - 1, requires_grad=True)
    optimiser = torch.optim.LBFGS([free], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        bias = torch.cat([torch.zeros(1), free])
        loss = -(weights * (log_probs + bias).log_softmax(-1)[torch.arange(len(targets)), targets]).sum()
        loss = loss / weights.sum() + l2 * free.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return torch.cat([torch.zeros(1), free.detach()])


def accuracy(log_probs: torch.Tensor, targets: torch.Tensor, bias: torch.Tensor) -> dict[str, float]:
    guesses = (log_probs + bias).argmax(-1)
    per_class = [float((guesses[targets == c] == c).float().mean()) for c in targets.unique()]
    return {"accuracy": round(float((guesses == targets).float().mean()), 4),
            "unweighted_accuracy": round(sum(per_class) / len(per_class), 4), "n": int(targets.numel())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("adapter", help="a decoder label set (elp.convert.whisper_decoder_set --labels)")
    p.add_argument("--corpus", required=True, help="a corpus folder with <task>.jsonl")
    p.add_argument("--fit-split", default="train")
    p.add_argument("--check-split", default="valid")
    p.add_argument("--held-out-guard", default=DEFAULT_GUARD, metavar="MODULE:FUNC",
                   help="the check that refuses held-out rows among the fit rows (as training.cached)")
    p.add_argument("--backbone", default="models/whisper-base")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    source = AdapterSet.load(args.adapter)
    decoder = source.config.decoder
    if decoder is None or not decoder.label_ids:
        raise SystemExit(f"{args.adapter} is not a decoder label set")
    labels = list(source.config.labels or [])
    rows = read_manifest(Path(args.corpus) / f"{source.task}.jsonl")
    fit_rows, check_rows = filter_split(rows, args.fit_split), filter_split(rows, args.check_split)
    guard_named(args.held_out_guard)(fit_rows)
    unbiased = AdapterSet(dataclasses.replace(source.config, decoder=dataclasses.replace(decoder, label_bias=[])))
    unbiased.load_state_dict(source.state_dict())
    model = MultiAdapterModel(load_backbone(args.backbone))
    model.add_adapter_set("set", unbiased.eval())
    fit_lp, check_lp = (label_log_probs(model, "set", r, labels) for r in (fit_rows, check_rows))
    fit_t, check_t = (torch.tensor([labels.index(r.label) for r in rs]) for rs in (fit_rows, check_rows))
    bias = fit_bias(fit_lp, fit_t)
    zero = torch.zeros(len(labels))
    report = {"bias": dict(zip(labels, [round(float(b), 4) for b in bias], strict=True)),
              "fit": {"before": accuracy(fit_lp, fit_t, zero), "after": accuracy(fit_lp, fit_t, bias)},
              "check": {"before": accuracy(check_lp, check_t, zero), "after": accuracy(check_lp, check_t, bias)}}
    print(json.dumps(report, indent=1))
    fitted = AdapterSet(dataclasses.replace(source.config, decoder=dataclasses.replace(
        decoder, label_bias=[round(float(b), 4) for b in bias])))
    fitted.load_state_dict(source.state_dict())
    fitted.config.training = (fitted.config.training or {}) | {"label_bias": report | {
        "corpus": args.corpus, "fit_split": args.fit_split, "check_split": args.check_split}}
    fitted.save(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
