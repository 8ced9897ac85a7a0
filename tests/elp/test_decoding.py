"""The ASR word LM: ARPA semantics, storage inside the set's safetensors, and beam search with it."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from elp import AdapterSet, load_backbone
from elp.decoding import WordBigramLM
from elp.decoding.bigram import BOS, EOS
from elp.errors import AdapterFormatError, ConfigError
from elp.testing import CTC_VOCAB, make_random_adapter_set, spelled_log_probs

TEXTS = ["turn on the lights", "turn off the lights", "the lights are on", "open the door"]


def test_bigram_distribution_sums_to_one_for_every_history() -> None:
    lm = WordBigramLM.build(TEXTS, {"door": 2.0, "window": 1.0, "the": 5.0})
    words = [w for w in lm.vocabulary() if w != BOS]
    for history in (BOS, "the", "turn", "window"):
        total = sum(10 ** lm.log10_prob(history, w) for w in words)
        assert total == pytest.approx(1.0, abs=1e-4)
    # a seen continuation beats an unseen one; an unseen general word still has a probability
    assert lm.log10_prob("the", "lights") > lm.log10_prob("the", "window") > -math.inf
    assert lm.log10_prob("the", "zebra") is None
    assert lm.sentence_log10_prob(["turn", "on", "the", "lights"]) > lm.sentence_log10_prob(["lights", "the", "on"])


@pytest.fixture(scope="module")
def asr_set(tiny_backbone_dir) -> AdapterSet:
    backbone = load_backbone(tiny_backbone_dir("whisper"))
    return make_random_adapter_set(backbone, "asr", seed=0)


def test_beam_search_with_the_lm_repairs_a_misspelling_greedy_keeps(asr_set: AdapterSet) -> None:
    log_probs = spelled_log_probs("turn on the lights", noise={14: "x"})  # "lights" -> "lixhts"
    asr_set.attach_language_model(None)
    assert asr_set.decode_ctc(log_probs) == "turn on the lixhts"
    asr_set.attach_language_model(WordBigramLM.build(TEXTS, alpha=0.8, beta=1.0, beam_width=16))
    assert asr_set.decode_ctc(log_probs) == "turn on the lights"


def test_a_stronger_unknown_word_penalty_repairs_a_confident_misspelling(asr_set: AdapterSet) -> None:
    """The acoustics favour "lixhts" by ~2.7 nats: a mild penalty for leaving the vocabulary keeps the
    non-word, a strong one (what elp-add-lm can now choose on validation) spells the known word."""
    log_probs = spelled_log_probs("turn on the lights")
    confident = torch.full((len(CTC_VOCAB),), -8.0)
    confident[CTC_VOCAB.index("x")], confident[CTC_VOCAB.index("g")] = -0.3, -3.0
    log_probs[2 * 14] = torch.log_softmax(confident, dim=-1)  # the frame of the "g": "x" far likelier
    lm = WordBigramLM.build(TEXTS, alpha=0.8, beta=1.0, beam_width=16)
    decoded = {}
    for unk in (-1.0, -30.0):
        lm.config = dataclasses.replace(lm.config, unk_score_offset=unk)
        asr_set.attach_language_model(lm)
        decoded[unk] = asr_set.decode_ctc(log_probs)
    assert decoded == {-1.0: "turn on the lixhts", -30.0: "turn on the lights"}


def test_a_temperature_keeps_a_letter_the_head_nearly_ruled_out_within_the_lm_s_reach(asr_set: AdapterSet) -> None:
    """The head puts the "g" of "lights" at ~e^-7, below the search's pruning: at temperature 1 no
    beam can spell the word, at 3 the letter survives pruning and the LM picks it."""
    log_probs = spelled_log_probs("turn on the lights")
    confident = torch.full((len(CTC_VOCAB),), -9.0)
    confident[CTC_VOCAB.index("x")], confident[CTC_VOCAB.index("g")] = -0.1, -7.0
    log_probs[2 * 14] = torch.log_softmax(confident, dim=-1)
    lm = WordBigramLM.build(TEXTS, alpha=0.8, beta=1.0, beam_width=16, unk_score_offset=-30.0)
    decoded = {}
    for temperature in (1.0, 3.0):
        lm.config = dataclasses.replace(lm.config, temperature=temperature)
        asr_set.attach_language_model(lm)
        decoded[temperature] = asr_set.decode_ctc(log_probs)
    assert decoded[1.0] != "turn on the lights" and decoded[3.0] == "turn on the lights"
    with pytest.raises(ConfigError, match="temperature"):
        dataclasses.replace(lm.config, temperature=0.0)


def test_tempered_log_probs_are_a_log_softmax_of_the_scaled_scores() -> None:
    from elp.decoding.beam import tempered

    scores = torch.log_softmax(torch.randn(5, len(CTC_VOCAB), generator=torch.Generator().manual_seed(0)), dim=-1)
    expected = torch.log_softmax(scores.double() / 1.7, dim=-1).numpy()
    assert tempered(scores.double().numpy(), 1.7) == pytest.approx(expected, abs=1e-12)


def test_lm_round_trips_inside_the_weights_and_is_checked(asr_set: AdapterSet, tmp_path) -> None:
    asr_set.attach_language_model(WordBigramLM.build(TEXTS, {"window": 1.0}, alpha=0.7, beta=2.0))
    folder = asr_set.save(tmp_path / "asr-lm")
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    loaded = AdapterSet.load(folder)
    assert loaded.config.language_model == asr_set.config.language_model
    words = loaded.language_model.vocabulary()
    assert words == asr_set.language_model.vocabulary()
    for history in ("<s>", "the", "open"):
        assert [loaded.language_model.log10_prob(history, w) for w in words[1:]] == \
            [asr_set.language_model.log10_prob(history, w) for w in words[1:]]
    log_probs = spelled_log_probs("open the door")
    assert loaded.decode_ctc(log_probs) == "open the door"
    # a config that claims another vocabulary size no longer fits the stored tensors
    config, weights = asr_set.to_bytes()
    forged = config.replace(b'"num_words": ', b'"num_words": 1')
    with pytest.raises(AdapterFormatError):
        AdapterSet.from_bytes(forged, weights)


def test_only_asr_sets_take_a_language_model(tiny_backbone_dir) -> None:
    backbone = load_backbone(tiny_backbone_dir("whisper"))
    emotion = make_random_adapter_set(backbone, "emotion", labels=["a", "b"], seed=0)
    with pytest.raises(Exception, match="cannot carry a language model"):
        emotion.attach_language_model(WordBigramLM.build(TEXTS))


def test_eos_and_bos_are_in_the_vocabulary() -> None:
    words = WordBigramLM.build(TEXTS).vocabulary()
    assert words[:2] == [BOS, EOS]


# A background "general English" model in ARPA form: tab-separated like CMU Sphinx writes it, with a
# back-off weight on "the" and pairs the corpus texts never show.
ARPA = """\\data\\
ngram 1=7
ngram 2=5

\\1-grams:
-99\t<s>\t-0.3
-1.0\t</s>
-0.8\tthe\t-0.4
-1.2\tzebra
-1.5\topen\t-0.2
-1.6\tdoor
-2.0\tA.B.

\\2-grams:
-0.5\t<s>\tthe
-0.3\tthe\tzebra
-0.9\tthe\tdoor
-0.4\topen\tthe
-0.2\tzebra\t</s>

\\end\\
"""


def _background(tmp_path, text: str = ARPA):
    from elp.decoding.arpa import read_arpa

    path = tmp_path / "general.arpa"
    path.write_text(text)
    return read_arpa(path)


def test_arpa_reader_takes_both_levels_and_tells_a_cut_file(tmp_path) -> None:
    import gzip

    arpa = _background(tmp_path)
    assert arpa.complete and arpa.unigrams["the"] == (-0.8, -0.4) and arpa.unigrams["door"] == (-1.6, 0.0)
    assert arpa.bigrams[("the", "zebra")] == -0.3 and len(arpa.bigrams) == 5
    assert "A.B." not in arpa.restricted("abcdefghijklmnopqrstuvwxyz' ").unigrams
    cut = _background(tmp_path, ARPA[: ARPA.index("-0.4\topen")] + "-0.4\tope")  # the writer died mid-line
    assert not cut.complete and len(cut.bigrams) == 3
    (tmp_path / "g.arpa.gz").write_bytes(gzip.compress(ARPA.replace("\t", " ").encode()))
    from elp.decoding.arpa import read_arpa

    assert read_arpa(tmp_path / "g.arpa.gz").bigrams == arpa.bigrams


@pytest.mark.parametrize("prune", [0, 2])
def test_background_interpolation_stays_normalised_and_brings_its_pairs(tmp_path, prune: int) -> None:
    background = _background(tmp_path).restricted("abcdefghijklmnopqrstuvwxyz' ")
    lm = WordBigramLM.build(TEXTS, background=background, interpolation=0.6, max_background_bigrams=prune)
    words = [w for w in lm.vocabulary() if w != BOS]
    assert "zebra" in words and "A.B." not in words
    for history in (BOS, "the", "open", "zebra", "lights"):
        assert sum(10 ** lm.log10_prob(history, w) for w in words) == pytest.approx(1.0, abs=1e-6)
    general = {w: 10 ** p for w, (p, _) in background.unigrams.items() if w not in (BOS, EOS)}
    corpus_only = WordBigramLM.build(TEXTS, general)
    if not prune:  # every background pair kept: the exact mixture, pair by pair
        assert lm.config.num_bigrams == len(set(corpus_only_pairs(corpus_only)) | set(background.bigrams))
        the_zebra = 0.6 * 10 ** corpus_only.log10_prob("the", "zebra") + 0.4 * 10 ** -0.3
        assert 10 ** lm.log10_prob("the", "zebra") == pytest.approx(the_zebra, rel=1e-6)  # float32 storage
    # the pair the corpus never saw but English knows now beats another unseen pair by far more
    gain = lm.log10_prob("the", "zebra") - lm.log10_prob("the", "open")
    assert gain > corpus_only.log10_prob("the", "zebra") - corpus_only.log10_prob("the", "open") + 0.5


def corpus_only_pairs(lm: WordBigramLM) -> list[tuple[str, str]]:
    words = lm.vocabulary()
    return [(words[v], words[w]) for v, w in lm.bigram_index.tolist()]


def test_interpolation_outside_zero_one_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError):
        WordBigramLM.build(TEXTS, background=_background(tmp_path), interpolation=1.5)


@pytest.mark.parametrize("with_background", [False, True])
def test_lookahead_is_the_best_word_a_prefix_can_become(tmp_path, with_background: bool) -> None:
    """best_log10_prob over a prefix_span equals the brute-force maximum over the vocabulary, for
    histories with stored pairs, histories that back off, and an unknown history."""
    background = _background(tmp_path).restricted("abcdefghijklmnopqrstuvwxyz' ") if with_background else None
    lm = WordBigramLM.build([*TEXTS, "the door is open", "the dog ate the lights"],
                            {"door": 2.0, "dormant": 0.5, "window": 1.0}, background=background)
    words = [w for w in lm.vocabulary() if w not in (BOS, EOS)]
    for history in (BOS, "the", "open", "window", "never-seen"):
        for prefix in ("", "d", "do", "dor", "li", "lights", "t", "zz"):
            brute = [lm.log10_prob(history, w) for w in words if w.startswith(prefix)]
            best = lm.best_log10_prob(history, lm.prefix_span(prefix))
            assert best == (pytest.approx(max(brute), abs=1e-9) if brute else None), (history, prefix)


def test_lookahead_keeps_a_likely_word_a_narrow_beam_otherwise_drops(asr_set: AdapterSet) -> None:
    """At the "g" of "lights" the acoustics slightly prefer "x", and "lix" starts a (rare) word too, so
    an LM-blind beam of one follows it to "lixhts"; the look-ahead sees that "lig" can still become the
    likely "lights" and keeps it."""
    log_probs = spelled_log_probs("turn on the lights", noise={14: "x"})
    lm = WordBigramLM.build(TEXTS, {"lixivium": 0.01, "lights": 1.0}, alpha=0.8, beta=1.0, beam_width=1)
    decoded = {}
    for lookahead in (False, True):
        lm.config = dataclasses.replace(lm.config, lookahead=lookahead)
        asr_set.attach_language_model(lm)
        decoded[lookahead] = asr_set.decode_ctc(log_probs)
    assert decoded == {False: "turn on the lixhts", True: "turn on the lights"}


def test_a_long_lived_decoder_keeps_its_caches_bounded(monkeypatch) -> None:
    """Both searches start their caches afresh once they hold MAX_CACHED entries (a server's decoder meets new word
    pairs forever)."""
    import elp.decoding.beam as beam
    import elp.decoding.compiled as compiled

    monkeypatch.setattr(beam, "MAX_CACHED", 3)
    monkeypatch.setattr(compiled, "MAX_CACHED", 3)
    lm = WordBigramLM.build(TEXTS, alpha=0.8, beta=1.0, beam_width=8, lookahead=True)
    reference, served = beam.CTCBeamDecoder(CTC_VOCAB, lm), compiled.CompiledCTCBeamDecoder(CTC_VOCAB, lm)
    for decoder in (reference, served):
        assert decoder.decode(spelled_log_probs("turn on the lights").numpy()) == "turn on the lights"
    assert (("", "the"), "lights") in reference._word_cache and len(reference._word_cache) > 3  # filled by one clip ...
    assert len(served._thread_caches[1]) > 3
    for decoder in (reference, served):
        assert decoder.decode(spelled_log_probs("open the door").numpy()) == "open the door"
    assert (("", "the"), "lights") not in reference._word_cache  # ... started afresh by the next
    assert (("", "the"), "door") in reference._word_cache
    fresh = compiled.CompiledCTCBeamDecoder(CTC_VOCAB, lm)
    fresh.decode(spelled_log_probs("open the door").numpy())
    assert dict(served._thread_caches[1]) == dict(fresh._thread_caches[1])
