"""Benchmark 5: quality and per-clip latency against the tools users know, on the same clips.

ASR (WER via ``training.metrics.wer`` on ``training.data.manifest.normalize_text``-normalised text,
test split of ``data/corpus/asr.jsonl``):
* ours: the ASR adapter set (``--adapter``, default ``adapters_store/asr-default``) on the backbone;
* full Whisper base ``generate`` (``WhisperForConditionalGeneration`` + ``WhisperProcessor`` from
  ``models/whisper-base``, English, greedy);
* pocketsphinx with its bundled en-US acoustic model, language model and dictionary.

Speaker verification (EER via ``training.metrics.compute_eer`` on a balanced subset of
``data/corpus/verification_trials_test.txt``):
* ours: the verification set (``--verify-adapter``, default ``adapters_store/verify-default``),
  cosine of embeddings;
* resemblyzer's GE2E d-vector encoder (``preprocess_wav`` + ``embed_utterance``), cosine.

Latency is per clip, batch 1, after one warm-up call per system (model loading excluded).
Until the trained sets exist, ``--random-if-missing`` substitutes random sets: their WER / EER are
meaningless (about 1.0 / 0.5) and are labelled as such; the latencies are real.

    python -m benchmarks.quality_baselines --quick [--random-if-missing] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import (
    CORPUS_DIR,
    DEFAULT_BACKBONE,
    REPO_ROOT,
    corpus_rows,
    decode_clip,
    markdown_table,
    percentiles_ms,
    workdir_for,
    write_results,
)
from training.suites.baselines import asr_baselines, speaker_baselines

SAMPLE_RATE = 16000


def timed_map(function: Callable[[np.ndarray], Any], waves: list[np.ndarray]) -> tuple[list[Any], list[float]]:
    function(waves[0])  # warm-up: lazy initialisation, JIT, first allocations
    outputs, seconds = [], []
    for wave in waves:
        started = time.perf_counter()
        outputs.append(function(wave))
        seconds.append(time.perf_counter() - started)
    return outputs, seconds


def load_ours(backbone: str, folder: Path, task: str, device: str, workdir: Path,
              random_if_missing: bool) -> tuple[Any, str, str]:
    """(model, adapter key, label) for the set in ``folder``, or a random set when allowed."""
    from elp import AdapterSet, MultiAdapterModel, load_backbone
    from elp.testing import make_random_adapter_set

    model = MultiAdapterModel(load_backbone(backbone, device=device)).eval()
    if (folder / "adapter_config.json").is_file():
        adapter_set, label = AdapterSet.load(folder, device=device), f"ours ({folder.name})"
    elif random_if_missing:
        adapter_set = make_random_adapter_set(model.backbone, task)
        adapter_set.save(workdir / f"random-{task}")
        label = f"ours: RANDOM {task} set ({folder.name} missing), quality meaningless"
    else:
        raise SystemExit(f"{folder} does not exist yet; pass --random-if-missing to time a random set")
    model.add_adapter_set(task, adapter_set)
    return model, task, label


def asr_systems(args: argparse.Namespace, workdir: Path) -> dict[str, Callable[[np.ndarray], str]]:
    model, key, label = load_ours(args.backbone, args.adapter, "asr", args.device, workdir, args.random_if_missing)
    systems: dict[str, Callable[[np.ndarray], str]] = {
        label: lambda wave: model.predict([torch.from_numpy(wave)], [key])[0].text or ""
    }
    systems.update(asr_baselines(args.baselines, str(REPO_ROOT / DEFAULT_BACKBONE), args.device))
    return systems


def verification_systems(args: argparse.Namespace, workdir: Path) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    model, key, label = load_ours(args.backbone, args.verify_adapter, "verification", args.device, workdir,
                                  args.random_if_missing)
    systems: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        label: lambda wave: model.predict([torch.from_numpy(wave)], [key])[0].embedding.float().numpy()
    }
    systems.update(speaker_baselines(args.baselines, args.device))
    return systems


def asr_rows(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    from training.data.manifest import normalize_text
    from training.metrics import cer, wer

    rows = corpus_rows("asr")[: args.asr_clips]
    waves = [decode_clip((CORPUS_DIR / row.path).read_bytes()) for row in rows]
    references = [normalize_text(row.text or "") for row in rows]
    results = []
    for name, system in asr_systems(args, workdir).items():
        hypotheses, seconds = timed_map(system, waves)
        results.append({"task": "asr", "system": name, "clips": len(waves), "metric": "WER",
                        "value": round(wer(references, hypotheses), 4), "cer": round(cer(references, hypotheses), 4),
                        # one looping hypothesis can dominate corpus WER; the median clip shows the typical one
                        "median_clip_wer": round(float(np.median([wer(r, h) for r, h in zip(references, hypotheses,
                                                                                            strict=True)])), 4),
                        "mean_ms": round(1000 * float(np.mean(seconds)), 1), **percentiles_ms(seconds)})
        print(f"  {results[-1]}", flush=True)
    return results


def balanced_trials(count: int) -> list[Any]:
    from training.data.manifest import read_trials

    trials = read_trials(CORPUS_DIR / "verification_trials_test.txt")
    targets = [t for t in trials if t.label == 1][: count // 2]
    others = [t for t in trials if t.label == 0][: count - len(targets)]
    return targets + others


def verification_rows(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    from training.metrics import compute_eer

    trials = balanced_trials(args.trials)
    paths = sorted({p for t in trials for p in (t.path_a, t.path_b)})
    waves = [decode_clip(Path(p).read_bytes()) for p in paths]
    index = {p: i for i, p in enumerate(paths)}
    labels = [t.label for t in trials]
    results = []
    for name, system in verification_systems(args, workdir).items():
        embeddings, seconds = timed_map(system, waves)
        unit = [e / max(np.linalg.norm(e), 1e-12) for e in embeddings]
        scores = [float(unit[index[t.path_a]] @ unit[index[t.path_b]]) for t in trials]
        results.append({"task": "verification", "system": name, "clips": len(waves), "trials": len(trials),
                        "metric": "EER", "value": round(compute_eer(scores, labels).eer, 4),
                        "mean_ms": round(1000 * float(np.mean(seconds)), 1), **percentiles_ms(seconds)})
        print(f"  {results[-1]}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=str(REPO_ROOT / DEFAULT_BACKBONE),
                        help="backbone folder the sets were trained for (default: the embedded Whisper base)")
    parser.add_argument("--adapter", type=Path, default=REPO_ROOT / "adapters_store" / "asr-default")
    parser.add_argument("--verify-adapter", type=Path, default=REPO_ROOT / "adapters_store" / "verify-default")
    parser.add_argument("--random-if-missing", action="store_true",
                        help="time a random set when a trained one is missing (quality numbers then meaningless)")
    parser.add_argument("--baselines", nargs="*", default=["whisper", "pocketsphinx", "resemblyzer"],
                        choices=["whisper", "pocketsphinx", "resemblyzer"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="12 ASR clips and 40 trials (else 60 and 200)")
    parser.add_argument("--asr-clips", type=int, default=None)
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    args.asr_clips = args.asr_clips or (12 if args.quick else 60)
    args.trials = args.trials or (40 if args.quick else 200)
    with workdir_for(args, "quality") as workdir:
        rows = asr_rows(args, workdir) + verification_rows(args, workdir)
    title = (f"quality vs baselines on the synthetic corpus test split, device {args.device}, latency per clip "
             f"at batch 1 (warm)")
    columns = ["task", "system", "clips", "metric", "value", "median_clip_wer", "cer", "mean_ms", "p50_ms", "p95_ms"]
    write_results("quality_baselines", {"title": title, "rows": rows}, f"{title}\n\n" + markdown_table(rows, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
