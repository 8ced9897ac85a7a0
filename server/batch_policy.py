"""How the batching worker forms batches: which queued jobs run together, and how a batch's rows split
into model calls.

Two policies share one small interface (``choose``, ``split_calls``, ``worth_waiting``, ``observe``):

* ``LengthRatioPolicy`` (``ELP_BATCH_POLICY=length``, the former behaviour): the oldest job, then the
  queued jobs closest to its length while the shortest stays within ``length_ratio`` of the longest.
* ``CostAwarePolicy`` (``cost``, the default): a cost model of one model call,
  ``seconds = fixed + per_row * rows * padded_s + attention * rows * padded_s**2``, timed on the loaded
  model at start-up (``calibrate``) and refitted from every batch the worker runs. It takes the run of
  length-sorted jobs that does the most work per predicted second (work = each row's cost without the
  fixed part, so a short clip is not "cheaper work" than a long one and nothing is favoured for its
  length), splits the batch's rows into the calls that cost least (padding vs per-call cost), and
  waits for company only while a fuller batch would be cheaper per row. A job that has waited past
  the latency bound is taken first (aging), so a short clip never starves behind long ones, and no
  batch is predicted to take more than half the bound, so nothing queued behind one waits long.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from server.batch_support import length_chunks

if TYPE_CHECKING:
    from server.batch_jobs import InferenceJob

logger = logging.getLogger("server.batching")

#: batches within this share of the best work per second count as equally good; the cheapest wins
EFFICIENCY_TOLERANCE = 0.03
#: each refit keeps this share of the evidence before it (about the last 30 batches count)
FIT_DECAY = 0.97
#: (rows, seconds) timed at start-up, most informative first: the fit needs the fixed, per-row and
#: attention terms apart, and the budget may stop the list early
CALIBRATION_POINTS = ((1, 1.0), (1, 8.0), (8, 1.0), (4, 4.0), (2, 8.0), (1, 4.0), (16, 1.0), (4, 8.0))


@dataclass(frozen=True)
class CostModel:
    """Predicted seconds of one model call of ``rows`` clips padded to ``padded_s`` seconds."""

    fixed_s: float
    per_row_s: float  # per row and second of padded audio
    attention_s: float  # per row and squared second (self-attention over the frames)

    def call_s(self, rows: int, padded_s: float) -> float:
        return self.fixed_s + rows * padded_s * (self.per_row_s + self.attention_s * padded_s)

    def work_s(self, length_s: float) -> float:
        """A row's share of a perfectly packed call: what it costs when nothing is padded or fixed."""
        return length_s * (self.per_row_s + self.attention_s * length_s)


#: before any timing: Whisper base on two CPU cores, roughly; replaced by the first measurements
PRIOR_COST = CostModel(fixed_s=0.01, per_row_s=0.1, attention_s=0.0)


def call_features(calls: Sequence[tuple[int, float]]) -> np.ndarray:
    """The regression features of a batch made of these (rows, padded seconds) calls."""
    return np.array([len(calls), sum(r * s for r, s in calls), sum(r * s * s for r, s in calls)], dtype=np.float64)


class CostFit:
    """Weighted least squares of batch seconds on (calls, row-seconds, row-seconds^2), with old evidence
    decaying and every coefficient kept >= 0 (the best non-negative subset: three terms, seven tries).
    Weights are 1/seconds^2, so a 30 ms call counts as much as an 8 s one (relative error)."""

    def __init__(self, prior: CostModel = PRIOR_COST, prior_weight: float = 0.01) -> None:
        self._gram = np.zeros((3, 3))
        self._target = np.zeros(3)
        self.observations = 0
        self.model = prior
        for rows, seconds in ((1, 1.0), (4, 1.0), (1, 8.0)):  # a weak anchor until real timings arrive
            self._add(call_features([(rows, seconds)]), prior.call_s(rows, seconds), prior_weight)
        self.model = self._solve() or prior

    def add(self, calls: Sequence[tuple[int, float]], seconds: float) -> CostModel:
        self._gram *= FIT_DECAY
        self._target *= FIT_DECAY
        self._add(call_features(calls), seconds, 1.0)
        self.observations += 1
        self.model = self._solve() or self.model
        return self.model

    def _add(self, features: np.ndarray, seconds: float, weight: float) -> None:
        weight = weight / max(seconds, 1e-4) ** 2
        self._gram += weight * np.outer(features, features)
        self._target += weight * features * seconds

    def _solve(self) -> CostModel | None:
        best: tuple[float, np.ndarray] | None = None
        for size in (3, 2, 1):
            for subset in itertools.combinations(range(3), size):
                index = list(subset)
                gram = self._gram[np.ix_(index, index)]
                if np.linalg.cond(gram) > 1e12:
                    continue
                solution = np.zeros(3)
                solution[index] = np.linalg.solve(gram, self._target[index])
                if (solution < 0).any():
                    continue
                # weighted residual sum of squares up to a constant: x'Gx - 2x'b
                loss = float(solution @ self._gram @ solution - 2 * solution @ self._target)
                if best is None or loss < best[0] - 1e-15:
                    best = (loss, solution)
        if best is None:
            return None
        fixed, per_row, attention = (float(v) for v in best[1])
        return CostModel(fixed, per_row, attention)


def cheapest_split(lengths_s: Sequence[float], rows: Sequence[int], model: CostModel) -> tuple[float, list[int]]:
    """Rows (or jobs of ``rows`` rows) sorted by length split into consecutive calls, each padded to its
    longest, at the least predicted total: (seconds, the indices where calls start)."""
    count = len(lengths_s)
    prefix = [0, *itertools.accumulate(rows)]
    best = [0.0] + [float("inf")] * count
    start_of = [0] * (count + 1)
    for stop in range(1, count + 1):
        padded = lengths_s[stop - 1]
        per_row = padded * (model.per_row_s + model.attention_s * padded)
        for start in range(stop):
            cost = best[start] + model.fixed_s + (prefix[stop] - prefix[start]) * per_row
            if cost < best[stop]:
                best[stop], start_of[stop] = cost, start
    starts, stop = [], count
    while stop > 0:
        starts.append(start_of[stop])
        stop = start_of[stop]
    return best[count], sorted(starts)


class BatchPolicy(Protocol):
    def choose(self, window: list[InferenceJob], now: float) -> list[InferenceJob]:
        """The jobs to run now, from ``window`` (queue order, oldest first, none expired)."""

    def split_calls(self, sorted_lengths: Sequence[int]) -> list[tuple[int, int]]:
        """A batch's rows, sorted by length (samples), as (start, stop) slices: one model call each."""

    def worth_waiting(self, queued: Sequence[InferenceJob]) -> bool:
        """Whether a batch of these jobs would gain from waiting for company."""

    def observe(self, sorted_lengths: Sequence[int], calls: Sequence[tuple[int, int]], seconds: float) -> None:
        """The worker ran these calls in ``seconds`` (all of them)."""


class LengthRatioPolicy:
    """The oldest job first, then the queued jobs closest to its length, up to ``max_rows`` and (when
    ``max_padded`` is set) rows x the longest length <= ``max_padded`` samples, keeping the shortest clip at
    least ``length_ratio`` of the longest; one call per run of rows within the ratio."""

    def __init__(self, max_rows: int, length_ratio: float, max_padded: int = 0) -> None:
        self.max_rows = max_rows
        self.length_ratio = length_ratio
        self.max_padded = max_padded  # samples; 0 = no bound

    def choose(self, window: list[InferenceJob], now: float) -> list[InferenceJob]:
        anchor, rest = window[0], sorted(window[1:], key=lambda job: abs(job.length - window[0].length))
        batch, rows = [anchor], anchor.rows
        shortest = longest = anchor.length
        for job in rest:
            low, high = min(shortest, job.length), max(longest, job.length)
            # Rows pad to the longest one: a clip far shorter than the batch's longest would cost its
            # padding in compute, so it waits for a batch of its own length instead.
            fits = not self.max_padded or (rows + job.rows) * high <= self.max_padded
            if rows + job.rows <= self.max_rows and low >= self.length_ratio * high and fits:
                batch.append(job)
                rows += job.rows
                shortest, longest = low, high
        return batch

    def split_calls(self, sorted_lengths: Sequence[int]) -> list[tuple[int, int]]:
        return length_chunks(sorted_lengths, self.length_ratio)

    def worth_waiting(self, queued: Sequence[InferenceJob]) -> bool:
        return True

    def observe(self, sorted_lengths: Sequence[int], calls: Sequence[tuple[int, int]], seconds: float) -> None:
        return None


@dataclass
class _Candidate:
    efficiency: float
    has_oldest: bool
    seconds: float
    members: list[int]  # positions in length order


class CostAwarePolicy:
    """Batches chosen by predicted work per second under a latency bound (module docstring)."""

    def __init__(self, max_rows: int, latency_bound_s: float, sample_rate: int = 16000,
                 max_padded_s: float = 0.0) -> None:
        self.max_rows = max_rows
        self.latency_bound_s = latency_bound_s
        self.max_padded_s = max_padded_s  # rows x the longest clip of one call, seconds; 0 = no bound
        self.sample_rate = sample_rate
        self.fit = CostFit()
        self._lock = threading.Lock()  # observe runs on every worker thread

    @property
    def cost(self) -> CostModel:
        return self.fit.model

    def choose(self, window: list[InferenceJob], now: float) -> list[InferenceJob]:
        model = self.cost
        window = window[: 2 * self.max_rows]  # the oldest: the search is quadratic in the jobs it weighs
        order = sorted(range(len(window)), key=lambda index: (window[index].length, index))
        lengths = [window[index].length / self.sample_rate for index in order]
        rows = [window[index].rows for index in order]
        first_come = min(range(len(window)), key=lambda index: window[index].enqueued_at)
        oldest = order.index(first_come)
        overdue = now - window[first_come].enqueued_at >= self.latency_bound_s
        best = self._best_call(lengths, rows, oldest, overdue, model)
        return [window[order[position]] for position in best.members]

    def _best_call(self, lengths: list[float], rows: list[int], oldest: int, overdue: bool,
                  model: CostModel) -> _Candidate:
        """The single model call doing the most work per second: for each job as the longest (the
        padding), the shorter jobs of the most work that fill each row count (a knapsack: verify jobs
        are two rows). A batch of several calls does a weighted mean of its calls' work per second, so
        one call is always among the best. An overdue oldest job must be in it."""
        cap = self.latency_bound_s / 2
        candidates: list[_Candidate] = []
        for last in range(oldest if overdue else 0, len(lengths)):
            forced = [last] if not overdue or oldest == last else [last, oldest]
            base_rows = sum(rows[job] for job in forced)
            base_work = sum(rows[job] * model.work_s(lengths[job]) for job in forced)
            if base_rows > self.max_rows:
                if len(forced) == 1:  # a job wider than a batch (a verify pair at max_rows=1) runs alone
                    seconds = model.call_s(base_rows, lengths[last])
                    candidates.append(_Candidate(base_work / seconds if seconds > 0 else 1.0, oldest == last,
                                                 seconds, forced))
                continue
            # best[r] = (work, members) of the jobs shorter than ``last`` filling r more rows
            best: list[tuple[float, tuple[int, ...]] | None] = [(0.0, ())] + [None] * (self.max_rows - base_rows)
            for job in range(last):
                if job in forced:
                    continue
                gain = rows[job] * model.work_s(lengths[job])
                for used in range(len(best) - 1, rows[job] - 1, -1):
                    before = best[used - rows[job]]
                    if before is not None and (best[used] is None or before[0] + gain > best[used][0]):
                        best[used] = (before[0] + gain, (*before[1], job))
            for used, filled in enumerate(best):
                if filled is None:
                    continue
                seconds = model.call_s(base_rows + used, lengths[last])
                too_wide = self.max_padded_s and (base_rows + used) * lengths[last] > self.max_padded_s
                if (seconds > cap or too_wide) and used:
                    break
                members = sorted([*forced, *filled[1]])
                candidates.append(_Candidate((base_work + filled[0]) / seconds if seconds > 0 else 1.0,
                                             oldest in members, seconds, members))
        if not candidates:  # defensive: the oldest job alone is always a valid batch
            return _Candidate(1.0, True, 0.0, [oldest])
        top = max(candidate.efficiency for candidate in candidates)
        good = [c for c in candidates if c.efficiency >= top * (1 - EFFICIENCY_TOLERANCE)]
        return max(good, key=lambda c: (c.has_oldest, -c.seconds))

    def split_calls(self, sorted_lengths: Sequence[int]) -> list[tuple[int, int]]:
        _, starts = cheapest_split([n / self.sample_rate for n in sorted_lengths], [1] * len(sorted_lengths),
                                   self.cost)
        stops = [*starts[1:], len(sorted_lengths)]
        return list(zip(starts, stops, strict=True))

    def worth_waiting(self, queued: Sequence[InferenceJob]) -> bool:
        """Only while a full batch of the oldest job's length would be cheaper per row by more than the
        tolerance than the rows queued now (on a CPU with a small fixed cost: never)."""
        model = self.cost
        rows = sum(job.rows for job in queued)
        if rows >= self.max_rows:
            return False
        length = queued[0].length / self.sample_rate
        now_per_row = model.call_s(rows, length) / rows
        full_per_row = model.call_s(self.max_rows, length) / self.max_rows
        return full_per_row < now_per_row * (1 - EFFICIENCY_TOLERANCE)

    def observe(self, sorted_lengths: Sequence[int], calls: Sequence[tuple[int, int]], seconds: float) -> None:
        shapes = [(stop - start, sorted_lengths[stop - 1] / self.sample_rate) for start, stop in calls]
        with self._lock:
            self.fit.add(shapes, seconds)

    def calibrate(self, predict: Callable[[list[torch.Tensor], list[str]], Any], adapter_key: str,
                  budget_s: float, timer: Callable[[], float] = time.perf_counter) -> CostModel:
        """Time ``CALIBRATION_POINTS`` on the loaded model (one warm-up call first) until ``budget_s`` is
        spent; each timing joins the fit as a real batch would."""
        generator = torch.Generator().manual_seed(0)
        clip = torch.randn(int(max(s for _, s in CALIBRATION_POINTS) * self.sample_rate), generator=generator) * 0.1
        started = timer()
        predict([clip[: self.sample_rate]], [adapter_key])
        timed = 0
        for rows, seconds in CALIBRATION_POINTS:
            if timer() - started > budget_s:
                break
            waveform = clip[: int(seconds * self.sample_rate)]
            call_started = timer()
            predict([waveform] * rows, [adapter_key] * rows)
            with self._lock:
                self.fit.add([(rows, seconds)], timer() - call_started)
            timed += 1
        logger.info("batch cost model from %d timed calls in %.1f s: %s", timed, timer() - started, self.cost)
        return self.cost
