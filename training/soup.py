"""Average the weights of adapter sets fine-tuned from one start ("model soup").

Runs that continue one set with other seeds or learning rates land in the same basin; their
weight average often generalises better than any of them (Wortsman et al., 2022). Tried on the ASR
set: the CPU-trained set and two H200 continuations of it (validation CER 18.2%, 18.3% and 18.3%
alone, 17.4% averaged) gave no better test CER than the start, so that soup was not shipped
(docs/results/h200-asr-continuation.md). Only sets with the same architecture, task, labels and
backbone can be averaged; the result keeps the first set's decoding settings (re-tune them, e.g.
``elp-add-lm``) and records its members instead of their metrics (evaluate it).

    python -m training.soup runs/a/set runs/b/set runs/c/set --out runs/soup
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence
from pathlib import Path

import torch

from elp import AdapterSet

# Config fields that describe a run, not the architecture: members may differ in them.
RUN_FIELDS = ("description", "metrics", "training", "weights_sha256", "language_model", "threshold",
              "duration_thresholds")


def _architecture(adapter_set: AdapterSet) -> dict:
    return {k: v for k, v in adapter_set.config.to_dict().items() if k not in RUN_FIELDS}


def soup(members: Sequence[AdapterSet], weights: Sequence[float] | None = None) -> AdapterSet:
    """The weighted average of ``members`` (equal weights by default), as a new set."""
    if len(members) < 2:
        raise ValueError("a soup needs at least two sets")
    weights = [1.0] * len(members) if weights is None else [float(w) for w in weights]
    if len(weights) != len(members) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError("one non-negative weight per set, not all zero")
    first = _architecture(members[0])
    for index, member in enumerate(members[1:], start=1):
        architecture = _architecture(member)
        if architecture != first:
            differing = sorted(k for k in first if architecture.get(k) != first[k])
            raise ValueError(f"set {index} differs from set 0 in {differing}: only one architecture can be averaged")
    states = [member.state_dict() for member in members]
    total = sum(weights)
    averaged = {}
    for name, tensor in states[0].items():
        if not tensor.is_floating_point() or name.startswith("language_model."):
            averaged[name] = tensor.clone()  # counters and the decoding LM: the first set's, as they are
            continue
        mean = sum(w * state[name].double() for w, state in zip(weights, states, strict=True)) / total
        averaged[name] = mean.to(tensor.dtype)
    result = AdapterSet(copy.deepcopy(members[0].config))
    result.load_state_dict(averaged, strict=True)
    result.config.metrics = {}
    return result.eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sets", nargs="+", help="adapter-set folders (two or more, one architecture)")
    p.add_argument("--out", required=True)
    p.add_argument("--weights", type=float, nargs="+", help="one per set (default: equal)")
    p.add_argument("--description", help="the soup's description (default: names its members)")
    args = p.parse_args(argv)
    members = [AdapterSet.load(folder) for folder in args.sets]
    try:
        result = soup(members, args.weights)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    weights = args.weights or [1.0] * len(members)
    result.config.training = {
        **(members[0].config.training or {}),
        "soup": {"members": list(args.sets), "weights": weights},
    }
    result.config.description = args.description or (
        f"weight average of {len(members)} sets: " + ", ".join(Path(s).as_posix() for s in args.sets)
    )
    result.save(args.out)
    print(f"wrote {args.out}: average of {len(members)} sets, weights {weights}")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    raise SystemExit(main())
