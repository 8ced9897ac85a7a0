"""The held-out phrasing family is complete, normalised and apart from the training templates."""

from __future__ import annotations

from training.corpus.text import intent_phrasings, normalise
from training.suites.phrasings import held_out_phrasings


def test_every_intent_has_four_to_six_new_phrasings() -> None:
    family, corpus = held_out_phrasings(), intent_phrasings()
    assert set(family) == set(corpus) and len(family) == 31
    existing = {p for phrasings in corpus.values() for p in phrasings}
    for intent, phrasings in family.items():
        assert 4 <= len(phrasings) <= 6, intent
        assert all(p == normalise(p) and p not in existing for p in phrasings), intent
