"""How enrolled speakers fare at a speaker set's threshold: each voice is enrolled from k of its clips (the mean
embedding, as ``POST /speakers`` stores it) and checked with another of its clips (a genuine probe) and with a
clip of another voice (an impostor probe).

Why: the trial lists score pairs of single clips, but ``/speakers`` enrols several; more clips lift genuine
scores and may lift impostor scores too. The embeddings come from a ``training.verify_norm cache`` (served
embeddings, one clip each), so any set and any k cost arithmetic only. Each voice gets ``--draws`` seeded draws
per k: k enrolment clips and one genuine probe drawn from its clips, one impostor probe from a random other
voice's clips. Only clips in the cache are used (the cache holds the speech-only clips).

    python -m training.verify_enrolment data/candidates/verify-campp-emb.pt \
        --manifest data/realvox-short/verification.jsonl --threshold 0.4995 --clips 1 3 5 --draws 10
    python -m training.verify_enrolment CACHE --manifest M --set adapters_store/verify-default   # its duration table
"""

from __future__ import annotations

import argparse
import functools
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from elp.adapter_files import CONFIG_NAME
from elp.config import AdapterSetConfig
from elp.tasks.verification import served_threshold
from training.data.manifest import ManifestRow, read_manifest


def _cached_clips(manifest: str, store: dict[str, dict]) -> dict[str, list[ManifestRow]]:
    """Each speaker's rows whose clip is in the cache, in manifest order."""
    clips: dict[str, list[ManifestRow]] = defaultdict(list)
    for row in read_manifest(manifest):
        if row.path in store:
            clips[row.speaker].append(row)
    return clips


def voices_of(store: dict[str, dict], manifest: str) -> dict[str, list[torch.Tensor]]:
    """Each speaker's cached unit embeddings, in manifest order (speakers with fewer than 2 clips left out)."""
    return {speaker: [torch.nn.functional.normalize(store[row.path]["voice"].float(), dim=0) for row in rows]
            for speaker, rows in _cached_clips(manifest, store).items() if len(rows) >= 2}


def seconds_of(manifest: str, store: dict[str, dict]) -> dict[str, list[float]]:
    """Each speaker's cached clips' durations, in the order of :func:`voices_of`."""
    return {speaker: [float(row.duration_s) for row in rows]
            for speaker, rows in _cached_clips(manifest, store).items()}


def enrolment_trials(voices: dict[str, list[torch.Tensor]], clips: int, draws: int, seed: int = 0,
                     seconds: dict[str, list[float]] | None = None,
                     threshold_at: Callable[[float], float] | None = None) -> dict:
    """Genuine and impostor probe scores of ``draws`` enrolments from ``clips`` clips per voice that has at
    least ``clips + 1`` clips. With ``seconds`` and ``threshold_at`` (a set's duration table) also each probe's
    threshold, at the shorter of the probe and the enrolment's clips in all (as ``/verify`` judges it)."""
    rng = np.random.default_rng(seed)
    speakers = sorted(voices)
    genuine, impostor, at_genuine, at_impostor = [], [], [], []
    for speaker in speakers:
        own = voices[speaker]
        if len(own) < clips + 1:
            continue
        others = [s for s in speakers if s != speaker]
        for _ in range(draws):
            picked = rng.choice(len(own), size=clips + 1, replace=False)
            enrolled = torch.stack([own[i] for i in picked[:clips]]).mean(dim=0)
            other_speaker = others[rng.integers(len(others))]
            other_index = int(rng.integers(len(voices[other_speaker])))
            probes = ((speaker, int(picked[-1]), genuine, at_genuine),
                      (other_speaker, other_index, impostor, at_impostor))
            for probe_speaker, index, scores, thresholds in probes:
                probe = voices[probe_speaker][index]
                scores.append(float(torch.nn.functional.cosine_similarity(enrolled, probe, dim=0)))
                if seconds is not None and threshold_at is not None:
                    enrolled_s = sum(seconds[speaker][i] for i in picked[:clips])
                    thresholds.append(threshold_at(min(seconds[probe_speaker][index], enrolled_s)))
    out = {"genuine": np.array(genuine), "impostor": np.array(impostor)}
    if threshold_at is not None:
        out |= {"genuine_threshold": np.array(at_genuine), "impostor_threshold": np.array(at_impostor)}
    return out


def rates(trials: dict, threshold: float | None = None) -> dict:
    """Genuine probes rejected and impostor probes accepted (percent) at ``threshold``, or at each probe's own
    threshold when the trials carry them (``threshold`` None); with the counts."""
    genuine, impostor = trials["genuine"], trials["impostor"]
    at_genuine = trials["genuine_threshold"] if threshold is None else threshold
    at_impostor = trials["impostor_threshold"] if threshold is None else threshold
    return {"genuine": int(genuine.size), "impostor": int(impostor.size),
            "genuine_rejected": round(100 * float((genuine < at_genuine).mean()), 1) if genuine.size else None,
            "impostors_accepted": round(100 * float((impostor >= at_impostor).mean()), 1) if impostor.size else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cache", type=Path, help="a training.verify_norm cache of the set's embeddings")
    p.add_argument("--manifest", required=True, help="the voices' clips (speaker = label)")
    chosen = p.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--threshold", type=float, help="one threshold for every probe")
    chosen.add_argument("--set", help="the set whose served thresholds judge each probe (its duration table at the "
                                      "shorter of probe and enrolment, else its one threshold)")
    p.add_argument("--clips", type=int, nargs="+", default=[1, 3, 5], help="enrolment sizes k")
    p.add_argument("--draws", type=int, default=10, help="seeded enrolments per voice and k")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    store = torch.load(args.cache)
    voices, seconds = voices_of(store, args.manifest), seconds_of(args.manifest, store)
    threshold_at = None
    if args.set:
        config = AdapterSetConfig.from_dict(json.loads((Path(args.set) / CONFIG_NAME).read_text(encoding="utf-8")))
        threshold_at = functools.partial(served_threshold, config, {})
    report = {"voices": len(voices), "threshold": args.threshold or args.set,
              "by_clips": {k: rates(enrolment_trials(voices, k, args.draws, args.seed, seconds, threshold_at),
                                    args.threshold) for k in args.clips}}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
