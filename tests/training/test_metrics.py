"""Metric definitions checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import (
    EditCounts,
    cer,
    char_errors,
    clip_errors,
    clip_rate,
    compute_eer,
    compute_min_dcf,
    confusion_matrix,
    label_errors,
    paired_bootstrap,
    unweighted_accuracy,
    verification_metrics,
    weighted_accuracy,
    wer,
    word_errors,
)


def test_wer_one_sub_one_del() -> None:
    # "cat" -> "dog" (substitution), second "the" dropped (deletion): 2 / 6
    assert wer("the cat sat on the mat", "the dog sat on mat") == pytest.approx(2 / 6)
    assert word_errors("the cat sat on the mat", "the dog sat on mat") == EditCounts(4, 1, 1, 0)


def test_wer_is_corpus_level_not_mean_of_utterances() -> None:
    refs, hyps = ["a b c d", "e f"], ["a b c d", "x"]  # 0/4 and 2/2 -> 2/6, not mean 0.5
    assert wer(refs, hyps) == pytest.approx(2 / 6)
    assert wer(["a"], ["a b c"]) == pytest.approx(2.0)  # insertions can push WER above 1


def test_wer_empty_references() -> None:
    assert word_errors(["", "a b"], ["x y", "a b"]) == EditCounts(2, 0, 0, 2)
    assert wer(["", "a b"], ["x y", "a b"]) == pytest.approx(1.0)  # 2 insertions / 2 ref words
    assert wer([""], [""]) == 0.0
    assert wer(["  "], ["hello"]) == 1.0  # no reference words at all: anything said is all wrong
    assert wer([], []) == 0.0
    with pytest.raises(ValueError):
        wer(["a"], ["a", "b"])


def test_cer() -> None:
    assert cer("abcd", "abed") == pytest.approx(1 / 4)
    assert cer("the cat", "the bat") == pytest.approx(1 / 7)  # the space counts as a character
    assert char_errors(["ab", ""], ["a", "z"]) == EditCounts(1, 0, 1, 1)
    assert cer(["ab", ""], ["a", "z"]) == pytest.approx(2 / 2)


def test_eer_perfectly_separable_is_zero() -> None:
    r = compute_eer([0.9, 0.8, 0.7, 0.3, 0.2, 0.1], [1, 1, 1, 0, 0, 0])
    assert r.eer == 0.0
    assert 0.3 < r.threshold <= 0.7  # any threshold in the gap separates; we report the lowest target


def test_eer_known_crossing() -> None:
    # targets 0.9 0.8 0.3, non-targets 0.7 0.2 0.1; accept at >= 0.7: 1 of 3 targets missed
    # (0.3), 1 of 3 non-targets accepted (0.7) -> miss = fa = 1/3 exactly
    r = compute_eer([0.9, 0.8, 0.3, 0.7, 0.2, 0.1], [1, 1, 1, 0, 0, 0])
    assert r.eer == pytest.approx(1 / 3)
    assert r.threshold == pytest.approx(0.7)


def test_eer_interpolates_between_roc_points() -> None:
    # accept >= 0.8: miss 2/3, fa 1/2; accept >= 0.7: miss 1/3, fa 1/2 -> curves cross at 1/2
    r = compute_eer([0.9, 0.7, 0.5, 0.8, 0.1], [1, 1, 1, 0, 0])
    assert r.eer == pytest.approx(0.5)
    # fully inverted scores: everything wrong at every threshold but the extremes
    assert compute_eer([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]).eer == pytest.approx(1.0)


def test_eer_gaussian_matches_theory() -> None:
    # targets N(1,1) vs non-targets N(-1,1): EER = Phi(-1) = 0.1587
    rng = np.random.default_rng(0)
    s = np.concatenate([rng.normal(1, 1, 20000), rng.normal(-1, 1, 20000)])
    y = np.concatenate([np.ones(20000), np.zeros(20000)])
    r = compute_eer(s, y)
    assert r.eer == pytest.approx(0.1587, abs=0.006)
    assert r.threshold == pytest.approx(0.0, abs=0.05)


def test_min_dcf_simple_case() -> None:
    # targets 0.9 0.4, non-targets 0.5 0.1, p_target=0.05, c_miss=c_fa=1, c_def=0.05
    # accept >= 0.9: P_miss=.5, P_fa=0 -> .025 -> normalised 0.5 (best); >= 0.4: .475 -> 9.5
    r = compute_min_dcf([0.9, 0.4, 0.5, 0.1], [1, 1, 0, 0], p_target=0.05)
    assert r.min_dcf == pytest.approx(0.5)
    assert r.threshold == pytest.approx(0.9)
    assert compute_min_dcf([0.9, 0.4, 0.5, 0.1], [1, 1, 0, 0], p_target=0.01).min_dcf == pytest.approx(0.5)
    assert compute_min_dcf([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]).min_dcf == 0.0
    # never worse than the trivial system (always reject = 1.0 normalised)
    assert compute_min_dcf([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]).min_dcf == pytest.approx(1.0)
    with pytest.raises(ValueError):
        compute_min_dcf([0.1, 0.2], [1, 0], p_target=0.0)


def test_verification_input_checks_and_summary() -> None:
    with pytest.raises(ValueError, match="target"):
        compute_eer([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="labels"):
        compute_eer([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError):
        compute_eer([0.1, 0.2, 0.3], [1, 0])
    m = verification_metrics([0.9, 0.8, 0.3, 0.7, 0.2, 0.1], [1, 1, 1, 0, 0, 0])
    assert set(m) == {"eer", "eer_threshold", "min_dcf_0.01", "min_dcf_0.05"}
    assert m["eer"] == pytest.approx(1 / 3)


def test_wa_vs_ua_on_imbalanced_set() -> None:
    # 8 neu all right, 2 ang both predicted neu: WA = 8/10, UA = (1 + 0) / 2
    y_true = ["neu"] * 8 + ["ang"] * 2
    y_pred = ["neu"] * 10
    assert weighted_accuracy(y_true, y_pred) == pytest.approx(0.8)
    assert unweighted_accuracy(y_true, y_pred) == pytest.approx(0.5)
    # a listed class with no samples is skipped, not counted as zero recall
    assert unweighted_accuracy(y_true, y_pred, labels=["neu", "hap", "ang", "sad"]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        weighted_accuracy([], [])


def test_confusion_matrix_rows_true_cols_pred() -> None:
    cm = confusion_matrix(["a", "a", "b", "c"], ["a", "b", "b", "a"], labels=["a", "b", "c"])
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert confusion_matrix([0, 1], [1, 1]).tolist() == [[0, 1], [0, 1]]


def test_clip_errors_sum_to_the_corpus_rates() -> None:
    refs, hyps = ["go to the door", "open it", "stop"], ["go to a door", "open it now", ""]
    words, chars = clip_errors(refs, hyps, "word"), clip_errors(refs, hyps, "char")
    assert words.tolist() == [[1, 4], [1, 2], [1, 1]]
    assert words[:, 0].sum() / words[:, 1].sum() == pytest.approx(wer(refs, hyps))
    assert chars[:, 0].sum() / chars[:, 1].sum() == pytest.approx(cer(refs, hyps))
    assert clip_rate(words) == wer(refs, hyps) and clip_rate(chars) == cer(refs, hyps)
    for empty_refs, some_hyps in ((["", " "], ["", ""]), (["", ""], ["go", ""])):  # no reference words at all
        assert clip_rate(clip_errors(empty_refs, some_hyps, "word")) == wer(empty_refs, some_hyps)
    assert label_errors(["a", "b", "c"], ["a", "c", "c"]).tolist() == [[0, 1], [1, 1], [0, 1]]
    assert label_errors([], []).shape == (0, 2)


def test_paired_bootstrap_tells_a_real_gain_from_noise() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 15, size=300)
    first = np.stack([rng.binomial(lengths, 0.3), lengths], axis=1)
    fewer = np.stack([np.maximum(first[:, 0] - rng.binomial(1, 0.8, 300), 0), lengths], axis=1)
    gain = paired_bootstrap(first, fewer)
    assert gain.difference < 0 and gain.high < 0 and gain.better > 0.99 and gain.clips == 300
    assert gain.difference == pytest.approx((fewer[:, 0].sum() - first[:, 0].sum()) / lengths.sum())
    shuffled = np.stack([rng.permutation(first[:, 0]), lengths], axis=1)  # same errors, other clips: no signal
    noise = paired_bootstrap(first, shuffled)
    assert noise.low < 0 < noise.high and 0.05 < noise.better < 0.95
    same = paired_bootstrap(first, first)
    assert (same.difference, same.low, same.high, same.better) == (0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same clips"):
        paired_bootstrap(first, np.stack([first[:, 0], lengths + 1], axis=1))
