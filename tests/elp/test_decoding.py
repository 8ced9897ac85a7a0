"""The ASR word LM: ARPA semantics, storage inside the set's safetensors, and beam search with it."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from elp import AdapterSet, load_backbone
from elp.decoding import WordBigramLM
from elp.decoding.bigram import BOS, EOS
from elp.errors import AdapterFormatError
from elp.testing import make_random_adapter_set, save_tiny_backbone

TEXTS = ["turn on the lights", "turn off the lights", "the lights are on", "open the door"]
VOCAB = ["<blank>", " ", "'", *"abcdefghijklmnopqrstuvwxyz"]


def test_bigram_distribution_sums_to_one_for_every_history() -> None:
    lm = WordBigramLM.build(TEXTS, {"door": 2.0, "window": 1.0, "the": 5.0})
    unigram, _ = lm.tables()
    words = [w for w in unigram if w != BOS]
    for history in (BOS, "the", "turn", "window"):
        total = sum(10 ** lm.log10_prob(history, w) for w in words)
        assert total == pytest.approx(1.0, abs=1e-4)
    # a seen continuation beats an unseen one; an unseen general word still has a probability
    assert lm.log10_prob("the", "lights") > lm.log10_prob("the", "window") > -math.inf
    assert lm.log10_prob("the", "zebra") is None
    assert lm.sentence_log10_prob(["turn", "on", "the", "lights"]) > lm.sentence_log10_prob(["lights", "the", "on"])


def _one_hot_path(text: str, noise: dict[int, str] | None = None) -> torch.Tensor:
    """Log-probs whose best path spells ``text`` (one frame per char, blanks between); at frame
    positions in ``noise`` a wrong letter is slightly more likely than the right one."""
    frames = []
    for position, char in enumerate(text):
        row = torch.full((len(VOCAB),), -8.0)
        row[VOCAB.index(char)] = -0.4
        if noise and position in noise:
            row[VOCAB.index(noise[position])] = -0.3
        frames += [row, torch.full((len(VOCAB),), -8.0).index_fill(0, torch.tensor([0]), -0.01)]
    return torch.log_softmax(torch.stack(frames), dim=-1)


@pytest.fixture(scope="module")
def asr_set(tmp_path_factory) -> AdapterSet:
    backbone = load_backbone(save_tiny_backbone(tmp_path_factory.mktemp("bb") / "w", "whisper"))
    return make_random_adapter_set(backbone, "asr", seed=0)


def test_beam_search_with_the_lm_repairs_a_misspelling_greedy_keeps(asr_set: AdapterSet) -> None:
    log_probs = _one_hot_path("turn on the lights", noise={14: "x"})  # "lights" -> "lixhts"
    asr_set.attach_language_model(None)
    assert asr_set.decode_ctc(log_probs) == "turn on the lixhts"
    asr_set.attach_language_model(WordBigramLM.build(TEXTS, alpha=0.8, beta=1.0, beam_width=16))
    assert asr_set.decode_ctc(log_probs) == "turn on the lights"


def test_a_stronger_unknown_word_penalty_repairs_a_confident_misspelling(asr_set: AdapterSet) -> None:
    """The acoustics favour "lixhts" by ~2.7 nats: a mild penalty for leaving the vocabulary keeps the
    non-word, a strong one (what elp-add-lm can now choose on validation) spells the known word."""
    log_probs = _one_hot_path("turn on the lights")
    confident = torch.full((len(VOCAB),), -8.0)
    confident[VOCAB.index("x")], confident[VOCAB.index("g")] = -0.3, -3.0
    log_probs[2 * 14] = torch.log_softmax(confident, dim=-1)  # the frame of the "g": "x" far likelier
    lm = WordBigramLM.build(TEXTS, alpha=0.8, beta=1.0, beam_width=16)
    decoded = {}
    for unk in (-1.0, -30.0):
        lm.config = dataclasses.replace(lm.config, unk_score_offset=unk)
        asr_set.attach_language_model(lm)
        decoded[unk] = asr_set.decode_ctc(log_probs)
    assert decoded == {-1.0: "turn on the lixhts", -30.0: "turn on the lights"}


def test_lm_round_trips_inside_the_weights_and_is_checked(asr_set: AdapterSet, tmp_path) -> None:
    asr_set.attach_language_model(WordBigramLM.build(TEXTS, {"window": 1.0}, alpha=0.7, beta=2.0))
    folder = asr_set.save(tmp_path / "asr-lm")
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    loaded = AdapterSet.load(folder)
    assert loaded.config.language_model == asr_set.config.language_model
    assert loaded.language_model.tables() == asr_set.language_model.tables()
    log_probs = _one_hot_path("open the door")
    assert loaded.decode_ctc(log_probs) == "open the door"
    # a config that claims another vocabulary size no longer fits the stored tensors
    config, weights = asr_set.to_bytes()
    forged = config.replace(b'"num_words": ', b'"num_words": 1')
    with pytest.raises(AdapterFormatError):
        AdapterSet.from_bytes(forged, weights)


def test_only_asr_sets_take_a_language_model(tmp_path) -> None:
    backbone = load_backbone(save_tiny_backbone(tmp_path / "w", "whisper"))
    emotion = make_random_adapter_set(backbone, "emotion", labels=["a", "b"], seed=0)
    with pytest.raises(Exception, match="only an ASR"):
        emotion.attach_language_model(WordBigramLM.build(TEXTS))


def test_eos_and_bos_are_in_the_vocabulary() -> None:
    unigram, _ = WordBigramLM.build(TEXTS).tables()
    assert BOS in unigram and EOS in unigram
