"""Writing a suite folder in data/corpus' schema: manifests, VoxCeleb trial lists, suite.json, READY."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.corpus.generate import make_trials
from training.data.manifest import ManifestRow, write_manifest

READY = "READY"


def balanced_trials(rows: Sequence[ManifestRow], count: int, seed: int, tag: str) -> list[str]:
    """``count/2`` same-speaker and as many different-speaker pairs, seeded, no pair twice.

    Same-speaker pairs pick a speaker uniformly, then two of its clips; different-speaker pairs pick
    two distinct speakers uniformly. A speaker with few clips runs out of pairs and the others fill in.
    Paths are the rows' paths as given (relative to the suite folder).
    """
    speakers = {row.speaker for row in rows}
    if len(speakers) < 2 or len(rows) == len(speakers):
        raise ValueError(f"{tag}: trials need a speaker with two clips and two speakers")
    # the corpus' own drawing, so suite and corpus trial lists follow one rule
    return make_trials([{"speaker": row.speaker, "path": row.path} for row in rows], count, seed, tag)


def sha256_of(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def write_suite(out: Path, manifests: dict[str, list[ManifestRow]], trials: dict[str, list[str]],
                info: dict[str, Any], started: float) -> dict[str, Any]:
    """Write ``<name>.jsonl`` per manifest, ``verification_trials_<split>.txt``, suite.json, then READY."""
    (out / READY).unlink(missing_ok=True)
    written = [write_manifest(rows, out / f"{name}.jsonl") for name, rows in manifests.items()]
    for split, lines in trials.items():
        path = out / f"verification_trials_{split}.txt"
        path.write_text("".join(f"{line}\n" for line in lines))
        written.append(path)
    counts: dict[str, Any] = {}
    for name, rows in manifests.items():
        per_split: dict[str, int] = {}
        for row in rows:
            per_split[row.split] = per_split.get(row.split, 0) + 1
        counts[name] = {"clips": len(rows), "hours": round(sum(r.duration_s for r in rows) / 3600, 3),
                        "speakers": len({r.speaker for r in rows}), "per_split": per_split}
    for split, lines in trials.items():
        counts[f"trials_{split}"] = {"trials": len(lines), "same": sum(line.startswith("1 ") for line in lines)}
    summary = {**info, "counts": counts, "manifest_sha256": sha256_of(written),
               "files": {p.name: sha256_of([p]) for p in written}, "build_seconds": round(time.time() - started, 1)}
    (out / "suite.json").write_text(json.dumps(summary, indent=1, sort_keys=False) + "\n")
    (out / READY).write_text(summary["manifest_sha256"] + "\n")
    return summary
