"""The word LM's trigram level: a distribution for every two-word history, the background's triples mixed in
exactly, storage beside the bigram's tensors, and the look-ahead bound the search relies on."""

from __future__ import annotations

import pytest

from elp import AdapterSet, load_backbone
from elp.decoding import LanguageModelConfig, WordBigramLM
from elp.decoding.arpa import ArpaModel
from elp.decoding.bigram import BOS, EOS
from elp.errors import ConfigError
from elp.testing import make_random_adapter_set, spelled_log_probs

TEXTS = ["turn on the lights", "turn off the radio", "the lights are on", "open the door", "open the window"]
GENERAL = {"door": 2.0, "window": 1.0, "the": 5.0, "radio": 1.0, "lamp": 0.5}
HISTORIES = [("", BOS), (BOS, "turn"), ("on", "the"), ("off", "the"), ("open", "the"), ("lamp", "the"),
             ("the", "never-seen"), ("never-seen", "the")]
BACKGROUND = ArpaModel(
    unigrams={BOS: (-99.0, -0.3), EOS: (-0.9, 0.0), "the": (-0.7, -0.4), "door": (-1.4, -0.2), "window": (-1.5, 0.0),
              "open": (-1.3, -0.3), "lamp": (-1.8, 0.0), "on": (-1.2, -0.3)},
    bigrams={(BOS, "open"): -0.8, ("open", "the"): -0.3, ("the", "door"): -0.9, ("the", "lamp"): -1.2,
             ("on", "the"): -0.4, ("door", EOS): -0.2},
    declared={1: 8, 2: 6, 3: 2},
    bigram_backoffs={("open", "the"): -0.2, ("on", "the"): -0.1},
    trigrams={("open", "the", "lamp"): -0.5, ("on", "the", "lamp"): -0.7})


def _distribution_sums(lm: WordBigramLM, history: tuple[str, str]) -> float:
    return sum(10 ** lm.log10_prob(history, w) for w in lm.vocabulary() if w != BOS)


@pytest.mark.parametrize("background", [None, BACKGROUND], ids=["text", "text+background"])
def test_every_two_word_history_is_a_distribution(background: ArpaModel | None) -> None:
    lm = WordBigramLM.build(TEXTS, GENERAL, background=background, interpolation=0.6, order=3)
    assert lm.config.num_trigrams > 0 and lm.config.num_trigram_histories > 0
    for history in HISTORIES:
        assert _distribution_sums(lm, history) == pytest.approx(1.0, abs=1e-5), history


def test_two_words_of_history_tell_what_one_cannot() -> None:
    bigram = WordBigramLM.build(TEXTS, GENERAL)
    trigram = WordBigramLM.build(TEXTS, GENERAL, order=3)
    assert bigram.log10_prob(("on", "the"), "lights") == bigram.log10_prob(("off", "the"), "lights")
    assert trigram.log10_prob(("on", "the"), "lights") > trigram.log10_prob(("off", "the"), "lights") + 0.3
    assert trigram.log10_prob(("off", "the"), "radio") > trigram.log10_prob(("on", "the"), "radio") + 0.3
    # a history the level never saw falls back to the bigram exactly; so does a plain one-word history
    assert trigram.log10_prob(("lamp", "the"), "door") == trigram.log10_prob("the", "door")
    assert trigram.sentence_log10_prob(["turn", "on", "the", "lights"]) > bigram.sentence_log10_prob(
        ["turn", "on", "the", "lights"])


def test_a_background_triple_pulls_its_probability_in_and_pruning_keeps_the_likeliest() -> None:
    text_only = WordBigramLM.build(TEXTS, GENERAL, background=BACKGROUND, interpolation=0.6, order=3,
                                   max_background_bigrams=0)
    text_only_p = 10 ** WordBigramLM.build(TEXTS, GENERAL, background=None, order=3).log10_prob(("open", "the"), "lamp")
    mixed = 10 ** text_only.log10_prob(("open", "the"), "lamp")
    # the text side's own p(lamp | open the) differs from the text-only model's (its unigram mixes the background's
    # words), so check the mixture against its two ends: above the text's, below the background's 10^-0.5
    assert text_only_p < mixed < 10 ** -0.5
    assert mixed > 0.4 * 10 ** -0.5
    both = WordBigramLM.build(TEXTS, GENERAL, background=BACKGROUND, interpolation=0.6, order=3)
    one = WordBigramLM.build(TEXTS, GENERAL, background=BACKGROUND, interpolation=0.6, order=3,
                             max_background_trigrams=1)
    assert one.config.num_trigrams == both.config.num_trigrams - 1
    # "open the lamp" is the likelier of the two (p(open) p(the | open) p(lamp | open the)): it is the one kept
    assert one.log10_prob(("open", "the"), "lamp") == pytest.approx(both.log10_prob(("open", "the"), "lamp"), abs=1e-6)
    assert one.log10_prob(("on", "the"), "lamp") < both.log10_prob(("on", "the"), "lamp")


def test_lookahead_bounds_every_word_of_the_span_and_is_exact_without_a_two_word_history() -> None:
    lm = WordBigramLM.build([*TEXTS, "the door is open", "the dog ate the lights"], {**GENERAL, "dormant": 0.5},
                            background=BACKGROUND, interpolation=0.6, order=3)
    words = [w for w in lm.vocabulary() if w not in (BOS, EOS)]
    for history in HISTORIES:
        for prefix in ("", "d", "do", "l", "li", "lamp", "r", "zz"):
            brute = [lm.log10_prob(history, w) for w in words if w.startswith(prefix)]
            best = lm.best_log10_prob(history, lm.prefix_span(prefix))
            if not brute:
                assert best is None
                continue
            assert best >= max(brute) - 1e-9, (history, prefix)  # an optimistic estimate, never a pessimistic one
            if lm._trigram_history(history[0], lm._lookup()[1].get(history[1], -1)) < 0:
                assert best == pytest.approx(max(brute), abs=1e-9), (history, prefix)


def test_the_level_travels_in_the_set_and_a_bigram_set_keeps_its_tensors(tiny_backbone_dir, tmp_path) -> None:
    asr_set = make_random_adapter_set(load_backbone(tiny_backbone_dir("whisper")), "asr", seed=0)
    bigram = WordBigramLM.build(TEXTS, GENERAL)
    assert not any(name.startswith("trigram") for name in bigram.state_dict())
    asr_set.attach_language_model(WordBigramLM.build(TEXTS, GENERAL, background=BACKGROUND, order=3, alpha=0.7))
    loaded = AdapterSet.load(asr_set.save(tmp_path / "asr-trigram"))
    assert loaded.config.language_model == asr_set.config.language_model
    words = loaded.language_model.vocabulary()
    for history in HISTORIES:
        assert [loaded.language_model.log10_prob(history, w) for w in words[1:]] == \
            [asr_set.language_model.log10_prob(history, w) for w in words[1:]]
    assert loaded.decode_ctc(spelled_log_probs("open the door")) == "open the door"


@pytest.mark.parametrize("sizes", [dict(num_trigrams=5), dict(num_trigram_histories=2),
                                   dict(num_trigrams=2, num_trigram_histories=3), dict(num_trigrams=-1)])
def test_inconsistent_trigram_sizes_are_refused(sizes: dict) -> None:
    with pytest.raises(ConfigError):
        LanguageModelConfig(num_words=5, num_word_bytes=10, num_bigrams=3, **sizes)
    with pytest.raises(ConfigError):
        WordBigramLM.build(TEXTS, order=4)


@pytest.mark.parametrize("tamper", ["word out of range", "start past the end", "histories unsorted"])
def test_a_set_whose_trigram_level_was_edited_is_refused_at_load(tiny_backbone_dir, tmp_path, tamper: str) -> None:
    """The compiled search reads the level without bounds checks: an edited one must never reach it."""
    import hashlib
    import json

    from safetensors.torch import load_file, save_file

    from elp.errors import AdapterFormatError

    asr_set = make_random_adapter_set(load_backbone(tiny_backbone_dir("whisper")), "asr", seed=0)
    asr_set.attach_language_model(WordBigramLM.build(TEXTS, GENERAL, background=BACKGROUND, order=3))
    folder = asr_set.save(tmp_path / "asr-trigram")
    tensors = load_file(folder / "adapter_model.safetensors")
    if tamper == "word out of range":
        tensors["language_model.trigram_word"][0] = 10_000
    elif tamper == "start past the end":
        tensors["language_model.trigram_history_start"][-1] += 5
    else:
        tensors["language_model.trigram_histories"] = tensors["language_model.trigram_histories"].flip(0).contiguous()
    save_file(tensors, folder / "adapter_model.safetensors")
    config = json.loads((folder / "adapter_config.json").read_text())  # re-signed: only the level is wrong
    config["weights_sha256"] = hashlib.sha256((folder / "adapter_model.safetensors").read_bytes()).hexdigest()
    (folder / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterFormatError, match="trigram"):
        AdapterSet.load(folder)
