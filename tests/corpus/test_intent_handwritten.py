"""The hand-written intent validation family: every intent four times, and never a sentence that training
reads or that the held-out test family holds."""

from __future__ import annotations

from training.corpus import intent_handwritten
from training.corpus.paraphrase_audio import handwritten_family
from training.corpus.text import intent_phrasings


def test_every_intent_of_the_corpus_has_four_sentences() -> None:
    assert set(intent_handwritten.SENTENCES) == set(intent_phrasings())
    assert all(len(set(texts)) == 4 for texts in intent_handwritten.SENTENCES.values())


def test_excluded_texts_are_dropped_after_normalising() -> None:
    kept, dropped = intent_handwritten.family({"lights off", "i'm cold"})
    assert "lights off" in dropped and "i'm cold" in dropped
    assert len(kept) + len(dropped) == sum(map(len, intent_handwritten.SENTENCES.values()))
    assert intent_handwritten.normalised("Lights, OFF!") == "lights off"


def test_no_kept_sentence_is_trained_on_or_held_out_for_the_test() -> None:
    from training.corpus.paraphrase import paraphrase_family
    from training.data.manifest import ManifestRow
    from training.suites.guard import held_out_reason

    family, dropped = handwritten_family(0)
    assert family["train"] == [] and len(family["valid"]) + len(dropped) == 124
    norm = intent_handwritten.normalised
    training = {norm(t) for texts in intent_phrasings().values() for t in texts}
    training |= {norm(p.text) for split in ("train", "valid") for p in paraphrase_family(0)[split]}
    for sentence in family["valid"]:
        assert norm(sentence.text) not in training
        row = ManifestRow(id="x", path="/nowhere/x.flac", duration_s=1.0, split="valid", task="intent",
                          speaker="espeak", text=sentence.text, label=sentence.intent)
        assert held_out_reason(row) is None  # not a held-out test phrasing
