"""The benchmark statistics (round-robin order, medians with spread, ratios, the plot) and one real
interleaved throughput run on a tiny backbone: every system at every point in every repeat."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import benchmarks.common as common
from benchmarks import stats, throughput


def test_round_robin_puts_every_system_first_once() -> None:
    systems = ["elp", "elp_length", "naive"]
    firsts = [stats.round_robin(systems, turn)[0] for turn in range(3)]
    assert sorted(firsts) == sorted(systems)
    assert sorted(stats.round_robin(systems, 5)) == sorted(systems)


def test_median_rows_report_median_and_spread_per_point() -> None:
    runs = [{"system": "a", "concurrency": 1, "req_per_s": value} for value in (3.0, 9.0, 4.0)]
    runs += [{"system": "a", "concurrency": 16, "req_per_s": 10.0}]
    rows = stats.median_rows(runs, ("system", "concurrency"), ("req_per_s",))
    assert rows[0] == {"system": "a", "concurrency": 1, "repeats": 3, "req_per_s": 4.0, "req_per_s_min": 3.0,
                       "req_per_s_max": 9.0}
    assert rows[1]["repeats"] == 1


def test_ratio_table_gives_growth_with_load_and_ratios_to_the_baselines() -> None:
    rows = [{"system": s, "concurrency": c, "req_per_s": v} for s, c, v in (
        ("elp", 1, 4.0), ("elp", 16, 6.0), ("elp", 64, 6.6), ("naive", 1, 2.0), ("naive", 16, 2.0),
        ("naive", 64, 1.0), ("elp_length", 1, 4.0), ("elp_length", 16, 5.0), ("elp_length", 64, 3.3))]
    table = {row["system"]: row for row in stats.ratio_table(rows, ("naive", "elp_length", "per_task"))}
    assert table["elp"]["c16/c1"] == 1.5 and table["elp"]["c64/c16"] == 1.1
    assert table["elp"]["vs naive c64"] == 6.6 and table["elp"]["vs elp_length c64"] == 2.0
    assert "vs naive c1" not in table["naive"]


def test_the_plot_is_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rows = stats.median_rows([{"system": "elp", "concurrency": c, "req_per_s": 2.0 * c, "p95_ms": 100.0 * c}
                              for c in (1, 4, 16)], ("system", "concurrency"), ("req_per_s", "p95_ms"))
    path = stats.plot_points(rows, tmp_path / "plot.png", "test")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_throughput_run_interleaves_systems_and_repeats(tiny_store: tuple[Path, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(throughput, "RESULTS_DIR", tmp_path / "results")
    backbone = tiny_store[0]
    assert throughput.main(["--backbone", str(backbone), "--systems", "elp", "elp_length", "--concurrency", "1", "2",
                            "--requests", "2", "--repeats", "2", "--clips", "4", "--workdir", str(tmp_path),
                            "--server-arg=--torch-threads=1"]) == 0
    document = json.loads((tmp_path / "results" / f"throughput-{backbone.name}.json").read_text())
    points = [(run["repeat"], run["concurrency"], run["system"]) for run in document["runs"]]
    assert len(points) == 2 * 2 * 2 and len(set(points)) == len(points)
    # round-robin: the first system at a point changes between repeats
    assert points[0][2] != points[4][2]
    assert all(run["errors"] == 0 for run in document["runs"])
    assert {row["repeats"] for row in document["rows"]} == {2}
    assert document["load_start"]["loadavg"] and document["load_end"]["loadavg"]
    assert {row["system"] for row in document["ratios"]} == {"elp", "elp_length"}
    if document["plot"]:
        assert (tmp_path / "results" / document["plot"]).is_file()



def test_overhead_runs_each_batch_policy_after_one_shared_raw_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The interleaving alone, with the processes, the raw loop and the load replaced by recorders."""
    import argparse
    import contextlib

    from benchmarks import overhead

    calls: list[tuple] = []
    started: list[list[str]] = []

    @contextlib.contextmanager
    def fake_processes(commands: list) -> object:
        started.extend(argv for argv, _, _ in commands)
        yield [argparse.Namespace(pid=1000 + index) for index in range(len(commands))]

    async def fake_load(*args: object, **kwargs: object) -> None:
        return None

    def fake_raw(*args: object) -> dict:
        calls.append(("raw",))
        return {"raw_mixed_rows_per_s": 10.0 * len(calls)}

    def fake_raw_plan(*args: object) -> dict:
        return {"raw_plan_rows_per_s": 12.0}

    def fake_server(port: int, *args: object) -> dict:
        calls.append(("server", port))
        return {"server_rows_per_s": 9.0}

    monkeypatch.setattr(overhead, "started_processes", fake_processes)
    monkeypatch.setattr(overhead, "run_load", fake_load)
    monkeypatch.setattr(overhead, "raw_point", fake_raw)
    monkeypatch.setattr(overhead, "raw_plan_point", fake_raw_plan)
    monkeypatch.setattr(overhead, "server_load", fake_server)
    args = argparse.Namespace(batch_policies=["cost", "length"], device="cpu", server_arg=[], repeats=2, seed=0)
    clips = [common.Clip("a", b"", 1.0), common.Clip("b", b"", 2.0)]
    runs = overhead.interleaved_points(None, [None, None], Path("backbone"), Path("store"), clips, 8, args, 2)
    policies = [argv[argv.index("--batch-policy") + 1] for argv in started]
    assert policies == ["cost", "length"] and all("--max-batch-size" in argv for argv in started)
    assert [call[0] for call in calls] == ["raw", "server", "server", "raw", "server", "server"]
    assert [run["batch_policy"] for run in runs] == ["cost", "length", "length", "cost"]  # round-robin
    for repeat in (0, 1):  # both policies of a repeat divide by the same raw figure
        assert len({run["raw_mixed_rows_per_s"] for run in runs if run["repeat"] == repeat}) == 1
    assert runs[0]["served_fraction"] == round(9.0 / 12.0, 3)  # against the raw model on the same rows
    assert runs[0]["served_vs_grouped"] == round(9.0 / runs[0]["raw_mixed_rows_per_s"], 3)


def test_the_served_fraction_reference_runs_the_rows_the_server_is_sent() -> None:
    """The raw reference replays the load's request plan (verify = two rows), B rows at a time, sorted
    by length within each window of 2B requests; not the shortest rows (the former reference)."""
    import torch

    from benchmarks import loadgen, overhead

    clips = [common.Clip(f"c{i}", b"", 1.0 + i) for i in range(10)]
    waveforms = {clip.name: torch.zeros(int(clip.duration_s * 100)) for clip in clips}
    plan = loadgen.request_plan(clips, 12, seed=3)
    batches = overhead.plan_batches(plan, waveforms, batch_size=4)
    sent = sorted(len(waveforms[clip.name]) for request in plan for clip in request.clips)
    assert sorted(len(w) for batch, _ in batches for w in batch) == sent
    assert any(request.task == "verify" for request in plan) and len(sent) > len(plan)
    assert all(len(batch) == len(keys) <= 4 for batch, keys in batches)
    first_window = [w for batch, _ in batches[:2] for w in batch]  # requests 0-7 hold >= 8 rows
    assert [len(w) for w in first_window] == sorted(len(w) for w in first_window)
    task_of_key = {adapter_id: task for task, adapter_id in common.DEFAULT_IDS.items()}
    assert {task_of_key[key] for _, keys in batches for key in keys} <= set(common.DEFAULT_IDS)

@pytest.mark.slow
def test_overhead_interleaves_batch_policies_against_one_raw_figure(tiny_store: tuple[Path, Path], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import overhead

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    backbone = tiny_store[0]
    assert overhead.main(["--backbone", str(backbone), "--quick", "--batch-sizes", "2", "--repeats", "2",
                          "--clips", "8", "--batch-policies", "cost", "length", "--workdir", str(tmp_path),
                          "--server-arg=--torch-threads=1"]) == 0
    document = json.loads((tmp_path / "results" / f"overhead-{backbone.name}.json").read_text())
    points = [(run["repeat"], run["batch_policy"]) for run in document["runs"]]
    assert sorted(points) == [(0, "cost"), (0, "length"), (1, "cost"), (1, "length")]
    assert points[0][1] != points[2][1]  # round-robin: a different policy first each repeat
    for repeat in (0, 1):  # both policies of a repeat are divided by the same raw loop
        raws = {run["raw_mixed_rows_per_s"] for run in document["runs"] if run["repeat"] == repeat}
        assert len(raws) == 1
    assert all(run["server_errors"] == 0 and run["served_fraction"] > 0 for run in document["runs"])
    assert [(row["batch_policy"], row["repeats"]) for row in document["rows"]] == [("cost", 2), ("length", 2)]


def test_set_latency_times_every_system_on_every_clip_each_round_in_rotating_order() -> None:
    import numpy as np

    from benchmarks import set_latency

    calls: list[str] = []
    systems = {name: (lambda wave, name=name: calls.append(name)) for name in ("a", "b", "c")}
    waves = [np.zeros(16000 * s, dtype=np.float32) for s in (1, 2, 3)]
    result = set_latency.interleaved(systems, waves, rounds=3, threads=1)
    assert len(calls) == 3 * 2 + 3 * 3 * 3  # the warm-up on two clips, then every clip every round
    firsts = [calls[6 + 9 * turn] for turn in range(3)]
    assert sorted(firsts) == ["a", "b", "c"]  # a different system first each round
    assert [row["system"] for row in result["rows"]] == ["a", "b", "c"] and len(result["rounds"]) == 3
    assert all(row["ms_min"] <= row["ms_per_clip"] <= row["ms_max"] for row in result["rows"])
    assert "3 corpus clips of 1.0-3.0 s, 3 interleaved rounds" in result["title"]


def test_the_shipped_system_serves_the_repos_store_on_the_embedded_backbone_only(tiny_store, tmp_path) -> None:
    """``elp_shipped`` is the user's default server: the shipped sets need the checkpoint they were trained on, and
    its enrolments go to the run's folder, never beside the repository's store."""
    from benchmarks.common import prepare_backbone

    with pytest.raises(SystemExit, match="--backbone whisper-base"):
        throughput.system_commands("elp_shipped", tiny_store[0], tmp_path, "cpu", [])
    embedded = prepare_backbone("whisper-base", tmp_path)
    [(argv, _, port)], ports = throughput.system_commands("elp_shipped", embedded, tmp_path, "cpu", [])
    assert argv[argv.index("--adapters-dir") + 1] == str(throughput.SHIPPED_STORE)
    speakers = [argv[i + 1] for i, flag in enumerate(argv) if flag == "--speakers-dir"]
    assert speakers[-1] == str(tmp_path / f"speakers-shipped-{port}")
    assert len(speakers) == 1  # one flag, not a second one that argparse happens to prefer
    assert set(ports.values()) == {port}
    variants = throughput.parse_variants(["elp_shipped_arena=MALLOC_ARENA_MAX=2 --torch-threads 1"])
    [(argv, env, _)], _ = throughput.system_commands("elp_shipped_arena", embedded, tmp_path, "cpu", [], variants)
    assert env == {"MALLOC_ARENA_MAX": "2"} and "--torch-threads" in argv
    assert argv[argv.index("--adapters-dir") + 1] == str(throughput.SHIPPED_STORE)
