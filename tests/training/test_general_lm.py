"""The offline general-English bigram: the pocketsphinx dump is checked before anything uses it."""

from __future__ import annotations

import importlib.util

import pytest

from elp.decoding.arpa import ArpaBigrams, read_arpa_bigrams
from training import general_lm

GOOD = ArpaBigrams({"<s>": (-99.0, -0.3), "</s>": (-0.7, 0.0), "the": (-0.25, -0.2), "kettle": (-0.62, 0.0)},
                   {("<s>", "the"): -0.1, ("the", "kettle"): -0.4}, {1: 4, 2: 2})


def test_a_written_bigram_file_reads_back_whole(tmp_path) -> None:
    general_lm.write_bigram_arpa(GOOD, tmp_path / "lm" / "g.arpa")
    back = read_arpa_bigrams(tmp_path / "lm" / "g.arpa")
    assert back.complete and back.unigrams == GOOD.unigrams and back.bigrams == GOOD.bigrams


@pytest.mark.parametrize("broken", ["lost unigram", "lost bigrams", "not a distribution"])
def test_a_damaged_dump_is_refused(broken: str) -> None:
    general_lm.accept(GOOD)
    unigrams, bigrams, declared = dict(GOOD.unigrams), dict(GOOD.bigrams), dict(GOOD.declared)
    if broken == "lost unigram":
        del unigrams["kettle"]
    elif broken == "lost bigrams":
        declared[2] = 2000  # 2 of 2,000 arrived
    else:
        unigrams = {w: (p - 3.0, b) for w, (p, b) in unigrams.items()}  # values from a dangling log table
    with pytest.raises(SystemExit):
        general_lm.accept(ArpaBigrams(unigrams, bigrams, declared))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("pocketsphinx") is None, reason="pocketsphinx not installed")
def test_pocketsphinx_english_model_converts(tmp_path) -> None:
    assert general_lm.main(["--out", str(tmp_path / "en-us.arpa")]) == 0
    model = read_arpa_bigrams(tmp_path / "en-us.arpa")
    assert model.complete and len(model.unigrams) == 72547 and len(model.bigrams) > 2_049_000
    assert sum(10 ** p for p, _ in model.unigrams.values()) == pytest.approx(1.0, abs=0.05)
    assert model.bigrams[("of", "the")] > -1.0 > model.unigrams["kettle"][0]  # everyday English, in log10
