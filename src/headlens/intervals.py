"""Bootstrap intervals over examples for every accuracy and AUC of a run (docs/method.md#uncertainty).

The examples a sweep evaluates are a sample; its accuracies and AUCs would move on another
sample. The percentile bootstrap resamples the examples with replacement ``resamples`` times
and reads the 2.5 and 97.5 percentiles of each statistic over the resamples. One resampling
(a seeded matrix of counts ``[resamples, examples]``) serves every curve of a run, so that a
difference between two curves is bootstrapped *paired*: both read the same resampled
examples (:func:`paired_difference`), which is the test of "method A beats method B".

Everything is a matrix product of the counts with the per-example soft scores, no loop over
resamples. Accuracy is linear in the examples and so is the AUC (a trapezoid of accuracies),
so a resample's AUC is the AUC of its accuracies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import InputError

#: resamples of the demo and the sweeps (0 turns the intervals off).
RESAMPLES = 1000
#: the coverage of every interval.
CONFIDENCE = 0.95


def resample_counts(n: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """``float64[resamples, n]``: how often each of ``n`` examples is drawn in each resample
    (multinomial, rows summing to ``n``), fixed by ``seed``."""
    if n < 1 or resamples < 1:
        raise InputError(f"a bootstrap needs at least one example and one resample, got {n} and {resamples}")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


def trapezoid_weights(levels: Sequence[float]) -> np.ndarray:
    """``w[levels]`` with ``auc = w · accuracy``: the trapezoid rule of :func:`headlens.metrics.auc`."""
    x = np.asarray(levels, dtype=np.float64)
    if x.ndim != 1 or x.size < 2:
        raise InputError(f"an AUC needs at least two levels, got {x.tolist()}")
    w = np.zeros_like(x)
    w[1:] += np.diff(x) / 2
    w[:-1] += np.diff(x) / 2
    return w


def percentile_interval(samples: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The central :data:`CONFIDENCE` percentile interval of ``samples`` along ``axis``."""
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(samples, [tail, 100 - tail], axis=axis)
    return low, high


@dataclass
class CurveIntervals:
    """Intervals of one run's curves: ``accuracy_low``/``accuracy_high`` ``[curves, levels]``
    (×100, as accuracies) and ``auc_low``/``auc_high`` ``[curves]``."""

    accuracy_low: np.ndarray
    accuracy_high: np.ndarray
    auc_low: np.ndarray
    auc_high: np.ndarray


def resampled_accuracy(soft: np.ndarray, counts: np.ndarray, divisor: int | None = None) -> np.ndarray:
    """Accuracies ×100 of every resample: ``[resamples, *soft.shape[:-2], levels]`` from
    ``soft`` ``[..., examples, levels]`` (per-example soft scores) and ``counts``
    (:func:`resample_counts`); ``divisor`` as in :func:`headlens.metrics.accuracy`."""
    values = np.asarray(soft, dtype=np.float64)
    n = values.shape[-2]
    if counts.shape[1] != n:
        raise InputError(f"{counts.shape[1]} resampled examples for {n} examples")
    sums = np.einsum("rn,...nl->r...l", counts, values)
    return 100.0 * sums / (n if divisor is None else divisor)


def curve_intervals(
    soft: np.ndarray, levels: Sequence[float], divisor: int | None = None, resamples: int = RESAMPLES, seed: int = 0
) -> CurveIntervals:
    """Percentile intervals of the accuracy at every level and of the AUC of every curve, from
    per-example soft scores ``[curves, examples, levels]``, all curves on the same resamples."""
    counts = resample_counts(np.asarray(soft).shape[1], resamples, seed)
    accuracy = resampled_accuracy(soft, counts, divisor)  # [resamples, curves, levels]
    accuracy_low, accuracy_high = percentile_interval(accuracy)
    auc_low, auc_high = percentile_interval(accuracy @ trapezoid_weights(levels))
    return CurveIntervals(accuracy_low, accuracy_high, auc_low, auc_high)


@dataclass
class Difference:
    """``auc(a) − auc(b)`` and its paired percentile interval; ``clear`` says whether the
    interval excludes 0 (the difference is larger than its uncertainty)."""

    value: float
    low: float
    high: float

    @property
    def clear(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_difference(
    soft_a: np.ndarray, soft_b: np.ndarray, levels: Sequence[float], resamples: int = RESAMPLES, seed: int = 0
) -> Difference:
    """The AUC of curve ``a`` minus that of ``b`` (per-example soft scores ``[examples, levels]``
    of the same examples; ``b`` may be ``[seeds, examples, levels]``, averaged over seeds:
    random rankings), bootstrapped over the same resampled examples for both."""
    a = np.asarray(soft_a, dtype=np.float64)
    b = np.asarray(soft_b, dtype=np.float64)
    b = b.mean(0) if b.ndim == 3 else b
    if a.shape != b.shape:
        raise InputError(f"paired curves need the same examples and levels, got {a.shape} and {b.shape}")
    weights = trapezoid_weights(levels)
    per_example = 100.0 * (a - b) @ weights  # [examples]
    counts = resample_counts(len(per_example), resamples, seed)
    low, high = percentile_interval(counts @ per_example / len(per_example))
    return Difference(float(per_example.mean()), float(low), float(high))


def with_interval(value: float, low: float | None, high: float | None, digits: int = 1) -> str:
    """``"62.5 [60.7, 64.3]"`` (just the value without an interval)."""
    if low is None or high is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


@dataclass
class Verdict:
    """The best ranking of one kind of curve and how it compares with random and the others."""

    method: str
    auc: float
    auc_low: float | None
    auc_high: float | None
    random_auc: float
    random_seeds: int
    over_random: Difference
    tied: list[str]  # methods whose AUC differs from the best's by less than the interval

    def sentence(self, what: str) -> str:
        """One line of Markdown naming the best method and whether its lead is larger than the interval."""
        d = self.over_random
        seeds = f"mean of {self.random_seeds} seeds per example" if self.random_seeds > 1 else "one seed"
        verdict = ("larger than its interval: it beats random" if d.low > 0 else
                   "within its interval: not distinguishable from random" if not d.clear else
                   "below zero beyond its interval: random is better")  # fmt: skip
        tied = f" Tied with it (difference within the interval): {', '.join(self.tied)}." if self.tied else ""
        return (f"Best ranking ({what}): **{self.method}**, AUC {with_interval(self.auc, self.auc_low, self.auc_high)}; "
                f"random ({seeds}) {self.random_auc:.1f}; difference {d.value:+.1f} [{d.low:+.1f}, {d.high:+.1f}] "
                f"(paired bootstrap over the same resampled examples), {verdict}.{tied}")  # fmt: skip


def best_method(
    result, protocol: str = "global", order: str = "negative", unit: str = "head", resamples: int = RESAMPLES, seed: int = 0
) -> Verdict | None:
    """The method with the highest AUC among a sweep result's curves of ``protocol``/``order``/``unit``
    (``random`` left out), its paired difference with random (the mean of the random seeds per
    example when there are several) and the methods tied with it; None without a random curve."""
    kind = [(i, c) for i, c in enumerate(result.curves) if (c.protocol, c.order, c.unit) == (protocol, order, unit)]
    ranked = [(i, c) for i, c in kind if c.method != "random"]
    chance = [(i, c) for i, c in kind if c.method == "random"]
    if not ranked or not chance:
        return None
    best, curve = max(ranked, key=lambda pair: pair[1].auc)
    random_index, random_curve = chance[0]
    random_soft = result.replicas.get(random_curve.label, result.soft[random_index])
    levels, soft = result.levels, result.soft
    over = paired_difference(soft[best], random_soft, levels, resamples, seed)
    tied = [c.method for i, c in ranked if i != best and not paired_difference(soft[best], soft[i], levels, resamples, seed).clear]
    random_auc = float(np.mean(random_curve.seed_auc)) if random_curve.seed_auc else random_curve.auc
    return Verdict(curve.method, curve.auc, curve.auc_low, curve.auc_high, random_auc,
                   len(random_curve.seed_auc or [0]), over, tied)  # fmt: skip
