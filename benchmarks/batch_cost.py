"""What one model call costs by rows and padded length: the data behind the cost-aware batch policy.

Times ``MultiAdapterModel.predict`` (one random ELP set, float32 unless ``--dtype``) on batches of B
equal clips of L seconds, every (B, L) point once per round in a shuffled order, ``--repeats`` rounds;
reports the fastest and median time per point, rows/s, and the policy's cost model fitted to all the
timings (``server.batch_policy.CostFit``) next to what it predicts. On a shared machine the fastest of
the rounds is the least disturbed one.

    python -m benchmarks.batch_cost [--batch-sizes 1 2 4 8 16] [--lengths 1 2 5 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from typing import Any

import torch

from benchmarks.common import (
    add_common_args,
    backbone_label,
    markdown_table,
    on_model_thread,
    prepare_backbone,
    workdir_for,
    write_results,
)
from benchmarks.stats import load_note, machine_load


def time_grid(model: Any, points: list[tuple[int, float]], repeats: int, seed: int) -> dict[tuple[int, float], list]:
    generator = torch.Generator().manual_seed(seed)
    clip = torch.randn(int(max(length for _, length in points) * 16000), generator=generator) * 0.1
    order = list(points)
    rng = random.Random(seed)
    timings: dict[tuple[int, float], list[float]] = {point: [] for point in points}
    with torch.inference_mode():
        model.predict([clip[:16000]], ["e"])  # warm-up
        for _ in range(repeats):
            rng.shuffle(order)
            for rows, length in order:
                waveform = clip[: int(length * 16000)]
                started = time.perf_counter()
                model.predict([waveform] * rows, ["e"] * rows)
                timings[(rows, length)].append(time.perf_counter() - started)
    return timings


def main(argv: list[str] | None = None) -> int:
    from elp import MultiAdapterModel, load_backbone
    from elp.testing import make_random_adapter_set
    from server.batch_policy import CostFit

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--lengths", type=float, nargs="+", default=[1.0, 2.0, 5.0, 10.0])
    parser.add_argument("--max-audio-s", type=float, default=80.0, help="skip points with more audio per call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "int8"], default="float32")
    args = parser.parse_args(argv)
    points = [(rows, length) for length in args.lengths for rows in args.batch_sizes
              if rows * length <= args.max_audio_s]
    load_at_start = machine_load()
    with workdir_for(args, "batch-cost") as workdir:
        folder = prepare_backbone(args.backbone, workdir)
        backbone = load_backbone(str(folder), device=args.device,
                                 quantization="int8" if args.dtype == "int8" else None)
        model = MultiAdapterModel(backbone).eval()
        model.add_adapter_set("e", make_random_adapter_set(backbone, "emotion", labels=["a", "b"], seed=0))
        timings = on_model_thread(time_grid, model, points, args.repeats, args.seed)
    load_at_end = machine_load()
    fit = CostFit()
    for (rows, length), seconds in timings.items():
        fit.add([(rows, length)], min(seconds))
    cost = fit.model
    rows_out = []
    for (rows, length), seconds in sorted(timings.items(), key=lambda item: (item[0][1], item[0][0])):
        fastest = min(seconds)
        rows_out.append({"length_s": length, "rows": rows, "fastest_ms": round(fastest * 1000, 1),
                         "median_ms": round(statistics.median(seconds) * 1000, 1),
                         "rows_per_s": round(rows / fastest, 2), "ms_per_row": round(fastest / rows * 1000, 1),
                         "predicted_ms": round(cost.call_s(rows, length) * 1000, 1)})
    title = (f"one model call by rows and padded length, backbone {backbone_label(args.backbone)}, {args.dtype}, "
             f"device {args.device}, fastest of {args.repeats} shuffled rounds")
    fitted = (f"fitted cost model (fastest timings): {cost.fixed_s * 1000:.1f} ms per call + "
              f"{cost.per_row_s * 1000:.1f} ms per row-second + {cost.attention_s * 1000:.2f} ms per row-second^2")
    columns = ["length_s", "rows", "fastest_ms", "median_ms", "rows_per_s", "ms_per_row", "predicted_ms"]
    table = f"{title}\n{load_note(load_at_start, load_at_end)}\n{fitted}\n\n" + markdown_table(rows_out, columns)
    write_results(f"batch-cost-{backbone_label(args.backbone)}", {
        "title": title, "load_start": load_at_start, "load_end": load_at_end, "rows": rows_out,
        "cost_model": {"fixed_s": cost.fixed_s, "per_row_s": cost.per_row_s, "attention_s": cost.attention_s},
        "timings": {f"{rows}x{length}": seconds for (rows, length), seconds in timings.items()}}, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
