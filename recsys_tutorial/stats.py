r"""Intervals on differences: when does a comparison name a winner, and when is it "within noise"?

Two ways, chosen by what is cheap to repeat:

* **Paired bootstrap over users** (one training run each): both models are scored on the same held-out
  users; resample users with replacement and recompute the mean difference of their per-user metric.
  The percentile interval of those means says how much the difference depends on *which* users
  happened to be held out [1]_.
* **Seeds or folds** (training is cheap enough to repeat): a Student-t interval on the mean over runs,
  or on the mean of paired per-run differences.

:func:`verdict` words the result: a winner only when the interval excludes zero.

References
----------
.. [1] B. Efron and R. J. Tibshirani, "An Introduction to the Bootstrap", Chapman & Hall, 1993.
.. [2] T. Sakai, "Statistical Significance, Power, and Sample Sizes: A Systematic Review of SIGIR and TOIS,
   2006-2015", SIGIR 2016.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "Interval", "paired_bootstrap", "compare_per_user", "compare_rmse", "mean_interval", "paired_interval", "verdict",
]  # fmt: skip


@dataclass(frozen=True)
class Interval:
    """An estimate with a ``confidence`` interval ``[low, high]`` and how it was obtained."""

    estimate: float
    low: float
    high: float
    confidence: float
    method: str

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.estimate:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"

    def __format__(self, spec: str) -> str:
        if not spec:
            return str(self)
        return f"{self.estimate:+{spec}} [{self.low:+{spec}}, {self.high:+{spec}}]"


def paired_bootstrap(
    a, b, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0, chunk: int = 250
) -> Interval:
    """Mean of ``a - b`` over paired units (e.g. users) with a percentile bootstrap interval.

    ``a`` and ``b`` are the two models' per-unit values, aligned (unit r is the same user in both).
    Resampling runs in chunks of ``chunk`` resamples, so memory stays ``chunk x n_units`` integers.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(f"need two aligned 1-D arrays of at least 2 paired values, got {a.shape} and {b.shape}")
    _check_confidence(confidence)
    diff, rng = a - b, np.random.default_rng(seed)
    means = np.concatenate(
        [diff[rng.integers(0, len(diff), (min(chunk, n_resamples - s), len(diff)))].mean(1)
         for s in range(0, n_resamples, chunk)]
    )  # fmt: skip
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(diff.mean()), float(low), float(high), confidence, f"paired bootstrap over {len(diff)} units")


def compare_per_user(table_a: pd.DataFrame, table_b: pd.DataFrame, metric: str = "NDCG@10", **bootstrap) -> Interval:
    """:func:`paired_bootstrap` of ``metric`` between two ``evaluate_ranking(..., per_user=True)`` tables.

    The tables are aligned on the query columns they share (``user``, and the context column when both have
    it; a context-free model's table has none, and with one held-out item per user ``user`` alone identifies a
    query). Both must hold the same queries, i.e. come from the same held-out frame.
    """
    keys = [c for c in table_a.columns if "@" not in c and c != "MRR" and c in table_b.columns]
    for table in (table_a, table_b):
        if table.duplicated(keys).any():
            raise ValueError(f"queries are not unique on {keys}: compare tables with the same query columns")
    merged = table_a[keys + [metric]].merge(table_b[keys + [metric]], on=keys, suffixes=("_a", "_b"))
    if len(merged) != len(table_a) or len(merged) != len(table_b):
        raise ValueError("the two per-user tables hold different queries: evaluate both on the same held-out frame")
    return paired_bootstrap(merged[f"{metric}_a"], merged[f"{metric}_b"], **bootstrap)


def compare_rmse(y, pred_a, pred_b, units, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0,
                 chunk: int = 250, unit: str = "users") -> Interval:  # fmt: skip
    r"""RMSE(a) - RMSE(b) on the same ratings, with a paired percentile bootstrap over ``units`` (e.g. users).

    An RMSE is not a mean of per-user values, so :func:`paired_bootstrap` does not apply directly. Each
    resample draws units with replacement, keeps all of a drawn unit's ratings together, and recomputes
    both RMSEs from the drawn units' summed squared errors,
    :math:`\sqrt{\sum_u w_u \mathrm{SSE}_u / \sum_u w_u n_u}` with :math:`w_u` the times unit :math:`u` was drawn.
    Resampling ratings instead would treat one user's ratings as independent and give too narrow an interval.
    ``pred_a`` and ``pred_b`` are the two models' predictions of the ratings ``y`` (clip them first if the
    RMSE being compared clips); ``units[r]`` is the unit (user) of rating ``r``.
    """
    y, pred_a, pred_b, units = (np.asarray(v) for v in (y, pred_a, pred_b, units))
    if not (y.shape == pred_a.shape == pred_b.shape == units.shape) or y.ndim != 1:
        raise ValueError(f"need aligned 1-D ratings, predictions and units, got shapes {y.shape}, {pred_a.shape}, "
                         f"{pred_b.shape} and {units.shape}")  # fmt: skip
    _check_confidence(confidence)
    codes = np.unique(units, return_inverse=True)[1]
    if codes.max(initial=0) < 1:
        raise ValueError("need ratings from at least 2 units to resample")
    count = np.bincount(codes).astype(np.float64)  # (n_units,)
    sse = [np.bincount(codes, weights=(p.astype(np.float64) - y) ** 2) for p in (pred_a, pred_b)]  # 2 x (n_units,)
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, n_resamples, chunk):
        draw = rng.integers(0, len(count), (min(chunk, n_resamples - start), len(count)))  # (chunk, n_units)
        n = count[draw].sum(1)
        diffs.append(np.sqrt(sse[0][draw].sum(1) / n) - np.sqrt(sse[1][draw].sum(1) / n))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(np.concatenate(diffs), [tail, 100 - tail])
    estimate = np.sqrt(sse[0].sum() / count.sum()) - np.sqrt(sse[1].sum() / count.sum())
    return Interval(float(estimate), float(low), float(high), confidence, f"paired bootstrap over {len(count)} {unit}")


def _t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t with ``df`` degrees of freedom (Simpson integration of the density + bisection)."""
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(x: float) -> float:  # P(T <= x) for x >= 0, by Simpson's rule on [0, x]
        grid = np.linspace(0.0, x, 2001)
        pdf = np.exp(log_norm - (df + 1) / 2 * np.log1p(grid**2 / df))
        weights = np.ones_like(grid)
        weights[1:-1:2], weights[2:-1:2] = 4, 2
        return 0.5 + float((weights * pdf).sum() * (x / 2000) / 3)

    low, high = 0.0, 1e3
    for _ in range(80):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf(mid) < p else (low, mid)
    return (low + high) / 2


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def mean_interval(values, confidence: float = 0.95) -> Interval:
    """Mean of independent runs (seeds, folds) with a Student-t interval: ``mean ± t * sd / sqrt(n)``."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(f"need at least 2 runs for an interval, got {values.size}: run more seeds or folds")
    _check_confidence(confidence)
    half = _t_quantile(0.5 + confidence / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    mean = float(values.mean())
    return Interval(mean, mean - half, mean + half, confidence, f"t interval over {values.size} runs")


def paired_interval(a, b, confidence: float = 0.95) -> Interval:
    """Mean of per-run differences ``a - b`` (run r of both on the same seed or fold) with a t interval."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"need paired runs of one shape, got {a.shape} and {b.shape}")
    inner = mean_interval(a - b, confidence)
    return Interval(inner.estimate, inner.low, inner.high, confidence, f"paired {inner.method}")


def verdict(interval: Interval, a: str, b: str, higher_is_better: bool = True, what: str = "") -> str:
    """One sentence for a difference ``a - b``: a winner only when the interval excludes zero.

    >>> verdict(Interval(0.01, 0.004, 0.016, 0.95, "paired bootstrap"), "CP", "MF", what="NDCG@10")
    'CP beats MF on NDCG@10 by +0.0100 [+0.0040, +0.0160] (95% paired bootstrap)'
    """
    on = f" on {what}" if what else ""
    how = f"({interval.confidence:.0%} {interval.method})"
    if not interval.excludes_zero:
        return f"{a} and {b} are within noise{on}: difference {interval} {how}"
    sign = 1.0 if higher_is_better else -1.0  # the improvement of a over b, positive when a is better
    gain = Interval(sign * interval.estimate, *sorted((sign * interval.low, sign * interval.high)),
                    interval.confidence, interval.method)  # fmt: skip
    if gain.estimate > 0:
        return f"{a} beats {b}{on} by {gain} {how}"
    loss = Interval(-gain.estimate, -gain.high, -gain.low, gain.confidence, gain.method)
    return f"{b} beats {a}{on} by {loss} {how}"
