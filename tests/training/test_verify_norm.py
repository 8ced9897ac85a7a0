"""training.verify_norm on a cached fixture: the pitch grid and the scorings are computed from the
cache with the served formulas, and the threshold follows the FAR <= 5% rule."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from elp.heads.pooled import append_pitch
from training import verify_norm
from training.data.manifest import ManifestRow, write_manifest


def fixture(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """6 valid speakers x 5 clips and 4 cohort speakers x 3 clips: a direction per speaker plus noise."""
    rng = np.random.default_rng(0)
    store, valid_rows, cohort_rows = {}, [], []
    for index, (speaker, count) in enumerate([(f"v{k}", 5) for k in range(6)] + [(f"c{k}", 3) for k in range(4)]):
        centre, pitch = rng.standard_normal(16), rng.normal()
        for clip in range(count):
            path = tmp_path / f"{speaker}-{clip}.wav"
            sf.write(path, rng.uniform(-0.3, 0.3, 16000).astype(np.float32), 16000)
            voice = torch.nn.functional.normalize(torch.tensor(centre + 0.8 * rng.standard_normal(16)), dim=0)
            store[str(path)] = {"voice": voice.half(), "z": float(pitch + 0.3 * rng.normal())}
            row = ManifestRow(id=path.stem, path=path.name, duration_s=1.0, split="valid", task="verification",
                              speaker=speaker, label=speaker)
            (valid_rows if index < 6 else cohort_rows).append(row)
    cache = tmp_path / "cache.pt"
    torch.save(store, cache)
    paths = [r.path for r in valid_rows]
    lines = [f"{int(a[:2] == b[:2])} {a} {b}" for i, a in enumerate(paths) for b in paths[i + 1:]]
    trials = tmp_path / "trials.txt"
    trials.write_text("\n".join(lines) + "\n")
    return (cache, trials, write_manifest(valid_rows, tmp_path / "valid.jsonl"),
            write_manifest(cohort_rows, tmp_path / "cohort.jsonl"))


def test_choose_scores_the_cache_with_the_served_formulas(tmp_path: Path) -> None:
    cache, trials, valid, cohort = fixture(tmp_path)
    args = argparse.Namespace(cache=cache, valid=[f"part={trials}"], synthetic_valid=None, cohort=str(cohort),
                              pitch=(0.3, 1.0), served_pitch=(0.3, 1.0), top_k=[4], speakers=[str(valid)],
                              current_threshold=0.5, centre_dims=[3])
    out = verify_norm.choose(args)
    assert len(out["pitch_grid"]) == 1 + 5 * 4 and out["cohort_clips"] == 12
    assert set(out["scoring"]) == {"cosine", "centred", "centred-first-3", "s-norm", "as-norm-4"}
    # the cosine row at (0.3, 1.0) is the EER of the fused embeddings, computed here by hand
    store = torch.load(cache)
    from training.verify_calibrate import read_speech_trials

    parsed = read_speech_trials(str(trials), True)

    def fused(p: str) -> torch.Tensor:
        return append_pitch(store[p]["voice"].float()[None], torch.tensor([store[p]["z"]]), 0.3, 1.0)[0]

    scores = np.array([float(fused(t.path_a) @ fused(t.path_b)) for t in parsed])
    labels = np.array([t.label for t in parsed])
    expected = verify_norm.figures(scores, labels)
    assert out["scoring"]["cosine"]["pooled"]["eer"] == expected["eer"]
    assert expected["far"] <= 5.0  # the threshold rule: FAR <= 5% on these trials
    grid_row = next(r for r in out["pitch_grid"] if (r["weight"], r["angle"]) == (0.3, 1.0))
    assert grid_row["pooled"] == expected["eer"]
    assert out["pitch_choice"]["best"]["eer"] <= out["pitch_choice"]["served"]["eer"]
    assert out["scoring"]["s-norm"]["pooled"]["spread_vs_cosine"] >= 0.0
    at_half = verify_norm.figures(scores, labels, 0.5)
    assert out["scoring"]["cosine"]["pooled"]["at_current_threshold"] == at_half
