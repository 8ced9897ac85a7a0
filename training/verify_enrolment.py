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
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from training.data.manifest import read_manifest


def voices_of(store: dict[str, dict], manifest: str) -> dict[str, list[torch.Tensor]]:
    """Each speaker's cached unit embeddings, in manifest order (speakers with fewer than 2 clips left out)."""
    voices: dict[str, list[torch.Tensor]] = defaultdict(list)
    for row in read_manifest(manifest):
        if row.path in store:
            voices[row.speaker].append(torch.nn.functional.normalize(store[row.path]["voice"].float(), dim=0))
    return {speaker: clips for speaker, clips in voices.items() if len(clips) >= 2}


def enrolment_trials(voices: dict[str, list[torch.Tensor]], clips: int, draws: int, seed: int = 0) -> dict:
    """Genuine and impostor probe scores of ``draws`` enrolments from ``clips`` clips per voice that has at
    least ``clips + 1`` clips."""
    rng = np.random.default_rng(seed)
    speakers = sorted(voices)
    genuine, impostor = [], []
    for speaker in speakers:
        own = voices[speaker]
        if len(own) < clips + 1:
            continue
        others = [s for s in speakers if s != speaker]
        for _ in range(draws):
            picked = rng.choice(len(own), size=clips + 1, replace=False)
            enrolled = torch.stack([own[i] for i in picked[:clips]]).mean(dim=0)
            other = voices[others[rng.integers(len(others))]]
            for probe, scores in ((own[picked[-1]], genuine), (other[rng.integers(len(other))], impostor)):
                scores.append(float(torch.nn.functional.cosine_similarity(enrolled, probe, dim=0)))
    return {"genuine": np.array(genuine), "impostor": np.array(impostor)}


def rates(trials: dict, threshold: float) -> dict:
    """Genuine probes rejected and impostor probes accepted at ``threshold`` (percent), with the counts."""
    genuine, impostor = trials["genuine"], trials["impostor"]
    return {"genuine": int(genuine.size), "impostor": int(impostor.size),
            "genuine_rejected": round(100 * float((genuine < threshold).mean()), 1) if genuine.size else None,
            "impostors_accepted": round(100 * float((impostor >= threshold).mean()), 1) if impostor.size else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cache", type=Path, help="a training.verify_norm cache of the set's embeddings")
    p.add_argument("--manifest", required=True, help="the voices' clips (speaker = label)")
    p.add_argument("--threshold", type=float, required=True, help="the set's served threshold")
    p.add_argument("--clips", type=int, nargs="+", default=[1, 3, 5], help="enrolment sizes k")
    p.add_argument("--draws", type=int, default=10, help="seeded enrolments per voice and k")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    voices = voices_of(torch.load(args.cache), args.manifest)
    report = {"voices": len(voices), "threshold": args.threshold,
              "by_clips": {k: rates(enrolment_trials(voices, k, args.draws, args.seed), args.threshold)
                           for k in args.clips}}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
