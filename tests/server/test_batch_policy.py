"""The cost-aware batch policy on hand-made costs and a fake clock: fitting, call splitting, batch
choice against a brute-force optimum, aging (a short clip behind long ones), no starvation under a
sustained stream, and the worker taking an overdue job first with a gated fake model. No timing."""

from __future__ import annotations

import itertools
import random
import threading
import time

import pytest
import torch

from server.batch_policy import CostAwarePolicy, CostFit, CostModel, LengthRatioPolicy, cheapest_split
from server.batching import BatchWorker, InferenceJob
from server.metrics import ServerMetrics

RATE = 100  # samples per second in these tests: lengths read as tenths of a second stay small tensors
#: a CPU-like model: almost no fixed cost, so batching buys nothing and padding costs what it pads
CPU_LIKE = CostModel(fixed_s=0.0005, per_row_s=0.05, attention_s=0.002)
#: a GPU-like model: the fixed (launch) cost dominates
GPU_LIKE = CostModel(fixed_s=0.05, per_row_s=0.002, attention_s=0.0)


def policy_with(model: CostModel, max_rows: int = 8, bound_s: float = 2.0) -> CostAwarePolicy:
    policy = CostAwarePolicy(max_rows, bound_s, sample_rate=RATE)
    policy.fit.model = model
    return policy


def job_of(seconds: float, enqueued_at: float, rows: int = 1) -> InferenceJob:
    return InferenceJob("emotion", [torch.zeros(int(seconds * RATE))] * rows, ["e"] * rows,
                        deadline=enqueued_at + 1e9, enqueued_at=enqueued_at)


def efficiency(jobs: list[InferenceJob], model: CostModel) -> float:
    ordered = sorted(jobs, key=lambda j: j.length)
    lengths = [j.length / RATE for j in ordered]
    seconds, _ = cheapest_split(lengths, [j.rows for j in ordered], model)
    return sum(j.rows * model.work_s(s) for j, s in zip(ordered, lengths, strict=True)) / seconds


def test_the_fit_recovers_hand_made_costs_and_keeps_terms_non_negative() -> None:
    truth = CostModel(fixed_s=0.02, per_row_s=0.05, attention_s=0.004)
    fit = CostFit()
    for rows, seconds in itertools.product((1, 2, 4, 8, 16), (1.0, 2.5, 5.0, 10.0)):
        fit.add([(rows, seconds)], truth.call_s(rows, seconds))
    assert fit.model.fixed_s == pytest.approx(truth.fixed_s, rel=0.03)
    assert fit.model.per_row_s == pytest.approx(truth.per_row_s, rel=0.03)
    assert fit.model.attention_s == pytest.approx(truth.attention_s, rel=0.03)
    # no fixed cost and a slight concavity: least squares alone would give a negative term
    fit = CostFit()
    for rows, seconds in itertools.product((1, 4, 16), (1.0, 5.0, 10.0)):
        fit.add([(rows, seconds)], 0.05 * rows * seconds - 0.0001 * rows * seconds**2)
    assert min(fit.model.fixed_s, fit.model.per_row_s, fit.model.attention_s) >= 0
    assert fit.model.per_row_s == pytest.approx(0.05, rel=0.05)


def test_calibration_times_the_model_and_fits_its_costs() -> None:
    truth = CostModel(fixed_s=0.03, per_row_s=0.04, attention_s=0.001)
    clock = [0.0]

    def predict(waveforms: list[torch.Tensor], keys: list[str]) -> list[None]:
        clock[0] += truth.call_s(len(waveforms), max(w.shape[-1] for w in waveforms) / 16000)
        return [None] * len(waveforms)

    policy = CostAwarePolicy(16, 2.0)
    fitted = policy.calibrate(predict, "e", budget_s=100.0, timer=lambda: clock[0])
    assert fitted.fixed_s == pytest.approx(truth.fixed_s, rel=0.05)
    assert fitted.per_row_s == pytest.approx(truth.per_row_s, rel=0.05)
    # the budget stops it: after the warm-up only one point fits in 0.1 s of fake time
    short = CostAwarePolicy(16, 2.0)
    clock[0] = 0.0
    short.calibrate(predict, "e", budget_s=0.1, timer=lambda: clock[0])
    assert short.fit.observations == 1


def test_rows_split_into_calls_where_padding_costs_more_than_a_call() -> None:
    lengths = [1.0, 1.1, 5.0, 5.2, 9.8]
    _, cpu_starts = cheapest_split(lengths, [1] * 5, CPU_LIKE)
    assert cpu_starts == [0, 1, 2, 3, 4]  # a call costs ~nothing: no padding at all
    _, gpu_starts = cheapest_split(lengths, [1] * 5, GPU_LIKE)
    assert gpu_starts == [0]  # a call costs more than padding everything to 9.8 s
    mid = CostModel(fixed_s=0.05, per_row_s=0.05, attention_s=0.0)
    seconds, starts = cheapest_split(lengths, [1] * 5, mid)
    assert starts == [0, 2, 4]  # 1-1.1 s, 5-5.2 s, 9.8 s
    assert seconds == pytest.approx(3 * 0.05 + 2 * 0.05 * 1.1 + 2 * 0.05 * 5.2 + 0.05 * 9.8)


@pytest.mark.parametrize("model", [CPU_LIKE, GPU_LIKE, CostModel(0.05, 0.05, 0.0), CostModel(0.2, 0.01, 0.01)])
def test_the_chosen_batch_is_as_efficient_as_the_best_of_every_subset(model: CostModel) -> None:
    rng = random.Random(7)
    policy = policy_with(model, max_rows=4, bound_s=1e9)  # no latency cap: pure throughput
    for _ in range(20):
        window = [job_of(rng.choice([1.0, 1.2, 3.0, 5.0, 5.5, 9.0]), enqueued_at=i, rows=rng.choice([1, 1, 2]))
                  for i in range(7)]
        chosen = policy.choose(window, now=10.0)
        best = max(efficiency(list(subset), model) for size in range(1, 5)
                   for subset in itertools.combinations(window, size) if sum(j.rows for j in subset) <= 4)
        assert efficiency(chosen, model) >= best * (1 - 0.03) - 1e-9
        assert sum(j.rows for j in chosen) <= 4


def test_cpu_like_costs_give_one_row_batches_and_gpu_like_costs_full_ones() -> None:
    window = [job_of(2.0, enqueued_at=i) for i in range(8)]
    cpu = policy_with(CPU_LIKE)
    assert cpu.choose(window, now=8.0) == [window[0]]  # batching buys < 3 %: the oldest alone
    assert not cpu.worth_waiting(window[:1])
    gpu = policy_with(GPU_LIKE)
    assert gpu.choose(window, now=8.0) == window  # all 8 rows: the launch cost is shared
    assert gpu.worth_waiting(window[:2])


def test_no_batch_is_predicted_to_run_past_half_the_bound() -> None:
    heavy = CostModel(fixed_s=0.5, per_row_s=0.02, attention_s=0.0)  # batching pays, but 8 x 9 s = 1.9 s
    policy = policy_with(heavy, max_rows=8, bound_s=2.0)
    window = [job_of(9.0, enqueued_at=i) for i in range(8)]
    chosen = policy.choose(window, now=8.0)
    assert 1 < len(chosen) < 8
    assert heavy.call_s(len(chosen), 9.0) <= 1.0


def test_both_policies_keep_rows_times_the_longest_clip_within_the_padded_audio_bound() -> None:
    """64 rows of short clips may share a call, but not 64 of the longest: the bound is on padded audio."""
    short = [job_of(1.0, enqueued_at=i) for i in range(8)]
    long = [job_of(9.0, enqueued_at=i) for i in range(8)]
    gpu = policy_with(GPU_LIKE)  # without a bound it takes all 8 rows of either
    bounded = CostAwarePolicy(8, 2.0, sample_rate=RATE, max_padded_s=30.0)
    bounded.fit.model = GPU_LIKE
    length = LengthRatioPolicy(8, 0.0, max_padded=30 * RATE)
    for policy in (bounded, length):
        assert policy.choose(short, now=8.0) == short  # 8 x 1 s = 8 s: within 30 s
        chosen = policy.choose(long, now=8.0)
        assert len(chosen) == 3 and chosen[0] is long[0]  # 3 x 9 s = 27 s; a fourth would pad to 36 s
    assert len(gpu.choose(long, now=8.0)) == 8
    assert LengthRatioPolicy(8, 0.0, max_padded=5 * RATE).choose(long, now=8.0) == [long[0]]  # alone, not never


def test_the_gpu_default_bounds_padded_audio_and_the_cpu_default_does_not() -> None:
    from server.settings import Settings

    assert Settings().resolved_max_batch_audio_s("cpu") == 0.0  # 4 rows at most there
    assert Settings().resolved_max_batch_audio_s("cuda:0") == 640.0  # 64 rows of 10 s; 21 of 30 s
    assert Settings(max_batch_audio_s=120).resolved_max_batch_audio_s("cuda:0") == 120.0


def simulate(policy: CostAwarePolicy, arrivals: list[tuple[float, float]], until: float) -> dict[int, float]:
    """Run ``policy`` over (arrival time, seconds) jobs on a fake clock, one batch at a time, each taking
    its predicted time: job index -> queue wait."""
    queue: list[tuple[int, InferenceJob]] = []
    waits: dict[int, float] = {}
    now, upcoming = 0.0, list(enumerate(arrivals))
    while now < until and (upcoming or queue):
        while upcoming and upcoming[0][1][0] <= now:
            index, (at, seconds) = upcoming.pop(0)
            queue.append((index, job_of(seconds, enqueued_at=at)))
        if not queue:
            now = upcoming[0][1][0]
            continue
        window = [j for _, j in queue[:32]]
        chosen = {id(j) for j in policy.choose(window, now)}
        ran = [(i, j) for i, j in queue if id(j) in chosen]
        queue = [(i, j) for i, j in queue if id(j) not in chosen]
        lengths = sorted(j.length for _, j in ran)
        calls = policy.split_calls(lengths)
        for index, job in ran:
            waits[index] = now - job.enqueued_at
        now += sum(policy.cost.call_s(stop - start, lengths[stop - 1] / RATE) for start, stop in calls)
    return waits


def long_stream_with_one_short_clip(count: int = 400) -> list[tuple[float, float]]:
    """Long clips arriving a little faster than one-by-one could serve them, a short one at t=0.3."""
    arrivals = [(i * 0.1, 9.0) for i in range(count)]
    arrivals.insert(4, (0.3, 0.5))
    return arrivals


def test_a_short_clip_behind_long_ones_is_served_within_its_bound() -> None:
    # batches of long clips do the most work per second; the short clip alone does little (its fixed cost)
    model = CostModel(fixed_s=0.3, per_row_s=0.02, attention_s=0.0)
    arrivals = long_stream_with_one_short_clip()
    waits = simulate(policy_with(model, max_rows=8, bound_s=2.0), arrivals, until=60.0)
    assert waits[4] <= 2.0 + model.call_s(8, 9.0)  # its bound, then at most the batch already running
    # the control: with an unreachable bound nothing ages, and the short clip is still waiting
    starved = simulate(policy_with(model, max_rows=8, bound_s=1e9), arrivals, until=60.0)
    assert 4 not in starved


def test_no_job_starves_under_a_sustained_mixed_stream() -> None:
    model = CostModel(fixed_s=0.05, per_row_s=0.02, attention_s=0.002)
    rng = random.Random(3)
    # ~75 % of what the policy can serve (~0.19 s a row): mixed 1-10 s clips every 0.25 s on average
    arrivals, at = [], 0.0
    for _ in range(600):
        at += rng.expovariate(1 / 0.25)
        arrivals.append((at, rng.uniform(1.0, 10.0)))
    waits = simulate(policy_with(model, max_rows=8, bound_s=2.0), arrivals, until=1e9)
    assert len(waits) == len(arrivals), "some job was never served"
    assert max(waits.values()) < 3 * 2.0


class GatedModel:
    """Blocks every call until ``gate`` opens; records each call's row lengths."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.calls: list[list[int]] = []

    def predict(self, waveforms: list[torch.Tensor], adapter_keys: list[str]) -> list[int]:
        self.started.set()
        self.gate.wait(10)
        self.calls.append([int(w.shape[-1]) for w in waveforms])
        return [int(w.shape[-1]) for w in waveforms]


def test_the_worker_takes_an_overdue_short_job_before_fresher_long_ones() -> None:
    model = GatedModel()
    policy = policy_with(CostModel(fixed_s=0.3, per_row_s=0.01, attention_s=0.0), max_rows=4, bound_s=2.0)
    policy.observe = lambda *timing: None  # keep the hand-made costs: the gate makes real timings meaningless
    worker = BatchWorker(model, max_batch_rows=4, max_wait_s=0.0, max_queue=64, metrics=ServerMetrics(),
                         policy=policy)
    worker.start()
    now = time.monotonic()
    blocker = worker.submit(job_of(9.0, enqueued_at=now))
    assert model.started.wait(10)  # the worker is inside the model: the queue below forms behind it
    longs = [worker.submit(job_of(9.0, enqueued_at=now + 0.01 * i)) for i in range(4)]
    # the short clip came later than nothing else but has waited past its bound (a fake past arrival)
    short = worker.submit(job_of(0.5, enqueued_at=now - 5.0))
    model.gate.set()
    for future in [blocker, short, *longs]:
        future.result(timeout=10)
    worker.stop(1.0)
    # in the very next batch (padded into a long call: that launch cost was going to be paid anyway)
    assert 50 in model.calls[1], "the overdue short clip was not in the next batch"
    # and without its wait, the long ones (more work per second) would have gone first
    fresh = policy.choose([job_of(9.0, enqueued_at=now + 0.01 * i) for i in range(4)] + [job_of(0.5, now + 0.1)],
                          now=now + 0.2)
    assert [j.length for j in fresh] == [900] * 4


def test_a_job_wider_than_a_batch_runs_alone_instead_of_never() -> None:
    # a verification request is two rows: at max_rows=1 it once left the policy no candidate at all
    policy = policy_with(CPU_LIKE, max_rows=1)
    pair, single = job_of(1.0, enqueued_at=0.0, rows=2), job_of(1.0, enqueued_at=1.0)
    assert policy.choose([pair, single], now=2.0) == [pair]
    assert policy.choose([single, job_of(1.0, enqueued_at=2.0, rows=2)], now=3.0) == [single]


class FailingPolicy:
    """A policy whose choice raises: batch formation must still answer the queued jobs."""

    def choose(self, window: list[InferenceJob], now: float) -> list[InferenceJob]:
        raise ValueError("policy bug")

    def split_calls(self, sorted_lengths: list[int]) -> list[tuple[int, int]]:
        return [(0, len(sorted_lengths))]

    def worth_waiting(self, queued: list[InferenceJob]) -> bool:
        return False

    def observe(self, *timing: object) -> None:
        return None


def test_a_failing_policy_runs_the_oldest_job_alone_instead_of_losing_the_window() -> None:
    model = GatedModel()
    model.gate.set()
    worker = BatchWorker(model, max_batch_rows=4, max_wait_s=0.0, max_queue=64, metrics=ServerMetrics(),
                         policy=FailingPolicy())
    worker.start()
    futures = [worker.submit(job_of(1.0, enqueued_at=time.monotonic(), rows=rows)) for rows in (2, 1, 1)]
    results = [future.result(timeout=10) for future in futures]
    worker.stop(1.0)
    assert [len(result.predictions) for result in results] == [2, 1, 1]
    assert all(len(call) <= 2 for call in model.calls)  # one job per call: the fallback, not a guess


@pytest.mark.parametrize("batch_policy", ["length", "cost"])
def test_the_service_gives_either_policy_the_devices_padded_audio_bound(tmp_path, batch_policy) -> None:
    from server.service import InferenceService
    from tests.server.helpers import make_settings

    settings = make_settings(tmp_path, tmp_path / "adapters", tmp_path, batch_policy=batch_policy)
    service = InferenceService(settings, ServerMetrics())
    try:
        on_gpu, on_cpu = service._batch_policy("cuda:0", 64), service._batch_policy("cpu", 4)
    finally:
        service.io_pool.shutdown()
    if batch_policy == "cost":
        assert (on_gpu.max_padded_s, on_cpu.max_padded_s) == (640.0, 0.0)
    else:
        assert (on_gpu.max_padded, on_cpu.max_padded) == (640 * 16000, 0)
        assert (on_gpu.length_ratio, on_cpu.length_ratio) == (0.0, 0.9)
