"""Evaluation metrics with the definitions the public benchmarks report.

* WER / CER: corpus-level (total edits / total reference words or characters), via jiwer.
* EER and normalised minDCF: VoxCeleb convention, scores where higher means "same speaker",
  ``c_miss = c_fa = 1`` and ``p_target`` 0.01 or 0.05.
* WA / UA: IEMOCAP convention; WA is plain accuracy, UA the mean of per-class recalls.
* DER: NIST's diarization error rate (md-eval): missed speech + false alarm + speaker confusion over the
  reference's speech time, under the optimal one-to-one map of hypothesis to reference speakers, with a
  no-score collar around every reference boundary (0.25 s, as DIHARD's and VoxSRC's "forgiving" condition).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jiwer
import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix
from sklearn.metrics import roc_curve


@dataclass(frozen=True)
class EditCounts:
    """Corpus-level edit counts behind a WER or CER figure (reported alongside it)."""

    hits: int
    substitutions: int
    deletions: int
    insertions: int

    @property
    def ref_len(self) -> int:
        """Number of reference tokens."""
        return self.hits + self.substitutions + self.deletions

    @property
    def rate(self) -> float:
        """Edits / reference tokens. With no reference tokens at all: 0.0 if nothing was
        hypothesised, else 1.0 (all wrong), so an empty test set never yields inf or NaN."""
        return _rate(self.substitutions + self.deletions + self.insertions, self.ref_len)


def _rate(errors: int, ref_len: int) -> float:
    if ref_len == 0:
        return 0.0 if errors == 0 else 1.0
    return errors / ref_len


def _as_list(x: str | Sequence[str]) -> list[str]:
    return [x] if isinstance(x, str) else list(x)


def _pairs(refs: str | Sequence[str], hyps: str | Sequence[str]) -> tuple[list[str], list[str]]:
    r, h = _as_list(refs), _as_list(hyps)
    if len(r) != len(h):
        raise ValueError(f"{len(r)} references but {len(h)} hypotheses")
    # jiwer treats whitespace-only strings inconsistently; strip so they count as empty
    return [s.strip() for s in r], [s.strip() for s in h]


def word_errors(refs: str | Sequence[str], hyps: str | Sequence[str]) -> EditCounts:
    """Word-level edit counts; an empty reference contributes its hypothesis words as insertions."""
    r, h = _pairs(refs, hyps)
    if not r:
        return EditCounts(0, 0, 0, 0)
    out = jiwer.process_words(r, h)
    return EditCounts(out.hits, out.substitutions, out.deletions, out.insertions)


def char_errors(refs: str | Sequence[str], hyps: str | Sequence[str]) -> EditCounts:
    """Character-level edit counts (spaces count as characters, as in jiwer and most papers)."""
    r, h = _pairs(refs, hyps)
    if not r:
        return EditCounts(0, 0, 0, 0)
    out = jiwer.process_characters(r, h)
    return EditCounts(out.hits, out.substitutions, out.deletions, out.insertions)


def clip_errors(refs: Sequence[str], hyps: Sequence[str], unit: str) -> np.ndarray:
    """Per clip ``[edits, reference tokens]`` (``unit`` "word" or "char"): the rows a paired comparison resamples.
    Their column sums give the corpus rate, so the rate of the whole array equals :func:`wer` / :func:`cer`."""
    count = word_errors if unit == "word" else char_errors
    rows = [count(ref, hyp) for ref, hyp in zip(*_pairs(refs, hyps), strict=True)]
    return np.array([[c.substitutions + c.deletions + c.insertions, c.ref_len] for c in rows], dtype=np.int64)


def clip_rate(counts: np.ndarray) -> float:
    """The corpus rate of :func:`clip_errors` counts (what :func:`wer` / :func:`cer` give for the same clips), so
    a caller that keeps the per-clip counts aligns each clip once."""
    return _rate(int(counts[:, 0].sum()), int(counts[:, 1].sum())) if len(counts) else 0.0


def label_errors(truth: Sequence[str | None], guess: Sequence[str | None]) -> np.ndarray:
    """Per clip ``[wrong, 1]`` for a classification: the :func:`paired_bootstrap` rows of an accuracy."""
    return np.array([[int(g != t), 1] for t, g in zip(truth, guess, strict=True)], dtype=np.int64).reshape(-1, 2)


#: the per-clip error counts a result can carry -> (metric, sign): accuracy is reported as its own difference
PAIRED_UNITS = {"char": ("CER", 1), "word": ("WER", 1), "label": ("accuracy", -1)}


@dataclass(frozen=True)
class PairedDifference:
    """``second``'s corpus rate minus ``first``'s on the same clips, with a paired bootstrap interval.

    Clips are resampled with replacement and both systems are scored on the same draw (Bisani & Ney, 2004), so
    what the clips share (hard audio, long sentences) cancels; ``better`` is the share of draws where the second
    system makes fewer errors. An interval that holds zero says the two differ by less than these clips can tell."""

    difference: float
    low: float
    high: float
    better: float
    clips: int


def paired_bootstrap(first: np.ndarray, second: np.ndarray, rounds: int = 2000, level: float = 0.95,
                     seed: int = 0) -> PairedDifference:
    """Paired bootstrap of the rate difference between two :func:`clip_errors` arrays of the same clips."""
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if first.shape != second.shape or first.ndim != 2 or first.shape[1] != 2 or not len(first):
        raise ValueError(f"two [clips, 2] arrays of the same clips are needed, not {first.shape} and {second.shape}")
    if not np.array_equal(first[:, 1], second[:, 1]):
        raise ValueError("the two arrays have different reference lengths: they are not the same clips")
    draws = np.random.default_rng(seed).integers(0, len(first), size=(rounds, len(first)))
    totals = np.maximum(first[draws, 1].sum(axis=1), 1.0)
    differences = (second[draws, 0].sum(axis=1) - first[draws, 0].sum(axis=1)) / totals
    tail = (1.0 - level) / 2
    low, high = np.quantile(differences, [tail, 1.0 - tail])
    point = (second[:, 0].sum() - first[:, 0].sum()) / max(first[:, 1].sum(), 1.0)
    return PairedDifference(float(point), float(low), float(high), float(np.mean(differences < 0)), len(first))


def paired_metric(first: np.ndarray, second: np.ndarray, unit: str) -> tuple[str, PairedDifference]:
    """The metric a :data:`PAIRED_UNITS` unit is reported as, and the second system's difference in it (an
    accuracy's rise is positive, so its interval is the error rate's, negated)."""
    metric, sign = PAIRED_UNITS[unit]
    d = paired_bootstrap(first, second)
    low, high = sorted((sign * d.low, sign * d.high))
    return metric, PairedDifference(sign * d.difference, low, high, d.better, d.clips)


def wer(refs: str | Sequence[str], hyps: str | Sequence[str]) -> float:
    """Corpus WER: (S + D + I) / reference words; texts should already be normalised."""
    return word_errors(refs, hyps).rate


def cer(refs: str | Sequence[str], hyps: str | Sequence[str]) -> float:
    """Corpus CER: (S + D + I) / reference characters."""
    return char_errors(refs, hyps).rate


@dataclass(frozen=True)
class EERResult:
    """Equal error rate (fraction, not percent) and the score threshold where it occurs.

    ``threshold`` is the accept threshold (accept when ``score >= threshold``) at the ROC point
    closest to the crossing; the server uses it as its default verification threshold.
    """

    eer: float
    threshold: float


@dataclass(frozen=True)
class MinDCFResult:
    """Normalised minimum detection cost and the accept threshold that attains it."""

    min_dcf: float
    threshold: float
    p_target: float


def _roc(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(np.int64)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (non-target) or 1 (target)")
    if y.sum() == 0 or y.sum() == y.size:
        raise ValueError("need at least one target and one non-target trial")
    fpr, tpr, thr = roc_curve(y, s, pos_label=1, drop_intermediate=False)
    return fpr, 1.0 - tpr, thr


def _finite_threshold(thr: np.ndarray, idx: int) -> float:
    # roc_curve's first threshold is +inf (accept nothing); report the next real score instead
    t = thr[idx]
    return float(thr[idx + 1] if not np.isfinite(t) and idx + 1 < len(thr) else t)


def compute_eer(scores: ArrayLike, labels: ArrayLike) -> EERResult:
    """EER from trial scores (higher = more likely same speaker) and 0/1 labels.

    Miss rate falls and false-alarm rate rises as the threshold drops; the EER is the value
    where they cross, linearly interpolated between the two ROC points that bracket the
    crossing (exact when a point lies on it).
    """
    fpr, fnr, thr = _roc(scores, labels)
    diff = fnr - fpr  # non-increasing along the ROC
    i = int(np.argmax(diff <= 0))  # first point at or past the crossing; exists since diff[-1] = -1
    if diff[i] == 0 or i == 0:
        eer = float(fpr[i])
    else:
        t = diff[i - 1] / (diff[i - 1] - diff[i])
        eer = float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))
    nearest = i if i == 0 or abs(diff[i]) <= abs(diff[i - 1]) else i - 1
    return EERResult(eer=eer, threshold=_finite_threshold(thr, nearest))


def compute_min_dcf(
    scores: ArrayLike,
    labels: ArrayLike,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> MinDCFResult:
    """Normalised minDCF: min over thresholds of ``c_miss*P_miss*p + c_fa*P_fa*(1-p)``, divided by
    ``min(c_miss*p, c_fa*(1-p))`` (the cost of always accepting or always rejecting)."""
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    fpr, fnr, thr = _roc(scores, labels)
    dcf = c_miss * fnr * p_target + c_fa * fpr * (1.0 - p_target)
    idx = int(np.argmin(dcf))
    c_def = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return MinDCFResult(
        min_dcf=float(dcf[idx] / c_def), threshold=_finite_threshold(thr, idx), p_target=p_target
    )


def verification_metrics(
    scores: ArrayLike, labels: ArrayLike, p_targets: Sequence[float] = (0.01, 0.05)
) -> dict[str, float]:
    """EER, its threshold and minDCF at each ``p_target``, as one flat dict for logging."""
    e = compute_eer(scores, labels)
    out = {"eer": e.eer, "eer_threshold": e.threshold}
    for p in p_targets:
        out[f"min_dcf_{p:g}"] = compute_min_dcf(scores, labels, p_target=p).min_dcf
    return out


def weighted_accuracy(y_true: Sequence[object], y_pred: Sequence[object]) -> float:
    """WA: fraction of all samples classified correctly (dominated by frequent classes)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"{t.size} labels but {p.size} predictions")
    if t.size == 0:
        raise ValueError("no samples")
    return float(np.mean(t == p))


def unweighted_accuracy(
    y_true: Sequence[object], y_pred: Sequence[object], labels: Sequence[object] | None = None
) -> float:
    """UA: mean per-class recall over the classes present in ``y_true`` (or ``labels``, if
    given; a listed class with no samples is skipped rather than counted as 0)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"{t.size} labels but {p.size} predictions")
    classes = list(dict.fromkeys(labels)) if labels is not None else sorted(set(t.tolist()))
    recalls = [float(np.mean(p[t == c] == c)) for c in classes if np.any(t == c)]
    if not recalls:
        raise ValueError("no samples of any listed class")
    return float(np.mean(recalls))


def confusion_matrix(
    y_true: Sequence[object], y_pred: Sequence[object], labels: Sequence[object] | None = None
) -> np.ndarray:
    """Counts with rows = true class and columns = predicted class, in ``labels`` order
    (default: sorted union of both sequences)."""
    if labels is None:
        labels = sorted(set(list(y_true)) | set(list(y_pred)))
    return _sk_confusion_matrix(list(y_true), list(y_pred), labels=list(labels))


#: the resolution DER is computed at (NIST's md-eval reads times to 10 ms)
DER_RESOLUTION_S = 0.01
Turn = tuple[float, float, str]


@dataclass(frozen=True)
class DiarizationErrors:
    """Seconds of scored reference speech and of each error kind (overlap counts once per speaker)."""

    scored_s: float
    missed_s: float
    false_alarm_s: float
    confusion_s: float

    @property
    def der(self) -> float:
        return (self.missed_s + self.false_alarm_s + self.confusion_s) / self.scored_s if self.scored_s else 0.0

    def __add__(self, other: DiarizationErrors) -> DiarizationErrors:
        return DiarizationErrors(self.scored_s + other.scored_s, self.missed_s + other.missed_s,
                                 self.false_alarm_s + other.false_alarm_s, self.confusion_s + other.confusion_s)


def _activity(turns: Sequence[Turn], frames: int) -> tuple[np.ndarray, list[str]]:
    """(frames, speakers) bool matrix of who speaks in each frame, and the speakers' names."""
    names = sorted({speaker for _, _, speaker in turns})
    active = np.zeros((frames, len(names)), dtype=bool)
    for start, end, speaker in turns:
        a, b = round(start / DER_RESOLUTION_S), round(end / DER_RESOLUTION_S)
        active[max(a, 0):min(b, frames), names.index(speaker)] = True
    return active, names


def diarization_errors(reference: Sequence[Turn], hypothesis: Sequence[Turn],
                       collar_s: float = 0.25) -> DiarizationErrors:
    """One recording's errors (md-eval's definitions, frame by frame at 10 ms): frames within ``collar_s`` of a
    reference turn's start or end are not scored; hypothesis speakers are mapped one-to-one onto reference
    speakers to maximise the scored time they share (Hungarian algorithm). Equal to pyannote.metrics'
    ``DiarizationErrorRate`` (tested), but where one speaker's own turns overlap: they count once here."""
    from scipy.optimize import linear_sum_assignment

    last = max([end for _, end, _ in [*reference, *hypothesis]], default=0.0)
    frames = round(last / DER_RESOLUTION_S) + 1
    ref, _ = _activity(reference, frames)
    hyp, _ = _activity(hypothesis, frames)
    scored = np.ones(frames, dtype=bool)
    collar = round(collar_s / DER_RESOLUTION_S)
    for start, end, _ in reference:
        for edge in (round(start / DER_RESOLUTION_S), round(end / DER_RESOLUTION_S)):
            scored[max(edge - collar, 0):edge + collar] = False
    ref, hyp = ref[scored], hyp[scored]
    n_ref, n_hyp = ref.sum(axis=1), hyp.sum(axis=1)
    shared = ref.T.astype(np.int64) @ hyp.astype(np.int64)  # (ref speakers, hyp speakers) frames both speak
    matched = 0
    if shared.size:
        rows, cols = linear_sum_assignment(-shared)
        matched = int(shared[rows, cols].sum())
    seconds = DER_RESOLUTION_S
    return DiarizationErrors(
        scored_s=float(n_ref.sum()) * seconds,
        missed_s=float(np.maximum(n_ref - n_hyp, 0).sum()) * seconds,
        false_alarm_s=float(np.maximum(n_hyp - n_ref, 0).sum()) * seconds,
        confusion_s=float(np.minimum(n_ref, n_hyp).sum() - matched) * seconds,
    )
