"""The offline general-English trigram: pocketsphinx's trie file read directly, checked before anything uses it."""

from __future__ import annotations

import importlib.util
import math

import pytest

from elp.decoding.arpa import ArpaModel, read_arpa, write_arpa
from training import general_lm

GOOD = ArpaModel({"<s>": (-99.0, -0.3), "</s>": (-0.7, 0.0), "the": (-0.25, -0.2), "kettle": (-0.62, 0.0)},
                 {("<s>", "the"): -0.1, ("the", "kettle"): -0.4}, {1: 4, 2: 2, 3: 1},
                 {("<s>", "the"): -0.15}, {("<s>", "the", "kettle"): -0.2})
needs_pocketsphinx = pytest.mark.skipif(importlib.util.find_spec("pocketsphinx") is None,
                                        reason="pocketsphinx not installed")

SMALL_ARPA = """\\data\\
ngram 1=5
ngram 2=5
ngram 3=3

\\1-grams:
-0.8 </s> 0.0
-99 <s> -0.30
-0.6 kettle -0.25
-0.5 on -0.20
-0.4 the -0.35

\\2-grams:
-0.3 <s> the -0.1
-0.2 the kettle -0.05
-0.7 kettle on -0.15
-0.9 on </s>
-0.5 the on

\\3-grams:
-0.1 <s> the kettle
-0.25 the kettle on
-0.05 kettle on </s>

\\end\\
"""


def test_a_written_trigram_file_reads_back_whole(tmp_path) -> None:
    write_arpa(GOOD, tmp_path / "lm" / "g.arpa")
    back = read_arpa(tmp_path / "lm" / "g.arpa")
    assert back.complete and back.order == 3
    assert (back.unigrams, back.bigrams, back.bigram_backoffs, back.trigrams) == (
        GOOD.unigrams, GOOD.bigrams, GOOD.bigram_backoffs, GOOD.trigrams)
    assert read_arpa(tmp_path / "lm" / "g.arpa", max_order=2).trigrams == {}


@pytest.mark.parametrize("broken", ["lost unigram", "lost bigrams", "lost trigrams", "not a distribution"])
def test_a_damaged_model_is_refused(broken: str) -> None:
    general_lm.accept(GOOD)
    unigrams, bigrams, declared = dict(GOOD.unigrams), dict(GOOD.bigrams), dict(GOOD.declared)
    if broken == "lost unigram":
        del unigrams["kettle"]
    elif broken == "lost bigrams":
        declared[2] = 2000  # 2 of 2,000 arrived
    elif broken == "lost trigrams":
        declared[3] = 1000
    else:
        unigrams = {w: (p - 3.0, b) for w, (p, b) in unigrams.items()}  # values from a wrong log table
    with pytest.raises(SystemExit):
        general_lm.accept(ArpaModel(unigrams, bigrams, declared, GOOD.bigram_backoffs, GOOD.trigrams))


@needs_pocketsphinx
def test_the_trie_reader_gives_back_what_pocketsphinx_stored(tmp_path) -> None:
    """pocketsphinx reads a small ARPA file and writes its trie; the reader finds every n-gram with its values."""
    import pocketsphinx as ps

    (tmp_path / "small.arpa").write_text(SMALL_ARPA)
    config, logmath = ps.Config(), ps.LogMath()
    model = ps.NGramModel(config, logmath, str(tmp_path / "small.arpa"))
    model.write(str(tmp_path / "small.lm.bin"), ps.NGramModel.str_to_type("bin"))
    expected = read_arpa(tmp_path / "small.arpa")
    back = general_lm.read_sphinx_trie(tmp_path / "small.lm.bin")
    assert set(back.trigrams) == set(expected.trigrams) and set(back.bigrams) == set(expected.bigrams)
    for level, reference in ((back.trigrams, expected.trigrams), (back.bigrams, expected.bigrams),
                             (back.bigram_backoffs, expected.bigram_backoffs)):
        for key, value in reference.items():
            assert level[key] == pytest.approx(value, abs=2e-4), key
    assert back.unigrams["kettle"] == pytest.approx((-0.6, -0.25), abs=2e-4)


@pytest.mark.slow
@needs_pocketsphinx
def test_pocketsphinx_english_model_converts_and_scores_as_pocketsphinx_does(tmp_path) -> None:
    import pocketsphinx as ps

    assert general_lm.main(["--out", str(tmp_path / "en-us.arpa")]) == 0
    model = read_arpa(tmp_path / "en-us.arpa")
    assert model.complete and len(model.unigrams) == 72547
    assert len(model.bigrams) > 2_049_000 and len(model.trigrams) > 1_660_000
    assert sum(10 ** p for p, _ in model.unigrams.values()) == pytest.approx(1.0, abs=0.05)
    assert model.bigrams[("of", "the")] > -1.0 > model.unigrams["kettle"][0]  # everyday English, in log10
    sphinx = ps.NGramModel(ps.Config(), ps.LogMath(), ps.get_model_path("en-us/en-us.lm.bin"))
    for (before, history, word), log10 in list(model.trigrams.items())[::250_000]:
        assert sphinx.prob([word, history, before]) * math.log10(1.0001) == pytest.approx(log10, abs=2e-4)
