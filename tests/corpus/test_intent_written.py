"""The hand-written intent training family: every intent, and never a sentence that validation reads or that the
held-out test family holds."""

from __future__ import annotations

from training.corpus import intent_handwritten, intent_written
from training.corpus.paraphrase_audio import written_family
from training.corpus.text import intent_phrasings


def test_every_intent_of_the_corpus_has_distinct_sentences() -> None:
    assert set(intent_written.SENTENCES) == set(intent_phrasings())
    assert all(len(set(texts)) == len(texts) >= 10 for texts in intent_written.SENTENCES.values())


def test_excluded_texts_are_dropped_after_normalising() -> None:
    kept, dropped = intent_written.family({"lights on", "volume up"})
    assert sorted(dropped) == ["lights on", "volume up"]
    assert len(kept) + 2 == sum(map(len, intent_written.SENTENCES.values()))


def test_no_kept_sentence_is_a_validation_test_or_held_out_phrasing() -> None:
    from training.corpus.paraphrase import paraphrase_family
    from training.data.manifest import ManifestRow
    from training.suites.guard import held_out_reason

    family, dropped = written_family(0)
    assert family["valid"] == [] and dropped
    norm = intent_handwritten.normalised
    taken = {norm(t) for texts in intent_phrasings().values() for t in texts}
    taken |= {norm(p.text) for split in ("train", "valid") for p in paraphrase_family(0)[split]}
    taken |= {norm(t) for texts in intent_handwritten.SENTENCES.values() for t in texts}
    for sentence in family["train"]:
        assert norm(sentence.text) not in taken
        row = ManifestRow(id="x", path="/nowhere/x.flac", duration_s=1.0, split="train", task="intent",
                          speaker="espeak", text=sentence.text, label=sentence.intent)
        assert held_out_reason(row) is None  # the training guard accepts it


def test_copies_repeat_every_kept_sentence() -> None:
    once, _ = written_family(0)
    twice, _ = written_family(0, copies=2)
    assert [p.text for p in twice["train"]] == [p.text for p in once["train"]] * 2
