"""Choose a verification set's thresholds by clip duration on real-voice validation trials, from cached served
embeddings, and report any trial list under one threshold and under the table.

Why: one threshold cannot serve every duration. Short clips give lower scores to genuine and impostor pairs
alike, so a threshold set on 2-3 s clips rejects most genuine pairs of 1 s clips; and on a telephone channel
impostor scores *rise* with duration, so the same threshold accepts too many impostors of long clips. The
served answer therefore reads a table keyed by the shorter clip's duration (``AdapterSetConfig.
duration_thresholds``; an enrolment counts its clips' total).

Rule (``choose``), per duration bin (``--edges``): each validation population with at least
``--min-impostors`` impostor trials in the bin gives the lowest threshold at which at most ``--max-far`` of its
impostors there are accepted; the bin takes the highest of them (every population then accepts at most
``--max-far`` of its impostors of that duration). A bin no population fills takes the next shorter bin's.
Last, the table is made non-decreasing with duration (a running maximum): a longer clip is never judged more
leniently than a shorter one, so the table errs on the side of refusing impostors. A population is a
comma-separated list of trial files of the same voices and making; crops (``training.verify_crops``) are best
their own population, since their impostor scores differ from natural clips' of the same length.

    python -m training.verify_durations data/candidates/emb.pt --set adapters_store/verify-default \
        --valid human=data/human/verification_trials_valid.txt human_crops=data/verify-crops/human_valid_d0.5.txt \
        realvox=data/realvox-valid/verification_trials_valid.txt,data/realvox-short/verification_trials_valid.txt \
        --edges 0.65 1.0 1.5 2.0 3.0 --write

``--report NAME=FILES`` lists are only scored (test lists belong here, read once the table is written).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from elp import AdapterSet
from training.verify_calibrate import choose_threshold, read_speech_trials
from training.verify_norm import trial_scores


class Population:
    """Scores, labels and shorter-clip durations of one population's trials (speech-only trials)."""

    def __init__(self, store: dict, files: Sequence[str], weight: float, angle: float) -> None:
        trials = [t for f in files for t in read_speech_trials(f, True)]
        missing = {p for t in trials for p in (t.path_a, t.path_b)} - set(store)
        if missing:
            raise SystemExit(f"{len(missing)} clips of {files} are not in the cache, e.g. {sorted(missing)[0]}")
        seconds: dict[str, float] = {}
        for path in {p for t in trials for p in (t.path_a, t.path_b)}:
            seconds[path] = sf.info(path).duration
        self.scores = trial_scores(store, trials, weight, angle, None, None)
        self.labels = np.array([t.label for t in trials])
        self.shorter = np.array([min(seconds[t.path_a], seconds[t.path_b]) for t in trials])


def bin_index(seconds: np.ndarray, starts: Sequence[float]) -> np.ndarray:
    return np.searchsorted(np.asarray(starts), seconds, side="right") - 1


def choose_table(populations: dict[str, Population], edges: Sequence[float], max_far: float,
                 min_impostors: int) -> tuple[list[list[float]], dict]:
    """The duration table of the module docstring, and each bin's populations' own thresholds."""
    starts = [0.0, *edges]
    chosen: list[float | None] = []
    detail = {}
    for index, start in enumerate(starts):
        own = {}
        for name, pop in populations.items():
            inside = bin_index(pop.shorter, starts) == index
            if int((pop.labels[inside] == 0).sum()) >= min_impostors and (pop.labels[inside] == 1).any():
                own[name] = choose_threshold(pop.scores[inside], pop.labels[inside], max_far, 1.0)["threshold"]
        chosen.append(max(own.values()) if own else None)
        detail[f"from {start:g} s"] = {name: round(value, 4) for name, value in own.items()}
    if chosen[0] is None:
        raise SystemExit("no population fills the shortest bin: add short trials (training.verify_crops)")
    table, running = [], float("-inf")
    for start, value in zip(starts, chosen, strict=True):
        running = max(running, value if value is not None else running)
        table.append([start, math.ceil(running * 1e4) / 1e4])  # rounded up: never below the chosen value
    return table, detail


def rates(pop: Population, thresholds: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """Impostors accepted and genuine pairs rejected (percent) where ``mask``, with the counts."""
    mask = np.ones_like(pop.labels, dtype=bool) if mask is None else mask
    accept = pop.scores >= thresholds
    impostor, genuine = mask & (pop.labels == 0), mask & (pop.labels == 1)
    return {"impostors": int(impostor.sum()), "genuine": int(genuine.sum()),
            "far": round(100 * float(accept[impostor].mean()), 1) if impostor.any() else None,
            "frr": round(100 * float((~accept[genuine]).mean()), 1) if genuine.any() else None}


def compare(pop: Population, single: float, table: list[list[float]]) -> dict:
    """Rates under the single threshold and under the table, overall and per bin of the table."""
    starts = [start for start, _ in table]
    bins = bin_index(pop.shorter, starts)
    by_table = np.array([table[i][1] for i in bins])
    flat = np.full(pop.scores.shape, single)
    out = {"all": {"single": rates(pop, flat), "table": rates(pop, by_table)}}
    for index, start in enumerate(starts):
        inside = bins == index
        if inside.any():
            out[f"from {start:g} s"] = {"single": rates(pop, flat, inside), "table": rates(pop, by_table, inside)}
    return out


def named_files(specs: Sequence[str]) -> dict[str, list[str]]:
    out = {}
    for spec in specs:
        name, _, files = spec.partition("=")
        if not files:
            raise SystemExit(f"expected NAME=FILE[,FILE...], got {spec!r}")
        out[name] = files.split(",")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cache", type=Path, help="the set's served embeddings (training.verify_norm cache)")
    p.add_argument("--set", required=True, help="the verification set whose single threshold is compared")
    p.add_argument("--valid", nargs="+", required=True, metavar="NAME=FILES", help="populations that choose")
    p.add_argument("--report", nargs="*", default=[], metavar="NAME=FILES", help="lists only scored")
    p.add_argument("--edges", type=float, nargs="+", default=[0.65, 1.0, 1.5, 2.0, 3.0])
    p.add_argument("--max-far", type=float, default=0.05)
    p.add_argument("--min-impostors", type=int, default=100)
    p.add_argument("--write", action="store_true", help="write the table into the set's adapter_config.json")
    p.add_argument("--json", help="write the report here too")
    args = p.parse_args(argv)
    adapter_set = AdapterSet.load(args.set)
    head = adapter_set.config.head
    store = torch.load(args.cache)
    load = {name: Population(store, files, head.pitch_weight, head.pitch_angle)
            for name, files in named_files(args.valid).items()}
    table, detail = choose_table(load, args.edges, args.max_far, args.min_impostors)
    single = float(adapter_set.config.threshold)
    report = {"table": table, "own_thresholds": detail, "single_threshold": single,
              "valid": {name: compare(pop, single, table) for name, pop in load.items()},
              "report": {name: compare(Population(store, files, head.pitch_weight, head.pitch_angle), single, table)
                         for name, files in named_files(args.report).items()}}
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if args.write:
        adapter_set.config.duration_thresholds = table
        adapter_set.config.training = (adapter_set.config.training or {}) | {"duration_calibration": {
            "rule": f"per bin the strictest validation population's threshold at FAR <= {args.max_far:g} "
                    f"(>= {args.min_impostors} impostors), then a running maximum", "valid": named_files(args.valid)}}
        adapter_set.save(args.set)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
