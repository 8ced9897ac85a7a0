"""Benchmark: what one clip costs each adapter set as served (batch 1), any task, rounds interleaved.

Why beside ``asr_latency``: a set's cost is not only its encoder pass; a speaker set with a voice
branch also runs its own network on the row's samples (``elp.heads.voice``, ``elp.heads.ge2e``).
Each ``--adapter`` is loaded on its own model at each ``--dtype``; every round times every system on
the same 1-10 s corpus clips, a different system first each round. ``--resemblyzer`` adds resemblyzer's
own pipeline (level, voice-detector trimming, GE2E) as the tool a user would otherwise run. Reported:
the median over rounds of each system's mean ms a clip, min-max, and the ratio to the first system.

    python -m benchmarks.set_latency --adapter adapters_store/verify-default data/candidates/verify-ge2e \
        [--dtype auto] [--clips 20] [--rounds 3] [--resemblyzer] [--name set-latency]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import DEFAULT_BACKBONE, corpus_clips, decode_clip, markdown_table, write_results
from benchmarks.stats import load_note, machine_load, round_robin


def time_round(systems: dict[str, Callable[[np.ndarray], object]], order: list[str],
               waves: list[np.ndarray]) -> dict[str, float]:
    """Mean ms a clip of each system, systems in ``order``."""
    spent = {}
    for name in order:
        start = time.perf_counter()
        for wave in waves:
            systems[name](wave)
        spent[name] = 1000 * (time.perf_counter() - start) / len(waves)
    return spent


def add_timing_options(parser: argparse.ArgumentParser, default_dtype: str) -> None:
    parser.add_argument("--backbone", type=Path, default=DEFAULT_BACKBONE)
    parser.add_argument("--dtype", nargs="+", default=[default_dtype], choices=["float32", "int8", "auto"])
    parser.add_argument("--clips", type=int, default=20, help="corpus clips of 1-10 s")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)


def interleaved(systems: dict[str, Callable[[np.ndarray], object]], waves: list[np.ndarray], rounds: int,
                threads: int) -> dict:
    """Every system on every clip each round, a different one first each round, after a warm-up: rows of
    median / min / max ms a clip, the rounds, the load at start and end and a title."""
    time_round(systems, list(systems), waves[:2])  # warm-up: first calls build caches
    load_at_start = machine_load()
    spent = [time_round(systems, round_robin(list(systems), turn), waves) for turn in range(rounds)]
    load_at_end = machine_load()
    rows = [{"system": name, "ms_per_clip": round(statistics.median(r[name] for r in spent), 1),
             "ms_min": round(min(r[name] for r in spent), 1), "ms_max": round(max(r[name] for r in spent), 1)}
            for name in systems]
    seconds = [len(wave) / 16000 for wave in waves]
    title = (f"One clip at a time, {len(waves)} corpus clips of {min(seconds):.1f}-{max(seconds):.1f} s, "
             f"{rounds} interleaved rounds, {threads} threads (median, min-max)")
    return {"title": title, "load_start": load_at_start, "load_end": load_at_end, "rows": rows, "rounds": spent}


def served_model(backbone_dir: Path, adapter_dir: Path, dtype: str, asr_rescoring: bool = False,
                 rescoring_dtype: str | None = None) -> Any:
    """A model holding the set (key: its folder's name) as the server prepares it, on the encoder at ``dtype``
    (``asr_rescoring``: the server's ``ELP_ASR_RESCORING``, its decoder in ``rescoring_dtype`` or this CPU's
    native precision)."""
    from elp import MultiAdapterModel, load_backbone
    from training.evaluate import served_set

    model = MultiAdapterModel(load_backbone(str(backbone_dir), quantization=None if dtype == "float32" else dtype))
    model.add_adapter_set(adapter_dir.name, served_set(adapter_dir, asr_rescoring, rescoring_dtype, model.backbone))
    return model


def served_system(backbone_dir: Path, adapter_dir: Path, dtype: str) -> Callable[[np.ndarray], object]:
    """One clip's answer from the set as served."""
    model = served_model(backbone_dir, adapter_dir, dtype)
    return lambda wave: model.predict([torch.from_numpy(wave)], [adapter_dir.name])[0]


def resemblyzer_system() -> Callable[[np.ndarray], object]:
    from training.teacher import resemblyzer_teacher

    return resemblyzer_teacher()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", type=Path, nargs="+", required=True, help="adapter set folders (any task)")
    add_timing_options(parser, "auto")
    parser.add_argument("--resemblyzer", action="store_true", help="time resemblyzer's own pipeline too")
    parser.add_argument("--name", default="set-latency", help="results file name (benchmarks/results/NAME.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    waves = [decode_clip(clip.data) for clip in corpus_clips(args.clips)]
    systems = {f"{folder.name} ({dtype})": served_system(args.backbone, folder, dtype)
               for folder in args.adapter for dtype in args.dtype}
    if args.resemblyzer:
        systems["resemblyzer"] = resemblyzer_system()
    result = interleaved(systems, waves, args.rounds, args.threads)
    for row in result["rows"]:
        row["vs_first"] = round(row["ms_per_clip"] / result["rows"][0]["ms_per_clip"], 3)
    table = f"{result['title']}\n{load_note(result['load_start'], result['load_end'])}\n\n" + markdown_table(
        result["rows"], ["system", "ms_per_clip", "ms_min", "ms_max", "vs_first"])
    write_results(args.name, result, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
