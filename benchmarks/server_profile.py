"""Where a saturated server spends its CPU: per thread, per request, next to the load generator's own.

Starts one ``python -m server`` (random adapter sets), drives it with the mixed four-task load
(``benchmarks.loadgen``) at ``--concurrency``, and reads every thread's CPU time from
``/proc/<pid>/task`` before and after. Python threads get their names from a py-spy recording taken
during the load (``pip install py-spy``; Python does not name its OS threads); the rest are torch's
OpenMP/MKL threads. Also: the batch time the server's metrics saw (model stage, summed), and the
load generator's CPU per request. The py-spy file (``--py-spy-out``, raw collapsed stacks, sampled
idle threads included) is the profile to read for functions.

    python -m benchmarks.server_profile --batch-size 8 --concurrency 16 --requests 48
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import (
    add_common_args,
    backbone_label,
    build_random_store,
    corpus_clips,
    default_sets,
    free_port,
    prepare_backbone,
    server_command,
    started_processes,
    workdir_for,
)
from benchmarks.loadgen import run_load
from benchmarks.process_tree import tree_cpu_s
from benchmarks.stats import load_note, machine_load

#: the part of the CPU the model stage accounts for (the worker thread and the threads it drives)
OMP_LABEL = "torch OpenMP/MKL threads"


def thread_cpu_s(pid: int) -> Counter:
    """CPU seconds so far per thread id of process ``pid``."""
    tick = os.sysconf("SC_CLK_TCK")
    seconds: Counter = Counter()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        seconds[task.name] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return seconds


def thread_names(py_spy_raw: Path) -> dict[str, str]:
    """Thread id -> Python thread name, from a py-spy ``--format raw --threads`` recording."""
    names = {}
    for line in py_spy_raw.read_text().splitlines():
        match = re.search(r"(?:^|;)thread \((\d+)\): ([^;]+);", line)
        if match:
            names[match.group(1)] = re.sub(r"_\d+$", "", match.group(2))  # pool threads by pool
    return names


def metric_sums(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    pattern = r"^(elp_batch_(?:duration_seconds|size)_(?:sum|count)) (\S+)$"
    return {match.group(1): float(match.group(2)) for match in re.finditer(pattern, text, re.M)}


def profile(url: str, pid: int, args: argparse.Namespace, clips: list, py_spy_out: Path | None) -> dict[str, Any]:
    """One load run at saturation, with every thread's CPU before and after (and py-spy alongside)."""
    beside_python = Path(sys.executable).parent / "py-spy"  # a virtual environment's, not on PATH
    py_spy = shutil.which("py-spy") or (str(beside_python) if beside_python.is_file() else None)
    recorder = None
    if py_spy and py_spy_out is not None:
        recorder = subprocess.Popen([py_spy, "record", "-p", str(pid), "-o", str(py_spy_out), "-f", "raw",
                                     "-r", str(args.rate), "--threads", "--idle"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached before the load starts
    metrics_before, threads_before, server_before = metric_sums(url), thread_cpu_s(pid), tree_cpu_s([pid])
    result = asyncio.run(run_load(lambda task: url, clips, concurrency=args.concurrency,
                                  total_requests=args.requests, seed=args.seed))
    threads_after, server_after, metrics_after = thread_cpu_s(pid), tree_cpu_s([pid]), metric_sums(url)
    if recorder is not None:
        recorder.send_signal(2)  # SIGINT: py-spy writes its file and exits
        recorder.wait(60)
    names = thread_names(py_spy_out) if py_spy_out is not None and py_spy_out.is_file() else {}
    by_name: Counter = Counter()
    for tid, seconds in threads_after.items():
        by_name[names.get(tid, OMP_LABEL if names else "unnamed (no py-spy)")] += seconds - threads_before.get(tid, 0.0)
    requests, summary = args.requests, result.summary()
    batch_s = metrics_after["elp_batch_duration_seconds_sum"] - metrics_before.get("elp_batch_duration_seconds_sum", 0)
    rows = metrics_after["elp_batch_size_sum"] - metrics_before.get("elp_batch_size_sum", 0)
    return {"summary": summary, "elapsed_s": round(result.elapsed_s, 2), "rows": rows,
            "server_cores": round((server_after - server_before) / result.elapsed_s, 2),
            "model_stage_busy": round(batch_s / result.elapsed_s, 3),
            "cpu_ms_per_request": {name: round(1000 * seconds / requests, 1)
                                   for name, seconds in by_name.most_common() if seconds > 0.005},
            "client_cpu_ms_per_req": summary["client_cpu_ms_per_req"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--rate", type=int, default=20, help="py-spy samples per second")
    parser.add_argument("--py-spy-out", type=Path, default=None, help="keep the py-spy recording here")
    parser.add_argument("--server-arg", action="append", default=[], help="extra flag for the server")
    args = parser.parse_args(argv)
    clips = corpus_clips(48, seed=args.seed)
    with workdir_for(args, f"server-profile-{backbone_label(args.backbone)}") as workdir:
        backbone = prepare_backbone(args.backbone, workdir)
        store = build_random_store(backbone, workdir / "store", default_sets())
        port = free_port()
        command = server_command(backbone, store, port, args.device, "--max-batch-size", str(args.batch_size),
                                 "--max-queue", "1024", *args.server_arg)
        with started_processes([(command, {}, port)]) as processes:
            url = f"http://127.0.0.1:{port}"
            asyncio.run(run_load(lambda task: url, clips, concurrency=4, total_requests=8, seed=999))  # warm-up
            load_at_start = machine_load()
            out = args.py_spy_out or workdir / "py-spy.txt"
            found = profile(url, processes[0].pid, args, clips, out)
            load_at_end = machine_load()
    summary = found["summary"]
    print(f"B={args.batch_size} c={args.concurrency} {args.requests} requests ({found['rows']:.0f} rows) in "
          f"{found['elapsed_s']} s: {summary['req_per_s']} req/s, p50 {summary['p50_ms']} ms, "
          f"errors {summary['errors']}")
    print(f"{load_note(load_at_start, load_at_end)}")
    print(f"server {found['server_cores']} cores; model stage busy {found['model_stage_busy']:.0%} of the time")
    print("CPU ms per request by server thread:", found["cpu_ms_per_request"])
    print(f"load generator: {found['client_cpu_ms_per_req']} CPU ms per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
