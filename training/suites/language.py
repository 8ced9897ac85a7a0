"""Language-ID figures of one adapter set: near (synthetic test sentences) and human (held-out people).

Human is read from ``data/language/human`` (built by :mod:`training.corpus.languages`): real speakers
no training or validation clip comes from. Reported per language, per speaker and per condition
(``asterisk`` telephone prompts, ``ktuberling`` isolated words), with the confusion matrix.

    python -m training.suites.language adapters_store/language-default [--out docs/results/language.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch

from elp import AdapterSet, MultiAdapterModel, load_backbone
from training.data.manifest import ManifestRow, filter_split, read_manifest
from training.evaluation import predict_rows
from training.feature_cache import KEY as CACHE_KEY
from training.feature_cache import encode_rows_cached, outputs_for

KEY = "language"


def accuracy(pairs: list[tuple[str, str]]) -> float:
    return sum(truth == guess for truth, guess in pairs) / len(pairs) if pairs else float("nan")


def summarise(rows: list[ManifestRow], guesses: dict[str, str], labels: list[str]) -> dict:
    """Overall, per-language and per-group accuracy, and the confusion (truth -> guess -> count)."""
    pairs = [(r.label, guesses[r.id]) for r in rows]
    by: dict[str, dict[str, list]] = {"language": defaultdict(list), "speaker": defaultdict(list),
                                      "condition": defaultdict(list)}
    for row, pair in zip(rows, pairs, strict=True):
        by["language"][row.label].append(pair)
        by["speaker"][f"{row.speaker} ({row.label})"].append(pair)
        by["condition"][str((row.meta or {}).get("kind", "synthetic"))].append(pair)
    per_language = [accuracy(by["language"][lang]) for lang in labels if by["language"][lang]]
    confusion = {lang: dict(Counter(guess for truth, guess in pairs if truth == lang)) for lang in labels}
    return {"n": len(rows), "accuracy": accuracy(pairs),
            "unweighted_accuracy": sum(per_language) / len(per_language) if per_language else float("nan"),
            **{f"by_{name}": {k: {"accuracy": round(accuracy(v), 4), "n": len(v)} for k, v in sorted(groups.items())}
               for name, groups in by.items()},
            "confusion": confusion}


def cached_guesses(model: MultiAdapterModel, adapter_set: AdapterSet, rows: list[ManifestRow],
                   cache_dir: str) -> dict[str, str]:
    """Labels from an encoder pass kept under ``cache_dir`` (fp16, the refit's cache): for sets
    without E/P-adapters the pass is the frozen backbone's, shared by every set evaluated."""
    cache = encode_rows_cached(cache_dir, model, rows)
    labels = adapter_set.config.labels or []
    adapter_set.eval()
    with torch.no_grad():
        logits = torch.cat([outputs_for(adapter_set, cache, [r.path for r in rows[i : i + 32]])
                            for i in range(0, len(rows), 32)])
    return {row.id: labels[int(i)] for row, i in zip(rows, logits.argmax(-1), strict=True)}


def evaluate(adapter: str, backbone: str, corpus: Path, human: Path, cache_dir: str | None = None,
             suites: tuple[str, ...] = ("near", "human"), far: Path = Path("data/far")) -> dict:
    """Served answers (``model.predict``), or with ``cache_dir`` the head on a cached encoder pass."""
    model = MultiAdapterModel(load_backbone(backbone))
    adapter_set = AdapterSet.load(adapter)
    model.add_adapter_set(CACHE_KEY if cache_dir else KEY, adapter_set)
    labels = list(adapter_set.config.labels or [])
    out = {}
    sources = {"near": lambda: filter_split(read_manifest(corpus / "language.jsonl"), "test"),
               "far": lambda: read_manifest(far / "language.jsonl"),  # Kokoro voices (training.suites.far)
               "human": lambda: read_manifest(human / "language.jsonl")}
    for name, read in sources.items():
        if name not in suites:
            continue
        rows = read()
        started = time.perf_counter()
        if cache_dir:
            guesses = cached_guesses(model, adapter_set, rows, cache_dir)
        else:
            guesses = {key: p.label for key, p in predict_rows(model, KEY, rows)[0].items()}
        out[name] = summarise(rows, guesses, labels) | {"seconds": round(time.perf_counter() - started, 1),
                                                        "path": "cached encoder pass" if cache_dir else "predict"}
        print(json.dumps({name: {k: out[name][k] for k in ("n", "accuracy", "unweighted_accuracy", "by_language")}}),
              flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("adapter")
    parser.add_argument("--backbone", default="models/whisper-base")
    parser.add_argument("--corpus", type=Path, default=Path("data/language/train"))
    parser.add_argument("--human", type=Path, default=Path("data/language/human"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--cache-dir", help="score the head on an encoder pass cached here (training.cached's)")
    parser.add_argument("--far", type=Path, default=Path("data/far"))
    parser.add_argument("--suites", nargs="+", choices=["near", "far", "human"], default=["near", "human"])
    args = parser.parse_args(argv)
    result = evaluate(args.adapter, args.backbone, args.corpus, args.human, args.cache_dir, tuple(args.suites),
                      args.far)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
