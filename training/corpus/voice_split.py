"""Split a real-voice folder whose lines carry no speaker name into training and validation **voices**.

Why: a game's speech lines come without the name of the actor who reads them, and splitting by scene leaves the
hero and the other main actors on both sides (the thirty-first session found the FOTAQ hero in 83 of 237
validation lines and 2,284 training lines), so a validation figure there rewards more of the same voices. Here
every line gets the real-speaker teacher's embedding (resemblyzer's GE2E d-vector); lines are clustered by average
linkage on cosine distance (agglomerative clustering, as speaker diarization does); whole clusters go to
``valid``, ranked by a seeded hash, until a share of the lines is reached; clusters too small to be a voice are
dropped; and a training line nearer than ``max_train_cosine`` to any validation voice's centroid is dropped too,
so that a clustering slip does not put a validation actor's lines into training.

    python -m training.corpus.voice_split data/skyvox-all --out data/skyvox-voices

The output folder holds ``asr.jsonl`` (rows pointing at the source's audio, ``speaker`` = the voice cluster) and
``voice_split.json`` (clusters, sizes, drops, the nearest training-to-validation cosine).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from training.corpus.realvox import centroid, unit
from training.data.manifest import ManifestRow, read_manifest, stable_order, write_manifest


def voice_clusters(vectors: np.ndarray, merge_above: float) -> np.ndarray:
    """Cluster number per row: average-linkage clusters of unit vectors, merged while the mean cosine between two
    clusters stays above ``merge_above``. Numbered by size (0 the largest), ties by first row, so the numbering
    does not depend on scipy's internal order."""
    from scipy.cluster.hierarchy import fcluster, linkage

    if len(vectors) == 1:
        return np.zeros(1, dtype=int)
    tree = linkage(unit(vectors).astype(np.float64), method="average", metric="cosine")
    raw = fcluster(tree, t=1.0 - merge_above, criterion="distance")
    order = sorted(set(raw.tolist()), key=lambda c: (-int((raw == c).sum()), int(np.argmax(raw == c))))
    renumber = {c: k for k, c in enumerate(order)}
    return np.array([renumber[c] for c in raw.tolist()], dtype=int)


@dataclasses.dataclass
class VoiceSplit:
    """Which cluster each row fell in, which clusters are validation voices, the rows dropped, each row's split
    (None: dropped) and the nearest a kept training row comes to a validation voice's centroid."""

    cluster: np.ndarray
    valid_clusters: list[int]
    too_small: list[int]
    near_valid: list[int]  # training rows dropped by the leakage guard
    splits: list[str | None]
    nearest_train_cosine: float

    def split_of(self, index: int) -> str | None:
        return self.splits[index]


def split_voices(vectors: np.ndarray, valid_share: float, merge_above: float, min_lines: int,
                 max_train_cosine: float, seed: int) -> VoiceSplit:
    """Whole voice clusters to validation until ``valid_share`` of the kept lines; see the module docstring."""
    cluster = voice_clusters(vectors, merge_above)
    sizes = np.bincount(cluster)
    too_small = [c for c in range(len(sizes)) if sizes[c] < min_lines]
    voices = [c for c in range(len(sizes)) if sizes[c] >= min_lines]
    target = valid_share * sum(int(sizes[c]) for c in voices)
    valid: list[int] = []
    taken = 0
    by_name = {f"voice-{c}": c for c in voices}
    for name in stable_order(by_name, seed):
        c = by_name[name]
        if taken + sizes[c] <= target * 1.1:  # a voice that would overshoot by more than a tenth waits
            valid.append(c)
            taken += int(sizes[c])
        if taken >= target * 0.9:
            break
    nearest = np.zeros(len(vectors))  # each row's highest cosine to a validation voice's centroid
    if valid:
        centres = np.stack([centroid(vectors[cluster == c]) for c in valid])
        nearest = (unit(vectors) @ centres.T).max(axis=1)
    splits: list[str | None] = []
    near: list[int] = []
    for i, c in enumerate(cluster.tolist()):
        if c in too_small:
            splits.append(None)
        elif c in valid:
            splits.append("valid")
        elif valid and nearest[i] >= max_train_cosine:
            splits.append(None)
            near.append(i)
        else:
            splits.append("train")
    kept_train = [nearest[i] for i, s in enumerate(splits) if s == "train"]
    return VoiceSplit(cluster=cluster, valid_clusters=sorted(valid), too_small=too_small, near_valid=near,
                      splits=splits, nearest_train_cosine=float(max(kept_train, default=0.0)))


def cached_vectors(cache: Path | None, ids: list[str]) -> np.ndarray | None:
    """The teacher vectors an earlier run saved for exactly these rows, or None."""
    if cache is None or not cache.is_file():
        return None
    saved = np.load(cache)
    return saved["vectors"] if saved["ids"].tolist() == ids else None


def split_folder(source: Path, out: Path, teacher: Callable[[np.ndarray], np.ndarray], valid_share: float,
                 merge_above: float, min_lines: int, max_train_cosine: float, seed: int, task: str = "asr",
                 cache: Path | None = None) -> dict:
    """Split ``source``'s rows by voice into ``out``; ``cache`` (.npz) keeps the teacher's vectors between runs."""
    from training.dataset import load_audio

    rows = sorted(read_manifest(source / f"{task}.jsonl"), key=lambda r: r.id)
    vectors = cached_vectors(cache, [r.id for r in rows])
    if vectors is None:
        vectors = np.stack([teacher(load_audio(str((source / r.path).resolve()))) for r in rows])
        if cache is not None:
            np.savez(cache, ids=np.array([r.id for r in rows]), vectors=vectors)
    plan = split_voices(vectors, valid_share, merge_above, min_lines, max_train_cosine, seed)
    prefix = rows[0].id.split("-")[0] if rows else "voice"
    kept: list[ManifestRow] = []
    for index, (row, split) in enumerate(zip(rows, plan.splits, strict=True)):
        if split is not None:
            voice = f"{prefix}-v{int(plan.cluster[index]):02d}"
            kept.append(dataclasses.replace(row, path=str((source / row.path).resolve()), split=split, speaker=voice,
                                            meta={**row.meta, "scene": row.speaker, "voice_cluster": voice}))
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(kept, out / f"{task}.jsonl")
    sizes = np.bincount(plan.cluster)
    report = {"source": str(source), "lines": len(rows), "voices": int((sizes >= min_lines).sum()),
              "cluster_sizes": sizes.tolist(), "valid_voices": plan.valid_clusters,
              "train_lines": sum(r.split == "train" for r in kept),
              "valid_lines": sum(r.split == "valid" for r in kept),
              "dropped_small_clusters": int(sum(sizes[c] for c in plan.too_small)),
              "dropped_near_valid": len(plan.near_valid),
              "nearest_train_to_valid_cosine": round(plan.nearest_train_cosine, 4),
              "settings": {"valid_share": valid_share, "merge_above": merge_above, "min_lines": min_lines,
                           "max_train_cosine": max_train_cosine, "seed": seed, "teacher": "resemblyzer"}}
    (out / "voice_split.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", help="folder with <task>.jsonl (e.g. a gamevox extraction, labelled)")
    p.add_argument("--out", required=True)
    p.add_argument("--task", default="asr")
    p.add_argument("--valid-share", type=float, default=0.25, help="share of the kept lines held out as voices")
    p.add_argument("--merge-above", type=float, default=0.65,
                   help="average cosine above which clusters merge (low: one game line's d-vector is weak, ~30%% EER)")
    p.add_argument("--min-lines", type=int, default=5, help="smaller clusters are not trusted as a voice: dropped")
    p.add_argument("--max-train-cosine", type=float, default=0.80,
                   help="drop a training line at least this near a validation voice's centroid")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", help="an .npz of the teacher's vectors: read if it holds these rows, else written")
    args = p.parse_args(argv)
    from training.teacher import resemblyzer_teacher

    report = split_folder(Path(args.source), Path(args.out), resemblyzer_teacher(), args.valid_share,
                          args.merge_above, args.min_lines, args.max_train_cosine, args.seed, args.task,
                          Path(args.cache) if args.cache else None)
    print(json.dumps({k: v for k, v in report.items() if k != "cluster_sizes"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
