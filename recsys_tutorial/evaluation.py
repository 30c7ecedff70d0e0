"""The evaluation protocol: full ranking over all items with each user's seen items excluded.

A model is evaluated through its score function, ``score_fn(users)`` or ``score_fn(users, contexts)``,
returning a (B, n_items) tensor. Every item the user has already interacted with is removed from the
ranking except the held-out one, and the held-out item's position among *all* remaining items gives
the metrics. The sampled variant (rank the target among 100 random unseen items) exists only to show
why numbers reported that way look inflated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from .metrics import ranking_metrics, target_positions

__all__ = ["evaluate_ranking", "evaluate_sampled", "mask_seen", "top_k_batch"]

ScoreFn = Callable[..., torch.Tensor]


def _queries(heldout: pd.DataFrame, context: str | None) -> tuple[pd.DataFrame, np.ndarray]:
    """One query per (user[, context]); returns the queries and each held-out row's query index."""
    keys = ["user"] + ([context] if context else [])
    missing = [c for c in keys + ["item"] if c not in heldout]
    if missing:
        raise ValueError(f"held-out frame lacks column(s) {missing}")
    queries = heldout[keys].drop_duplicates().sort_values(keys).reset_index(drop=True)
    qid = heldout[keys].merge(queries.reset_index(), on=keys, how="left")["index"].to_numpy()
    return queries, qid


def _scores(score_fn: ScoreFn, queries: pd.DataFrame, batch: np.ndarray, context, device) -> torch.Tensor:
    users = torch.as_tensor(queries["user"].to_numpy()[batch], device=device)
    with torch.no_grad():
        if context:
            contexts = torch.as_tensor(queries[context].to_numpy()[batch], device=device)
            scores = score_fn(users, contexts)
        else:
            scores = score_fn(users)
    return scores.detach().float().clone()  # (B, n_items), ours to mask


def mask_seen(scores: torch.Tensor, users, exclude: Sequence[np.ndarray]) -> torch.Tensor:
    """Set ``scores[r, i] = -inf`` for every item i in ``exclude[users[r]]``, in place; returns ``scores``.

    The one place where seen items leave a ranking: evaluation, ``Recommender.recommend`` and the
    serving top-K all call it.
    """
    users = np.asarray(users)
    if len(users) == 0:
        return scores
    rows = np.concatenate([np.full(len(exclude[u]), r) for r, u in enumerate(users)])  # batch row per seen pair
    cols = np.concatenate([np.asarray(exclude[u], dtype=np.int64) for u in users])
    if len(cols):
        scores[torch.as_tensor(rows, device=scores.device), torch.as_tensor(cols, device=scores.device)] = -torch.inf
    return scores


def top_k_batch(
    scores: torch.Tensor, users, k: int, exclude: Sequence[np.ndarray] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` (indices, scores) of a (B, n_items) score matrix after removing ``exclude[user]`` items."""
    scores = scores.float().clone()  # (B, n_items), ours to mask
    if exclude is not None:
        mask_seen(scores, users, exclude)
    top = torch.topk(scores, k, dim=1)  # (B, k) each, best first
    return top.indices, top.values


def evaluate_ranking(
    score_fn: ScoreFn,
    heldout: pd.DataFrame,
    exclude: Sequence[np.ndarray],
    k: int = 10,
    context: str | None = None,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """HR@K, NDCG@K, Recall@K and MRR under full ranking with seen items excluded.

    Parameters
    ----------
    score_fn : callable
        ``score_fn(users)``, or ``score_fn(users, contexts)`` when ``context`` names a column.
    heldout : DataFrame
        Encoded held-out interactions (``user``, ``item``, and the context column if any).
    exclude : list of arrays
        ``exclude[u]``: items to remove from user u's ranking (typically train + validation items).
        Held-out items are never removed, even if listed.
    """
    queries, qid = _queries(heldout, context)
    items = heldout["item"].to_numpy()
    positions = np.empty(len(heldout), dtype=np.int64)
    for start in range(0, len(queries), batch_size):
        batch = np.arange(start, min(start + batch_size, len(queries)))
        scores = _scores(score_fn, queries, batch, context, device)
        pairs = np.flatnonzero((qid >= batch[0]) & (qid <= batch[-1]))
        rows = torch.as_tensor(qid[pairs] - batch[0], device=scores.device)
        cols = torch.as_tensor(items[pairs], device=scores.device)
        target = scores[rows, cols].clone()  # keep the held-out scores through the masking
        mask_seen(scores, queries["user"].to_numpy()[batch], exclude)
        scores[rows, cols] = target
        positions[pairs] = target_positions(scores, rows, cols).cpu().numpy()
    return ranking_metrics(positions, qid, k)


def evaluate_sampled(
    score_fn: ScoreFn,
    heldout: pd.DataFrame,
    exclude: Sequence[np.ndarray],
    n_items: int,
    k: int = 10,
    n_negatives: int = 100,
    seed: int = 0,
    context: str | None = None,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """The *sampled* protocol: rank each held-out item among ``n_negatives`` random unseen items.

    Shown once, beside the full-ranking numbers, to explain why papers' HR@10 near 0.8 is not
    comparable: beating 100 random items is far easier than beating all of them [1]_.

    References
    ----------
    .. [1] W. Krichene and S. Rendle, "On Sampled Metrics for Item Recommendation", KDD 2020.
    """
    rng = np.random.default_rng(seed)
    queries, qid = _queries(heldout, context)
    items = heldout["item"].to_numpy()
    positions = np.empty(len(heldout), dtype=np.int64)
    scores = _scores(score_fn, queries, np.arange(len(queries)), context, device).cpu()
    for p in range(len(heldout)):
        user = queries["user"].iat[qid[p]]
        forbidden = np.union1d(exclude[user], items[qid == qid[p]])
        candidates = np.setdiff1d(np.arange(n_items), forbidden, assume_unique=True)
        negatives = rng.choice(candidates, size=min(n_negatives, len(candidates)), replace=False)
        row = scores[qid[p]]
        positions[p] = int((row[negatives] >= row[items[p]]).sum())
    return ranking_metrics(positions, qid, k)
