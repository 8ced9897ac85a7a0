"""The compiled CTC prefix beam search (elp.decoding.compiled) against the Python reference (elp.decoding.beam):
the same transcript for every input, LM setting and length, and the served post-processing runs it."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from elp.decoding import WordBigramLM
from elp.decoding.beam import CTCBeamDecoder
from elp.decoding.compiled import CompiledCTCBeamDecoder, beam_decoder, warm_up
from elp.tasks.asr import CTCTranscriber
from elp.testing import CTC_VOCAB, spelled_log_probs

TEXTS = ["turn on the lights", "turn off the lights", "the lights are on", "open the door", "a door is open"]
GENERAL = {"door": 2.0, "window": 1.0, "the": 5.0, "light": 1.0, "lighter": 0.5, "turnip": 0.2, "dog": 0.3}


def noisy_log_probs(text: str, seed: int, spread: float) -> np.ndarray:
    """A clip's log-probabilities: the spelled path with seeded Gaussian noise on every logit, so several
    symbols a frame pass the pruning floor and spellings compete (``spread`` sets how much)."""
    rng = np.random.default_rng(seed)
    logits = spelled_log_probs(text).numpy().astype(np.float64) + spread * rng.standard_normal((2 * len(text),
                                                                                                 len(CTC_VOCAB)))
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def settings() -> list[dict]:
    return [dict(alpha=0.5, beta=0.5, beam_width=8, temperature=1.0, lookahead=True, unk_score_offset=-10.0),
            dict(alpha=0.5, beta=-1.0, beam_width=32, temperature=3.0, lookahead=True, unk_score_offset=-20.0),
            dict(alpha=1.2, beta=2.0, beam_width=4, temperature=2.0, lookahead=False, unk_score_offset=-5.0)]


@pytest.mark.parametrize("order", [2, 3], ids=["bigram", "trigram"])
@pytest.mark.parametrize("setting", settings(), ids=["plain", "served", "no-lookahead"])
def test_compiled_search_gives_the_reference_transcript(setting: dict, order: int) -> None:
    lm = WordBigramLM.build(TEXTS, GENERAL, order=order)
    lm.config = dataclasses.replace(lm.config, **setting)
    reference, compiled = CTCBeamDecoder(CTC_VOCAB, lm), CompiledCTCBeamDecoder(CTC_VOCAB, lm)
    sentences = [*TEXTS, "turn on the window light", "the dog opens a turnip", "xq zzv the"]  # out-of-LM words too
    misread = 0
    for seed, text in enumerate(sentences * 3):
        log_probs = noisy_log_probs(text, seed, spread=(0.5, 1.5, 3.0)[seed % 3])
        expected = reference.decode(log_probs)
        assert compiled.decode(log_probs) == expected, (text, seed)
        misread += expected != text
    assert misread >= 3  # the noise made the searches disagree with the spelling sometimes


@pytest.mark.parametrize("order", [2, 3], ids=["bigram", "trigram"])
def test_a_long_clip_grows_the_prefix_tree_and_still_agrees(order: int) -> None:
    """Hundreds of frames with many symbols above the floor: more prefix nodes than the search starts with."""
    lm = WordBigramLM.build(TEXTS, GENERAL, alpha=0.5, beta=0.0, beam_width=32, temperature=3.0, order=order)
    text = " ".join(TEXTS * 4)
    log_probs = noisy_log_probs(text, seed=7, spread=2.0)
    assert log_probs.shape[0] > 500
    assert CompiledCTCBeamDecoder(CTC_VOCAB, lm).decode(log_probs) == CTCBeamDecoder(CTC_VOCAB, lm).decode(log_probs)


def test_an_lm_built_unsorted_is_refused_for_lookahead_like_the_reference() -> None:
    lm = WordBigramLM.build(TEXTS, GENERAL, lookahead=True)
    lm._lookup()
    lm._vocabulary_sorted = False
    with pytest.raises(Exception, match="sorted"):
        CompiledCTCBeamDecoder(CTC_VOCAB, lm)


def test_served_post_processing_runs_the_compiled_search() -> None:
    lm = WordBigramLM.build(TEXTS, alpha=0.8, beta=1.0, beam_width=16)
    processor = CTCTranscriber(CTC_VOCAB, lm)
    assert isinstance(processor.beam_decoder, CompiledCTCBeamDecoder)
    assert isinstance(beam_decoder(CTC_VOCAB, lm), CompiledCTCBeamDecoder)
    answer = processor(spelled_log_probs("turn on the lights", noise={14: "x"}))  # "lights" -> "lixhts"
    assert answer["text"] == "turn on the lights"
    shipped = pickle.loads(pickle.dumps(processor))  # to a post-processing process: the search is rebuilt there
    assert shipped(spelled_log_probs("turn on the lights", noise={14: "x"}))["text"] == "turn on the lights"
    warm_up()  # compiles (or loads) without a set


def test_the_search_releases_the_interpreter_lock() -> None:
    """Post-processing threads decode clips at once: the compiled functions are declared nogil."""
    from elp.decoding import compiled

    assert compiled._search.targetoptions.get("nogil") is True
    assert torch.get_num_threads() >= 1  # (torch imported: the pool's rows arrive as tensors)


THREADED_DECODING = """
import random, string, sys
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from elp.decoding import WordBigramLM
from elp.decoding.compiled import CompiledCTCBeamDecoder
from elp.testing import CTC_VOCAB, spelled_log_probs
rng = random.Random(0)
words = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9))) for _ in range(3000)]
texts = [" ".join(rng.choice(words) for _ in range(6)) for _ in range(2000)]
lm = WordBigramLM.build(texts, alpha=0.5, beta=-1.0, beam_width=32, temperature=3.0, lookahead=True)
noise = np.random.default_rng(0)
inputs = []
for text in texts[:160]:
    logits = spelled_log_probs(text).numpy().astype(np.float64) + 2.0 * noise.standard_normal((2 * len(text), 29))
    inputs.append(logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)))
serial = [CompiledCTCBeamDecoder(CTC_VOCAB, lm).decode(x) for x in inputs]
shared = CompiledCTCBeamDecoder(CTC_VOCAB, lm)
with ThreadPoolExecutor(4) as pool:
    for _ in range(3):
        assert list(pool.map(shared.decode, inputs)) == serial
print("ok")
"""


def test_threads_decoding_with_one_decoder_get_the_serial_answers() -> None:
    """The search runs without the GIL and a server's model workers share a set's decoder: each thread keeps its
    own caches. (One typed dict shared by all threads corrupted the heap under this load and killed a server, so
    the load runs in a child process: a crash fails this test instead of the session.)"""
    import subprocess
    import sys

    assert len(CTC_VOCAB) == 29
    done = subprocess.run([sys.executable, "-c", THREADED_DECODING], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


@pytest.mark.parametrize("frames", [0, 1, 2])
def test_empty_and_one_frame_clips_agree(frames: int) -> None:
    lm = WordBigramLM.build(TEXTS, GENERAL, lookahead=True, temperature=3.0)
    uniform = np.log(np.full((frames, len(CTC_VOCAB)), 1 / len(CTC_VOCAB)))
    expected = CTCBeamDecoder(CTC_VOCAB, lm).decode(uniform)
    assert CompiledCTCBeamDecoder(CTC_VOCAB, lm).decode(uniform) == expected


@pytest.mark.parametrize("order", [2, 3], ids=["bigram", "trigram"])
def test_both_searches_rank_the_same_distinct_n_best_and_the_first_is_the_answer(order: int) -> None:
    """The n-best a second pass reads (``elp.decoding.rescoring``): the same texts in the same order from both
    searches, scores equal to float rounding, no text twice, and the first what ``decode`` answers."""
    lm = WordBigramLM.build(TEXTS, GENERAL, alpha=0.5, beta=-1.0, beam_width=16, temperature=2.0, order=order)
    reference, compiled = CTCBeamDecoder(CTC_VOCAB, lm), CompiledCTCBeamDecoder(CTC_VOCAB, lm)
    longest = 0
    for seed, text in enumerate(TEXTS * 2):
        log_probs = noisy_log_probs(text, seed, spread=(1.0, 2.0)[seed % 2])
        expected, found = reference.nbest(log_probs, 6), compiled.nbest(log_probs, 6)
        assert [h.text for h in found] == [h.text for h in expected], (text, seed)
        np.testing.assert_allclose([h.score for h in found], [h.score for h in expected], rtol=1e-9)
        np.testing.assert_allclose([h.acoustic for h in found], [h.acoustic for h in expected], rtol=1e-9)
        assert len({h.text for h in found}) == len(found)
        assert [h.score for h in found] == sorted((h.score for h in found), reverse=True)
        assert found[0].text == compiled.decode(log_probs) == reference.decode(log_probs)
        longest = max(longest, len(found))
    assert longest == 6  # the noise left several spellings in the beams
