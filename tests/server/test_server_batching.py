"""The batching worker alone, with a recording fake model: batch formation, deadlines, overload,
failure isolation and shutdown. Fast: no torch model involved."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

import pytest
import torch

from server.batch_support import length_chunks
from server.batching import BatchWorker, InferenceJob, JobResult, WorkerStoppedError
from server.errors import OverloadedError, RequestTimeoutError
from server.metrics import ServerMetrics


class RecordingModel:
    """Echoes each row's key and length; can block (``gate``), or raise on chosen calls. ``entered``
    is set once a call is inside the model, so a test knows the worker holds a batch."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[str, int]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_next = 0

    def predict(self, waveforms: list[torch.Tensor], adapter_keys: list[str]) -> list[tuple[str, int]]:
        self.entered.set()
        self.gate.wait(10)
        rows = [(key, int(w.shape[-1])) for w, key in zip(waveforms, adapter_keys, strict=True)]
        self.calls.append(rows)
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("boom")
        return rows


def make_worker(model: RecordingModel, **overrides: float) -> BatchWorker:
    options = dict(max_batch_rows=4, max_wait_s=0.05, max_queue=8)
    options.update(overrides)
    worker = BatchWorker(model, metrics=ServerMetrics(), **options)
    worker.start()
    return worker


def job(task: str = "asr", key: str = "a", length: int = 100, rows: int = 1, deadline_s: float = 10.0) -> InferenceJob:
    return InferenceJob(task, [torch.zeros(length)] * rows, [key] * rows, deadline=time.monotonic() + deadline_s)


def result(future: Future) -> JobResult:
    return future.result(timeout=10)


def hold_worker(model: RecordingModel, worker: BatchWorker, length: int = 1) -> Future:
    """Submit a job and return once the (gated) model is running it: the queue is empty again."""
    blocker = worker.submit(job(length=length))
    assert model.entered.wait(10), "the worker never started the blocking job"
    return blocker


def test_jobs_of_different_tasks_share_a_batch_and_answers_map_back() -> None:
    model = RecordingModel()
    worker = make_worker(model, max_wait_s=0.2)
    jobs = [job("asr", "a", 100), job("verification", "v", 300, rows=2), job("emotion", "e", 200)]
    futures = [worker.submit(j) for j in jobs]
    answers = [result(f).predictions for f in futures]
    worker.stop(1.0)
    assert len(model.calls) == 1 and len(model.calls[0]) == 4
    assert answers == [[("a", 100)], [("v", 300), ("v", 300)], [("e", 200)]]
    assert [length for _, length in model.calls[0]] == sorted(length for _, length in model.calls[0])


def test_full_batches_run_without_waiting_for_max_wait() -> None:
    model = RecordingModel()
    model.gate.clear()
    worker = make_worker(model, max_wait_s=5.0, max_batch_rows=2)
    futures = [worker.submit(job(length=100 + i)) for i in range(4)]
    started = time.monotonic()
    model.gate.set()
    for future in futures:
        result(future)
    worker.stop(1.0)
    assert time.monotonic() - started < 4.0  # full batches never waited max_wait_s
    assert all(len(call) <= 2 for call in model.calls)


def test_similar_lengths_are_grouped_together() -> None:
    model = RecordingModel()
    model.gate.clear()
    worker = make_worker(model, max_batch_rows=2, max_wait_s=0.0)
    blocker = hold_worker(model, worker)  # occupies the worker while the queue fills
    futures = [worker.submit(job(length=n)) for n in (1000, 16000, 1010, 16010)]
    model.gate.set()
    for future in [blocker, *futures]:
        result(future)
    worker.stop(1.0)
    lengths = [sorted(n for _, n in call) for call in model.calls[1:]]
    assert [1000, 1010] in lengths and [16000, 16010] in lengths


def test_expired_jobs_are_dropped_with_timeout_before_running() -> None:
    model = RecordingModel()
    model.gate.clear()
    worker = make_worker(model, max_wait_s=0.0)
    blocker = hold_worker(model, worker)
    late = worker.submit(job(length=7, deadline_s=-1.0))  # already past its deadline when taken
    model.gate.set()
    result(blocker)
    with pytest.raises(RequestTimeoutError):
        result(late)
    worker.stop(1.0)
    assert all(length != 7 for call in model.calls for _, length in call)


def test_full_queue_is_refused_with_retry_after() -> None:
    model = RecordingModel()
    model.gate.clear()
    worker = make_worker(model, max_queue=2, max_wait_s=0.0)
    first = hold_worker(model, worker, length=100)  # the worker holds `first`; the queue is empty again
    queued = [worker.submit(job()), worker.submit(job())]
    with pytest.raises(OverloadedError) as info:
        worker.submit(job())
    assert int(info.value.headers["Retry-After"]) >= 1
    model.gate.set()
    for future in [first, *queued]:
        result(future)
    worker.stop(1.0)


def test_a_raising_batch_fails_only_its_jobs_and_the_worker_lives_on() -> None:
    model = RecordingModel()
    model.fail_next = 1
    worker = make_worker(model, max_wait_s=0.0)
    with pytest.raises(RuntimeError, match="boom"):
        result(worker.submit(job()))
    assert result(worker.submit(job(length=5))).predictions == [("a", 5)]
    assert worker.alive
    worker.stop(1.0)


def test_cancelled_jobs_are_skipped() -> None:
    model = RecordingModel()
    model.gate.clear()
    worker = make_worker(model, max_wait_s=0.0)
    blocker = hold_worker(model, worker)
    gone = worker.submit(job(length=9))
    assert gone.cancel()  # the client disconnected
    model.gate.set()
    result(blocker)
    result(worker.submit(job(length=3)))
    worker.stop(1.0)
    assert all(length != 9 for call in model.calls for _, length in call)


def test_graceful_stop_answers_the_queue_then_refuses() -> None:
    model = RecordingModel()
    model.gate.clear()
    worker = make_worker(model, max_wait_s=0.0, max_batch_rows=1)
    futures = [worker.submit(job(length=n)) for n in range(1, 6)]
    threading.Timer(0.1, model.gate.set).start()
    worker.stop(drain_timeout_s=10.0)
    assert [result(f).predictions[0][1] for f in futures] == [1, 2, 3, 4, 5]
    with pytest.raises(WorkerStoppedError):
        worker.submit(job())
    assert not worker.alive


def test_stop_without_drain_time_refuses_queued_jobs_and_nothing_hangs() -> None:
    model = RecordingModel()
    model.gate.clear()
    worker = make_worker(model, max_wait_s=0.0, max_batch_rows=1)
    futures = [worker.submit(job(length=n)) for n in range(1, 6)]
    assert model.entered.wait(10)
    threading.Timer(0.2, model.gate.set).start()
    worker.stop(drain_timeout_s=0.0)
    outcomes = []
    for future in futures:
        try:
            outcomes.append(result(future).predictions[0][1])
        except WorkerStoppedError:
            outcomes.append("refused")
    assert "refused" in outcomes and all(o == "refused" or isinstance(o, int) for o in outcomes)


def test_control_calls_run_on_the_worker_thread_between_batches() -> None:
    model = RecordingModel()
    worker = make_worker(model)
    name = worker.call(lambda m: threading.current_thread().name).result(timeout=5)
    worker.stop(1.0)
    assert name == "elp-model-worker"


def test_clips_far_shorter_than_the_batch_wait_for_their_own_batch() -> None:
    model = RecordingModel()
    model.gate.clear()  # hold the worker so all jobs are queued before the first batch forms
    worker = make_worker(model, max_wait_s=0.05, length_ratio=0.5)
    futures = [worker.submit(job("asr", "a", n)) for n in (1000, 1200, 4000, 900)]
    model.gate.set()
    for future in futures:
        result(future)
    worker.stop(1.0)
    lengths = [sorted(n for _, n in call) for call in model.calls]
    assert [4000] in lengths and sum(len(call) for call in lengths) == 4
    assert any(len(call) > 1 for call in lengths)  # the similar clips still share a batch
    for call in model.calls:
        sizes = [n for _, n in call]
        assert min(sizes) >= 0.5 * max(sizes)


class DeferredPost:
    """Stages whose core echoes the keys and whose post answers row 0 of each batch at once and keeps
    every other row's ``done`` for the test to call (a search still running in a pool)."""

    def __init__(self) -> None:
        self.pending: list[tuple[object, int]] = []
        self.two_pending = threading.Event()

    def core(self, model: object, waveforms: list[torch.Tensor], adapter_keys: list[str]) -> list[str]:
        return list(adapter_keys)

    def post(self, model: object, rows: list[str], done) -> None:
        done(0, rows[0])
        self.pending += [(done, index) for index in range(1, len(rows))]
        if len(self.pending) >= 2:
            self.two_pending.set()


def test_rows_post_processed_later_answer_their_jobs_later_and_a_failed_one_fails_only_its_job() -> None:
    stages = DeferredPost()
    worker = make_worker(RecordingModel(), max_wait_s=0.2, stages=stages)
    first, second, third = (worker.submit(job("asr", key, 100)) for key in ("a", "b", "c"))
    assert stages.two_pending.wait(10)
    assert result(first).predictions == ["a"]  # answered with the batch
    assert not second.done() and not third.done()  # the worker did not wait for them ...
    follow_up = worker.submit(job("emotion", "e", 100))
    assert result(follow_up).predictions == ["e"]  # ... and went on to the next batch
    (done_b, row_b), (done_c, row_c) = stages.pending[:2]
    done_b(row_b, "decoded b")
    done_c(row_c, RuntimeError("decoder died"))
    assert result(second).predictions == ["decoded b"]
    with pytest.raises(RuntimeError, match="decoder died"):
        result(third)
    worker.stop(1.0)


def test_a_lone_job_does_not_wait_for_company_that_is_not_on_its_way() -> None:
    model = RecordingModel()
    worker = make_worker(model, max_wait_s=30.0, wait_only_while_incoming=True)
    answered = result(worker.submit(job(length=100)))  # would wait 30 s under the plain max-wait rule
    worker.stop(1.0)
    assert answered.queue_wait_s < 5.0 and model.calls == [[("a", 100)]]


def test_a_batch_waits_for_a_request_still_being_decoded() -> None:
    model = RecordingModel()
    worker = make_worker(model, max_wait_s=30.0, wait_only_while_incoming=True)
    with worker.incoming():  # a second request is being decoded...
        first = worker.submit(job(length=100))
        with pytest.raises(FutureTimeout):  # ...so the first one waits for it (a wait is what is tested)
            first.result(timeout=0.3)
        second = worker.submit(job(length=110))
    assert result(first).predictions == [("a", 100)] and result(second).predictions == [("a", 110)]
    worker.stop(1.0)
    assert model.calls == [[("a", 100), ("a", 110)]]


class ConcurrencyProbe(RecordingModel):
    """Each call blocks until ``release``; records how many calls ran at the same time."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.two_active = threading.Event()
        self.lock = threading.Lock()
        self.active = 0
        self.most_active = 0

    def predict(self, waveforms: list[torch.Tensor], adapter_keys: list[str]) -> list[tuple[str, int]]:
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            if self.active == 2:
                self.two_active.set()
        try:
            self.release.wait(10)
            return super().predict(waveforms, adapter_keys)
        finally:
            with self.lock:
                self.active -= 1


def test_several_workers_run_batches_side_by_side_and_controls_wait_for_them() -> None:
    model = ConcurrencyProbe()
    worker = make_worker(model, max_batch_rows=1, max_wait_s=0.0, workers=2)
    futures = [worker.submit(job(length=100 + i)) for i in range(2)]
    assert model.two_active.wait(5)  # both workers are inside predict at once
    seen_by_control: list[int] = []
    control = worker.call(lambda m: seen_by_control.append(m.active) or threading.current_thread().name)
    with pytest.raises(FutureTimeout):  # a control (adapter add/remove) never runs beside a batch
        control.result(timeout=0.2)
    model.release.set()
    assert control.result(timeout=5).startswith("elp-model-worker-")
    assert seen_by_control == [0]
    assert sorted(result(f).predictions[0][1] for f in futures) == [100, 101]
    later = worker.submit(job(length=300))  # the workers go on after the control
    assert result(later).predictions == [("a", 300)]
    worker.stop(1.0)
    assert model.most_active == 2 and worker.batches_run == 3


def test_length_chunks_keep_each_run_within_the_ratio() -> None:
    assert length_chunks([10, 12, 19, 21, 40, 100], 0.5) == [(0, 3), (3, 5), (5, 6)]
    assert length_chunks([7], 0.5) == [(0, 1)]
    assert length_chunks([1, 50, 900], 0.0) == [(0, 3)]  # ratio 0: one call, any mix


def test_rows_of_one_job_far_apart_in_length_run_in_separate_model_calls() -> None:
    # a verify request (two rows) of a short and a long clip: the short one is not padded to the long
    model = RecordingModel()
    worker = make_worker(model, length_ratio=0.5)
    pair = InferenceJob("verification", [torch.zeros(9000), torch.zeros(2000)], ["v", "v"],
                        deadline=time.monotonic() + 10)
    assert result(worker.submit(pair)).predictions == [("v", 9000), ("v", 2000)]
    worker.stop(1.0)
    assert model.calls == [[("v", 2000)], [("v", 9000)]]


def test_length_ratio_defaults_to_the_device_and_an_explicit_one_wins() -> None:
    from server.settings import Settings

    assert Settings().resolved_length_ratio("cpu") == 0.9  # CPU: batching buys nothing, padding costs
    assert Settings().resolved_length_ratio("cuda:0") == 0.0  # GPU: a call costs its operators: any mix
    assert Settings(batch_length_ratio=0.0).resolved_length_ratio("cpu") == 0.0
