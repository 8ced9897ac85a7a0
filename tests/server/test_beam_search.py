"""ASR beam search in worker processes: same transcripts as on the worker thread, each language
model shipped to a process once, a dead process costing only its clips, and the served answer."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch

from elp import AdapterSet, load_backbone
from elp.decoding import WordBigramLM
from elp.testing import make_random_adapter_set, spelled_log_probs
from server.beam_search import BeamSearchPool
from tests.server.helpers import make_settings, running_app, wav_bytes

TEXTS = ["turn on the lights", "turn off the lights", "open the door", "close the window"]


@pytest.fixture(scope="module")
def asr_set(tiny_backbone_dir) -> AdapterSet:
    backbone = load_backbone(tiny_backbone_dir("whisper"))
    adapter_set = make_random_adapter_set(backbone, "asr", seed=0)
    adapter_set.attach_language_model(WordBigramLM.build(TEXTS, alpha=0.8, beta=1.0, beam_width=8))
    return adapter_set


def spelled(text: str, vocab: list[str], typo_at: int | None = None) -> np.ndarray:
    """Log-probs whose best path spells ``text``, with an optional near-tie typo."""
    return spelled_log_probs(text, vocab, noise=None if typo_at is None else {typo_at: "x"}).numpy()


@pytest.mark.slow
def test_processes_decode_exactly_as_the_worker_thread_would(asr_set: AdapterSet) -> None:
    vocab = asr_set.config.vocab
    clips = [spelled(text, vocab, typo_at=2) for text in TEXTS] * 2
    pool = BeamSearchPool(2)
    try:
        answers = [future.result(timeout=120) for future in [pool.submit(asr_set, clip) for clip in clips]]
        assert answers == [asr_set.decode_ctc(torch.from_numpy(clip)) for clip in clips]
        assert answers[0] == "turn on the lights"  # the LM repaired the typo
        # each process got the LM once: both now hold it
        assert all(len(process.holds) == 1 for process in pool._processes)
    finally:
        pool.shutdown()


@pytest.mark.slow
def test_a_killed_process_fails_nothing_later_and_is_replaced(asr_set: AdapterSet) -> None:
    clip = spelled("open the door", asr_set.config.vocab)
    pool = BeamSearchPool(1)
    try:
        assert pool.submit(asr_set, clip).result(timeout=120) == "open the door"
        process = pool._processes[0]
        for pid in list(process.executor._processes):  # the one child of this executor
            os.kill(pid, signal.SIGKILL)
        # whatever was in flight may fail; the next clips start a fresh process and ship the LM again
        answers = []
        for _ in range(3):
            try:
                answers.append(pool.submit(asr_set, clip).result(timeout=120))
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
async def test_served_transcripts_equal_with_and_without_beam_search_processes(
    tiny_store, store_with_lm, tmp_path
) -> None:
    backbone, _ = tiny_store
    clips = [wav_bytes(1.0 + 0.3 * i, seed=i) for i in range(4)]
    answers = {}
    for processes in (0, 1):
        settings = make_settings(backbone, store_with_lm, tmp_path / str(processes), beam_search_processes=processes)
        async with running_app(settings) as (app, client):
            replies = [await client.post("/asr", files={"file": ("a.wav", clip, "audio/wav")}) for clip in clips]
            assert all(reply.status_code == 200 for reply in replies), [r.text for r in replies]
            answers[processes] = [reply.json()["text"] for reply in replies]
            assert (app.state.service.beam_search is not None) == bool(processes)
    assert answers[0] == answers[1]


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
            assert served[0]._beam_decoder.beam_width == served_width  # the search that answered
            assert served[0].config.language_model.beam_width == served_width
    assert (store_with_lm / "asr-default" / "adapter_config.json").read_bytes() == on_disk
