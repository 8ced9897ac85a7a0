"""Several batch workers over one model (``ELP_MODEL_WORKERS``): the same answers as one worker."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch

from tests.server.helpers import make_settings, running_app, wav_bytes

pytestmark = pytest.mark.anyio

REQUESTS = [("/asr", {}), ("/emotion", {}), ("/intent", {}), ("/verify", {"reference": 7})] * 3


async def _answers(settings) -> tuple[list[dict], str]:
    async with running_app(settings) as (app, client):
        async def send(index: int, path: str, extra: dict) -> dict:
            files = {"file": ("a.wav", wav_bytes(0.6 + 0.15 * index, seed=index), "audio/wav")}
            if "reference" in extra:
                files["reference"] = ("b.wav", wav_bytes(0.8, seed=extra["reference"]), "audio/wav")
            reply = await client.post(path, files=files)
            assert reply.status_code == 200, reply.text
            answer = reply.json()
            answer.pop("timings_ms")
            return answer

        answers = await asyncio.gather(*(send(i, path, extra) for i, (path, extra) in enumerate(REQUESTS)))
        threads = sorted(t.name for t in app.state.service.worker._threads)
        model = app.state.service.worker.model
        routing = (getattr(model, "gathered_routing", None), model.backbone.front_end_mode)
    return list(answers), ",".join(threads), routing


async def test_two_model_workers_answer_concurrent_requests_like_one(tiny_store, tmp_path) -> None:
    backbone, store = tiny_store
    torch_threads = torch.get_num_threads()
    try:
        one, one_names, _ = await _answers(make_settings(backbone, store, tmp_path / "one", model_workers=1))
        two, two_names, _ = await _answers(make_settings(backbone, store, tmp_path / "two", model_workers=2))
    finally:
        torch.set_num_threads(torch_threads)
    assert one_names == "elp-model-worker"
    assert two_names == "elp-model-worker-0,elp-model-worker-1"
    _assert_same_answers(one, two)


async def test_gathered_adapter_routing_serves_the_answers_of_per_group_routing(tiny_store, tmp_path) -> None:
    """ELP_ADAPTER_ROUTING reaches the model, and both routings answer a mixed stream alike."""
    backbone, store = tiny_store
    per_group, _, off = await _answers(make_settings(backbone, store, tmp_path / "p", adapter_routing="per-group"))
    gathered, _, on = await _answers(make_settings(backbone, store, tmp_path / "g", adapter_routing="gathered"))
    assert (off[0], on[0]) == (False, True)
    _assert_same_answers(per_group, gathered)


async def test_batched_front_end_serves_the_answers_of_the_per_row_loop(tiny_store, tmp_path) -> None:
    """ELP_FRONT_END reaches the backbone, and a mixed stream gets the same answers either way."""
    backbone, store = tiny_store
    per_row, _, (_, row_mode) = await _answers(make_settings(backbone, store, tmp_path / "r", front_end="per_row"))
    batched, _, (_, batch_mode) = await _answers(make_settings(backbone, store, tmp_path / "b", front_end="batched"))
    assert (row_mode, batch_mode) == ("per_row", "batched")
    _assert_same_answers(per_row, batched)


def _assert_same_answers(one: list[dict], two: list[dict]) -> None:
    for single, double in zip(one, two, strict=True):
        assert single.keys() == double.keys()
        for key, value in single.items():
            if key == "scores":
                assert value.keys() == double[key].keys()
                assert all(abs(value[k] - double[key][k]) < 1e-4 for k in value)
            elif isinstance(value, float):
                assert value == pytest.approx(double[key], abs=1e-4)
            else:
                assert value == double[key], key


class _ThreadRecordingModel:
    """Records the torch intra-op threads each call runs with; the first call waits for ``gate``."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.first_started = threading.Event()
        self.threads: list[int] = []

    def predict(self, waveforms: list[torch.Tensor], adapter_keys: list[str]) -> list[int]:
        self.threads.append(torch.get_num_threads())
        if len(self.threads) == 1:
            self.first_started.set()
            self.gate.wait(10)
        return [0] * len(waveforms)


def test_model_workers_share_the_intra_op_threads_while_their_batches_overlap() -> None:
    """A batch running alone gets every intra-op thread; one that starts while another runs gets its
    share (no more OpenMP threads than cores)."""
    from server.batching import BatchWorker, InferenceJob
    from server.metrics import ServerMetrics

    process_threads = torch.get_num_threads()
    model = _ThreadRecordingModel()
    worker = BatchWorker(model, max_batch_rows=1, max_wait_s=0.0, max_queue=8, metrics=ServerMetrics(),
                         workers=2, intra_op_threads=4)

    def job() -> InferenceJob:
        return InferenceJob("asr", [torch.zeros(160)], ["a"], deadline=time.monotonic() + 60)

    try:
        worker.start()
        first = worker.submit(job())
        assert model.first_started.wait(10)
        worker.submit(job()).result(timeout=10)  # runs on the other worker while the first is held
        model.gate.set()
        first.result(timeout=10)
        worker.submit(job()).result(timeout=10)  # alone again
        worker.stop(1.0)
    finally:
        model.gate.set()
        torch.set_num_threads(process_threads)  # the workers' setting is also torch's default for new threads
    assert model.threads == [4, 2, 4]


def test_model_workers_default_to_two_on_a_multi_core_cpu_and_one_on_a_gpu() -> None:
    """``ELP_MODEL_WORKERS=0`` (the default) resolves per device; an explicit count always wins."""
    from server.settings import Settings

    auto = Settings()
    assert auto.model_workers == 0
    assert auto.resolved_model_workers("cpu", cores=2) == 2
    assert auto.resolved_model_workers("cpu", cores=16) == 2
    assert auto.resolved_model_workers("cpu", cores=1) == 1  # no second core to run a second batch on
    assert auto.resolved_model_workers("cuda:0", cores=16) == 1
    assert Settings(model_workers=3).resolved_model_workers("cuda:0", cores=1) == 3
    assert Settings(model_workers=1).resolved_model_workers("cpu", cores=8) == 1


def test_most_rows_per_batch_default_to_four_on_a_cpu_and_sixty_four_on_a_gpu() -> None:
    from server.settings import Settings

    assert Settings().resolved_max_batch_size("cpu") == 4
    assert Settings().resolved_max_batch_size("cuda:0") == 64
    assert Settings(max_batch_size=32).resolved_max_batch_size("cpu") == 32
