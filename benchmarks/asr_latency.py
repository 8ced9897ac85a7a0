"""Benchmark: what one clip costs each ASR system a user can pick, alone (batch 1), on the same clips.

Systems: every ``--adapter`` ASR set served by the library as the server runs it (encoder pass, head,
post-processing: ``MultiAdapterModel.predict``), at each ``--dtype`` of the encoder, and full Whisper
base ``generate`` (its own 30 s padded input). Rounds are interleaved (each round times every system
on every clip, a different system first each round); reported: the median over rounds of each
system's mean milliseconds a clip, min-max, and the ratio to Whisper ``generate`` in the same run.

    python -m benchmarks.asr_latency --adapter adapters_store/asr-default adapters_store/asr-whisper \
        [--dtype float32 auto] [--clips 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import DEFAULT_BACKBONE, corpus_clips, decode_clip, markdown_table, write_results
from benchmarks.stats import load_note, machine_load, round_robin

WHISPER = "whisper base generate"


def served_system(backbone_dir: Path, adapter_dir: Path, dtype: str) -> Callable[[np.ndarray], str]:
    from elp import MultiAdapterModel, load_backbone
    from elp.adapter_set import AdapterSet

    quantization = None if dtype == "float32" else dtype
    model = MultiAdapterModel(load_backbone(str(backbone_dir), quantization=quantization))
    model.add_adapter_set(adapter_dir.name, AdapterSet.load(adapter_dir))
    return lambda wave: model.predict([torch.from_numpy(wave)], [adapter_dir.name])[0].text or ""


def time_round(systems: dict[str, Callable[[np.ndarray], str]], order: list[str],
               waves: list[np.ndarray]) -> dict[str, float]:
    """Mean ms a clip of each system, systems in ``order``."""
    spent = {}
    for name in order:
        start = time.perf_counter()
        for wave in waves:
            systems[name](wave)
        spent[name] = 1000 * (time.perf_counter() - start) / len(waves)
    return spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", type=Path, default=DEFAULT_BACKBONE)
    parser.add_argument("--adapter", type=Path, nargs="+", required=True, help="ASR set folders")
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "int8", "auto"])
    parser.add_argument("--clips", type=int, default=20, help="corpus clips of 1-10 s")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from training.suites.baselines import whisper_generate

    waves = [decode_clip(clip.data) for clip in corpus_clips(args.clips)]
    systems = {f"{folder.name} ({dtype})": served_system(args.backbone, folder, dtype)
               for folder in args.adapter for dtype in args.dtype}
    systems[WHISPER] = whisper_generate(str(args.backbone))
    time_round(systems, list(systems), waves[:2])  # warm-up: first calls build caches
    load_at_start = machine_load()
    rounds = [time_round(systems, round_robin(list(systems), turn), waves) for turn in range(args.rounds)]
    load_at_end = machine_load()
    rows = []
    for name in systems:
        values = [spent[name] for spent in rounds]
        rows.append({"system": name, "ms_per_clip": round(statistics.median(values), 1),
                     "ms_min": round(min(values), 1), "ms_max": round(max(values), 1)})
    whisper_ms = next(row["ms_per_clip"] for row in rows if row["system"] == WHISPER)
    for row in rows:
        row["vs_whisper_generate"] = round(row["ms_per_clip"] / whisper_ms, 3)
    seconds = [len(wave) / 16000 for wave in waves]
    title = (f"ASR, one clip at a time, {len(waves)} corpus clips of {min(seconds):.1f}-{max(seconds):.1f} s, "
             f"{args.rounds} interleaved rounds, {args.threads} threads (median, min-max)")
    table = f"{title}\n{load_note(load_at_start, load_at_end)}\n\n" + markdown_table(
        rows, ["system", "ms_per_clip", "ms_min", "ms_max", "vs_whisper_generate"])
    write_results("asr-latency", {"title": title, "load_start": load_at_start, "load_end": load_at_end,
                                  "rows": rows, "rounds": rounds}, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
