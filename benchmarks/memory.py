"""Benchmark 3: memory of one backbone + four adapter sets vs four full models, and bytes per set.

Each configuration runs in a fresh child process that loads its models, answers one clip per task
(so inference buffers exist), and reports its RSS:

* ``elp``: one backbone + the four task sets in one ``MultiAdapterModel``;
* ``4 models, 1 process``: four backbone copies (own weights: N(0, 1e-3) perturbed, as per-task
  fine-tuned models would have), each with its task's set;
* ``4 models, 4 processes``: the per-task deployment, one process per task (RSS summed);
* ``runtime only``: python + torch + transformers imported, no model (the fixed cost of a process).

Adapter bytes per task come from the sets on disk: the random sets used here and, when they exist,
the trained ``adapters_store/<task>-default`` sets.

    python -m benchmarks.memory [--backbone wavlm-base-plus]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import (
    DEFAULT_IDS,
    MIB,
    REPO_ROOT,
    add_common_args,
    backbone_label,
    build_random_store,
    default_sets,
    markdown_table,
    perturbed_backbone_copy,
    prepare_backbone,
    workdir_for,
    write_results,
)

TASKS = tuple(DEFAULT_IDS)


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Load ``spec['models']`` = [(backbone folder, store, [task, ...]), ...], run one clip per task."""
    import psutil
    import torch
    import transformers  # noqa: F401  (the runtime every configuration pays for)

    if spec["models"]:
        from elp import AdapterSet, MultiAdapterModel, load_backbone
        from elp.testing import seeded_waveform

        models = []
        for backbone, store, tasks in spec["models"]:
            model = MultiAdapterModel(load_backbone(backbone, device=spec["device"])).eval()
            for task in tasks:
                model.add_adapter_set(task, AdapterSet.load(Path(store) / DEFAULT_IDS[task], device=spec["device"]))
            models.append((model, tasks))
        clip = seeded_waveform(5.0)
        for model, tasks in models:
            for task in tasks:
                model.predict([clip], [task])
    peak_cuda = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0
    return {"rss_bytes": psutil.Process().memory_info().rss, "cuda_peak_bytes": peak_cuda}


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    output = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--child", json.dumps(spec)],
                            cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def set_sizes(store: Path, label: str) -> list[dict[str, Any]]:
    from elp import AdapterSet

    rows = []
    for task, adapter_id in DEFAULT_IDS.items():
        folder = store / adapter_id
        if not (folder / "adapter_model.safetensors").is_file():
            continue
        report = AdapterSet.load(folder).parameter_report()
        rows.append({"sets": label, "task": task, "file_bytes": (folder / "adapter_model.safetensors").stat().st_size,
                     **{k: v for k, v in report.items()}})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    with workdir_for(args, f"memory-{backbone_label(args.backbone)}") as workdir:
        backbone = prepare_backbone(args.backbone, workdir)
        store = build_random_store(backbone, workdir / "store", default_sets())
        copies = []
        for index, task in enumerate(TASKS):
            own = perturbed_backbone_copy(backbone, workdir / f"backbone-{task}", seed=100 + index)
            copies.append((str(own), str(build_random_store(own, workdir / f"store-{task}", {DEFAULT_IDS[task]: task})),
                           [task]))
        device = args.device
        runtime = run_child({"models": [], "device": device})
        elp = run_child({"models": [(str(backbone), str(store), list(TASKS))], "device": device})
        one_process = run_child({"models": copies, "device": device})
        per_process = [run_child({"models": [spec], "device": device}) for spec in copies]
        sizes = set_sizes(store, "random (this run)")
        sizes += set_sizes(REPO_ROOT / "adapters_store", "trained (adapters_store)")

    from elp import load_backbone

    encoder = load_backbone(str(backbone))
    encoder_bytes = sum(p.numel() * p.element_size() for p in encoder.parameters())
    four_processes = sum(r["rss_bytes"] for r in per_process)
    measured = [("runtime only (python+torch+transformers)", 1, runtime["rss_bytes"]),
                ("elp: 1 backbone + 4 adapter sets", 1, elp["rss_bytes"]),
                ("4 full models, 1 process", 1, one_process["rss_bytes"]),
                ("4 full models, 4 processes", 4, four_processes)]
    rows = [{"configuration": name, "processes": count, "rss_mib": round(rss / MIB, 1)}
            for name, count, rss in measured]
    for row in rows[1:]:
        row["vs_elp"] = round(row["rss_mib"] / rows[1]["rss_mib"], 2)
    if device.startswith("cuda"):
        rows[1]["cuda_peak_mib"] = round(elp["cuda_peak_bytes"] / MIB, 1)
        rows[2]["cuda_peak_mib"] = round(one_process["cuda_peak_bytes"] / MIB, 1)
    title = (f"memory, backbone {backbone_label(args.backbone)} ({encoder.identity.model_type} encoder: "
             f"{encoder_bytes / MIB:.1f} MiB of float32 weights), device {device}")
    size_columns = ["sets", "task", "file_bytes", "total", "e_adapters", "l_adapters", "weighted_sum", "p_adapter",
                    "head"]
    table = (f"{title}\n\n" + markdown_table(rows, ["configuration", "processes", "rss_mib", "vs_elp", "cuda_peak_mib"])
             + "\n\nadapter set sizes (parameters per component; file_bytes = safetensors on disk)\n\n"
             + markdown_table(sizes, size_columns))
    write_results(f"memory-{backbone_label(args.backbone)}",
                  {"title": title, "rows": rows, "adapter_sets": sizes, "encoder_bytes": encoder_bytes}, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
