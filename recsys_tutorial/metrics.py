"""Metrics as pure functions over arrays.

Rating metrics compare predictions with true ratings. Ranking metrics start from *positions*: the
0-based place of each held-out item in a user's ranked list (0 = top). With one held-out item per
user (leave-one-out):

    HR@K   = mean 1[pos < K]
    NDCG@K = mean 1[pos < K] / log2(pos + 2)        (the ideal DCG of one relevant item is 1)
    MRR    = mean 1 / (pos + 1)

With several held-out items per user, Recall@K is the share of them in the top K, and NDCG@K divides
by the ideal DCG of min(K, n_relevant) hits at the top.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

__all__ = ["rmse", "mae", "target_positions", "per_query_metrics", "ranking_metrics"]


def rmse(y_true, y_pred, clip: tuple[float, float] | None = None) -> float:
    """Root mean squared error; ``clip=(1, 5)`` first clips predictions to the rating scale."""
    y_true, y_pred = _pair(y_true, y_pred, clip)
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def mae(y_true, y_pred, clip: tuple[float, float] | None = None) -> float:
    """Mean absolute error; ``clip=(1, 5)`` first clips predictions to the rating scale."""
    y_true, y_pred = _pair(y_true, y_pred, clip)
    return float(np.mean(np.abs(y_true - y_pred)))


def _as_float64(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.array(values, dtype=np.float64)  # a copy: pandas' read-only buffers are fine


def _pair(y_true, y_pred, clip=None) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = _as_float64(y_true), _as_float64(y_pred)
    if clip is not None:
        y_pred = np.clip(y_pred, *clip)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"need two non-empty arrays of one shape, got {y_true.shape} and {y_pred.shape}")
    return y_true, y_pred


def target_positions(scores: torch.Tensor, rows: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """0-based position of ``scores[rows, items]`` within its row, ties counted *against* the target.

    Excluded items (e.g. already seen) must be set to ``-inf`` beforehand. Counting ties pessimistically
    means a model that scores everything equally ranks every target last instead of looking lucky.

    Parameters
    ----------
    scores : (B, n_items) tensor
    rows, items : (P,) long tensors: the row and item of each held-out pair.
    """
    target = scores[rows, items]  # (P,)
    if torch.isneginf(target).any():
        raise ValueError("a held-out item was excluded (score -inf): do not mask the targets themselves")
    at_or_above = (scores[rows] >= target[:, None]).sum(dim=1)  # (P,) includes the target itself
    return at_or_above - 1


def per_query_metrics(positions, groups, k: int = 10) -> pd.DataFrame:
    """HR@K, NDCG@K, Recall@K and MRR of each query (user), one row per distinct ``groups`` value, sorted.

    ``positions`` holds each held-out item's 0-based position and ``groups`` its query; a query may have
    several held-out items. The column means are :func:`ranking_metrics`.
    """
    pos, groups = np.asarray(positions, dtype=np.float64), np.asarray(groups)
    if pos.shape != groups.shape or pos.size == 0:
        raise ValueError("positions and groups must be non-empty arrays of one shape")
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    n = len(counts)
    first = np.full(n, np.inf)
    np.minimum.at(first, inverse, pos)
    dcg = np.bincount(inverse, weights=np.where(pos < k, 1.0 / np.log2(pos + 2.0), 0.0), minlength=n)
    ideal = np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))[np.minimum(counts, k) - 1]
    hits = np.bincount(inverse, weights=(pos < k).astype(float), minlength=n)
    return pd.DataFrame(
        {f"HR@{k}": (first < k).astype(float), f"NDCG@{k}": dcg / ideal, f"Recall@{k}": hits / counts,
         "MRR": 1.0 / (first + 1.0)}
    )  # fmt: skip


def ranking_metrics(positions, groups, k: int = 10) -> dict[str, float]:
    """HR@K, NDCG@K, Recall@K and MRR for held-out items grouped by user (one or several per user)."""
    return {name: float(values.mean()) for name, values in per_query_metrics(positions, groups, k).items()}
