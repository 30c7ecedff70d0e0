"""Turning scores into rankings: remove each user's seen items, keep the top K, in memory-bounded batches.

Used by evaluation (where does the held-out item land?), by ``Recommender.recommend`` and by the serving
top-K: one implementation, so a list is the same wherever it is computed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["mask_seen", "top_k_batch", "batch_rows", "SCORE_BUDGET_MB"]

# Memory for one (B, n_items) float32 score matrix: rows per batch adapt to the catalogue so that evaluation
# and top-K never hold more than this at once (plus a same-sized working copy), whatever n_items is. Training
# uses the same bound: SASRec's full softmax computes its (positions, n_items) logits in chunks of this size,
# ALS builds and solves its (rows, rank, rank) systems in blocks of it.
SCORE_BUDGET_MB = 256


def batch_rows(n_items: int, budget_mb: float | None = None, cap: int = 4096) -> int:
    """Rows (users) per batch so that a (rows, n_items) float32 score matrix fits in ``budget_mb``.

    ``budget_mb`` defaults to :data:`SCORE_BUDGET_MB`, read at each call (so a test or a small machine may
    lower it for every caller at once); ``cap`` bounds the rows whatever the budget.
    """
    if n_items < 1:
        raise ValueError(f"n_items must be at least 1, got {n_items}")
    budget_mb = SCORE_BUDGET_MB if budget_mb is None else budget_mb
    return int(max(1, min(cap, budget_mb * 2**20 // (4 * n_items))))


def mask_seen(scores: torch.Tensor, users, exclude: Sequence[np.ndarray]) -> torch.Tensor:
    """Set ``scores[r, i] = -inf`` for every item i in ``exclude[users[r]]``, in place; returns ``scores``.

    All seen pairs of the batch are gathered into two index arrays and masked in one indexing operation.
    """
    users = np.asarray(users)
    if len(users) == 0:
        return scores
    lists = [exclude[u] for u in users]
    rows = np.repeat(np.arange(len(users)), [len(x) for x in lists])  # batch row of each seen pair
    cols = np.concatenate(lists).astype(np.int64, copy=False)
    if len(cols):
        scores[torch.as_tensor(rows, device=scores.device), torch.as_tensor(cols, device=scores.device)] = -torch.inf
    return scores


def top_k_batch(
    scores: torch.Tensor, users, k: int, exclude: Sequence[np.ndarray] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` (indices, scores) of a (B, n_items) score matrix after removing ``exclude[user]`` items.

    NaN scores raise a ``ValueError``: a NaN compares false with everything, so ``topk`` would place it
    arbitrarily and a broken model would silently produce lists.
    """
    scores = scores.float().clone()  # (B, n_items), ours to mask
    # One sum finds any NaN without a (B, n_items) mask; only a NaN total (NaN, or +inf meeting -inf) looks closer.
    if torch.isnan(scores.sum()) and torch.isnan(scores).any():
        bad = torch.isnan(scores).any(1).nonzero()[:, 0].cpu().numpy()
        raise ValueError(
            f"NaN scores for {len(bad)} of {len(scores)} users (first: user {np.asarray(users)[bad[0]]}): "
            "the model is broken (diverged training, a NaN input); fix it before ranking"
        )
    if exclude is not None:
        mask_seen(scores, users, exclude)
    top = torch.topk(scores, k, dim=1)  # (B, k) each, best first
    return top.indices, top.values
