"""The post stage: ASR beam search in worker processes or threads gives the transcripts the worker
thread would, each post-processor is shipped to a process once, a dead process costs only its rows,
and the served answers do not change with the pool."""

from __future__ import annotations

import os
import signal
import threading
import time
from types import SimpleNamespace

import pytest
import torch

from elp import AdapterSet, load_backbone
from elp.decoding import WordBigramLM
from elp.model import RowOutput
from elp.testing import make_random_adapter_set, spelled_log_probs
from server.batching import BatchWorker, InferenceJob
from server.metrics import ServerMetrics
from server.post_pool import PostPool, PostStage
from tests.server.helpers import make_settings, running_app, wav_bytes

TEXTS = ["turn on the lights", "turn off the lights", "open the door", "close the window"]


@pytest.fixture(scope="module")
def asr_set(tiny_backbone_dir) -> AdapterSet:
    backbone = load_backbone(tiny_backbone_dir("whisper"))
    adapter_set = make_random_adapter_set(backbone, "asr", seed=0)
    adapter_set.attach_language_model(WordBigramLM.build(TEXTS, alpha=0.8, beta=1.0, beam_width=8))
    return adapter_set


def spelled(text: str, vocab: list[str], typo_at: int | None = None) -> torch.Tensor:
    """Log-probs whose best path spells ``text``, with an optional near-tie typo."""
    return spelled_log_probs(text, vocab, noise=None if typo_at is None else {typo_at: "x"})


def transcribe(pool: PostPool, adapter_set: AdapterSet, clip: torch.Tensor):
    return pool.submit("asr@1", adapter_set.post_processor, clip)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["processes", "threads"])
def test_the_pool_decodes_exactly_as_the_worker_thread_would(asr_set: AdapterSet, kind: str) -> None:
    vocab = asr_set.config.vocab
    clips = [spelled(text, vocab, typo_at=2) for text in TEXTS] * 2
    pool = PostPool(2, kind)
    try:
        answers = [f.result(timeout=120)["text"] for f in [transcribe(pool, asr_set, clip) for clip in clips]]
        assert answers == [asr_set.decode_ctc(clip) for clip in clips]
        assert answers[0] == "turn on the lights"  # the LM repaired the typo
        # each process got the post-processor once: both now hold it
        assert all(len(process.holds) == 1 for process in pool._processes)
    finally:
        pool.shutdown()


@pytest.mark.slow
def test_a_killed_process_fails_nothing_later_and_is_replaced(asr_set: AdapterSet) -> None:
    clip = spelled("open the door", asr_set.config.vocab)
    pool = PostPool(1)
    try:
        assert transcribe(pool, asr_set, clip).result(timeout=120)["text"] == "open the door"
        process = pool._processes[0]
        for pid in list(process.executor._processes):  # the one child of this executor
            os.kill(pid, signal.SIGKILL)
        # whatever was in flight may fail; the next clips start a fresh process and ship the LM again
        answers = []
        for _ in range(3):
            try:
                answers.append(transcribe(pool, asr_set, clip).result(timeout=120)["text"])
            except Exception:  # noqa: BLE001 - the clip the dying process held
                answers.append(None)
        assert answers[-1] == "open the door"
    finally:
        pool.shutdown()


@pytest.fixture
def store_with_lm(store_copy):
    """The tiny store with its ASR set given a word LM searched at beam width 8."""
    with_lm = AdapterSet.load(store_copy / "asr-default")
    with_lm.attach_language_model(WordBigramLM.build(TEXTS, alpha=0.5, beta=1.0, beam_width=8))
    with_lm.save(store_copy / "asr-default")
    return store_copy


@pytest.mark.slow
@pytest.mark.anyio
async def test_served_transcripts_equal_with_and_without_a_post_pool(
    tiny_store, store_with_lm, tmp_path
) -> None:
    backbone, _ = tiny_store
    clips = [wav_bytes(1.0 + 0.3 * i, seed=i) for i in range(4)]
    answers = {}
    # the earlier setting still means a process pool
    plans = {"inline": {}, "processes": {"beam_search_processes": 1}, "threads": {"post_workers": 1,
                                                                              "post_pool": "threads"}}
    for plan, options in plans.items():
        settings = make_settings(backbone, store_with_lm, tmp_path / plan, **options)
        async with running_app(settings) as (app, client):
            replies = [await client.post("/asr", files={"file": ("a.wav", clip, "audio/wav")}) for clip in clips]
            assert all(reply.status_code == 200 for reply in replies), [r.text for r in replies]
            answers[plan] = [reply.json()["text"] for reply in replies]
            pool = app.state.service.post_stage.pool
            assert (pool.kind if pool is not None else "inline") == plan
    assert answers["inline"] == answers["processes"] == answers["threads"]


@pytest.mark.anyio
async def test_asr_beam_width_setting_overrides_each_sets_own_without_rewriting_it(
    tiny_store, store_with_lm, tmp_path
) -> None:
    backbone, _ = tiny_store
    on_disk = (store_with_lm / "asr-default" / "adapter_config.json").read_bytes()
    for setting, served_width in ((0, 8), (3, 3)):
        settings = make_settings(backbone, store_with_lm, tmp_path / str(setting), asr_beam_width=setting)
        async with running_app(settings) as (app, client):
            reply = await client.post("/asr", files={"file": ("a.wav", wav_bytes(1.2, seed=3), "audio/wav")})
            assert reply.status_code == 200, reply.text
            served = [s for s in app.state.service.worker.model.adapter_sets.values() if s.config.task == "asr"]
            assert [s.language_model.config.beam_width for s in served] == [served_width]
            assert served[0].post_processor.beam_decoder.beam_width == served_width  # the search that answered
            assert served[0].config.language_model.beam_width == served_width
    assert (store_with_lm / "asr-default" / "adapter_config.json").read_bytes() == on_disk


class _Blocking:
    """An offloaded post-processor that waits for the test (a long beam search)."""

    offload = True

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def __call__(self, output: torch.Tensor) -> dict:
        assert self.gate.wait(10)
        return {"text": "slow"}


class _Quick:
    offload = False

    def __call__(self, output: torch.Tensor) -> dict:
        return {"label": "quick", "scores": {"quick": 1.0}}


class _Broken:
    offload = False

    def __call__(self, output: torch.Tensor) -> dict:
        raise ValueError("bad row")


class _HeadsOnly:
    """A model stage that returns each waveform as its row's head output."""

    def __init__(self, processors: dict) -> None:
        self.adapter_sets = {key: SimpleNamespace(post_processor=p) for key, p in processors.items()}

    def head_outputs(self, waveforms: list[torch.Tensor], adapter_keys: list[str]) -> list[RowOutput]:
        return [RowOutput("t", key, wave) for wave, key in zip(waveforms, adapter_keys, strict=True)]


def test_the_worker_runs_the_next_batch_while_an_offloaded_row_is_post_processed() -> None:
    gate = threading.Event()
    model = _HeadsOnly({"slow": _Blocking(gate), "quick": _Quick(), "broken": _Broken()})
    stage = PostStage(PostPool(1, "threads"))
    worker = BatchWorker(model, stages=stage, max_batch_rows=1, max_wait_s=0.0, max_queue=8, metrics=ServerMetrics())
    worker.start()

    def submit(key: str):
        return worker.submit(InferenceJob("t", [torch.zeros(10)], [key], deadline=time.monotonic() + 30))

    try:
        slow = submit("slow")
        quick = submit("quick")
        assert quick.result(timeout=10).predictions[0].label == "quick"  # answered while the search runs
        assert not slow.done()
        with pytest.raises(ValueError, match="bad row"):  # a failing post-processor fails its request only
            submit("broken").result(timeout=10)
        gate.set()
        assert slow.result(timeout=10).predictions[0].text == "slow"
        assert submit("quick").result(timeout=10).predictions[0].label == "quick"
    finally:
        gate.set()
        worker.stop(1.0)
        stage.shutdown()
