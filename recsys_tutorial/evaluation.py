"""The evaluation protocol: full ranking over all items with each user's seen items excluded.

A model is evaluated through its scores: pass a fitted recommender (anything with ``score(users[,
contexts])``), or a score function ``score_fn(users)`` / ``score_fn(users, contexts)`` returning a
(B, n_items) tensor (an oracle, a hand-written ranker). Every item the user has already interacted
with is removed from the ranking, and the held-out item's position among *all* remaining items gives
the metrics. The sampled variant (rank the target among 100 random unseen items) exists only to show
why numbers reported that way look inflated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from .metrics import per_query_metrics, target_positions
from .ranking import batch_rows, mask_seen

__all__ = ["evaluate_ranking", "evaluate_sampled", "check_no_repeat_targets"]

ScoreFn = Callable[..., torch.Tensor]


def _score_fn(model, context: str | None) -> tuple[ScoreFn, str | None]:
    """A callable for ``model`` and the context column it uses (None for models that ignore context)."""
    if hasattr(model, "score") and hasattr(model, "uses_context"):  # a fitted Recommender
        return model.score, (context if model.uses_context else None)
    return model, context


def _queries(heldout: pd.DataFrame, context: str | None) -> tuple[pd.DataFrame, np.ndarray]:
    """One query per (user[, context]); returns the queries and each held-out row's query index."""
    keys = ["user"] + ([context] if context else [])
    missing = [c for c in keys + ["item"] if c not in heldout]
    if missing:
        raise ValueError(f"held-out frame lacks column(s) {missing}")
    if heldout.empty:
        raise ValueError("the held-out frame is empty: there is nothing to evaluate")
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


def check_no_repeat_targets(heldout: pd.DataFrame, exclude: Sequence[np.ndarray]) -> None:
    """Raise ``ValueError`` if a held-out item is among the items excluded for its user (a repeat target).

    A recommender that excludes seen items can never recommend such an item, so putting it back into the
    ranking for evaluation only inflates the numbers. Drop repeats from the targets (the series' protocol:
    ``temporal_leave_one_out(..., repeats="drop")`` holds out each user's next *new* item) or exclude less.
    """
    users, items = heldout["user"].to_numpy(), heldout["item"].to_numpy()
    repeats = [r for r, (u, i) in enumerate(zip(users, items, strict=True)) if np.isin(i, exclude[u])]
    if repeats:
        first = heldout.iloc[repeats[0]]
        raise ValueError(
            f"{len(repeats)} of {len(heldout)} held-out items are already among their user's excluded (seen) items, "
            f"e.g. user {first['user']} item {first['item']}: repeat targets inflate every metric. Hold out each "
            "user's next new item (temporal_leave_one_out(..., repeats='drop')) or do not exclude those items."
        )


def evaluate_ranking(
    model,
    heldout: pd.DataFrame,
    exclude: Sequence[np.ndarray],
    k: int = 10,
    context: str | None = None,
    per_user: bool = False,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
):
    """HR@K, NDCG@K, Recall@K and MRR under full ranking with seen items excluded.

    Parameters
    ----------
    model : Recommender or callable
        A fitted recommender, or ``score_fn(users)`` / ``score_fn(users, contexts)`` returning (B, n_items).
        A recommender that ignores context is scored without it, even when ``context`` is given.
    heldout : DataFrame
        Encoded held-out interactions (``user``, ``item``, and the context column if any).
    exclude : list of arrays
        ``exclude[u]``: items to remove from user u's ranking (typically train + validation items).
        A held-out item listed there raises (see :func:`check_no_repeat_targets`).
    context : str, optional
        Column of context ids given to the model with each query ("what will this user pick *now*").
    per_user : bool
        Also return one row per query (user[, context]) with its metrics, whose column means are the
        returned numbers: what paired comparisons (:mod:`recsys_tutorial.stats`) resample.
    batch_size : int, optional
        Queries scored at once; by default as many as fit a fixed memory budget for the catalogue size.

    Returns
    -------
    dict of metric -> value, or (that dict, DataFrame of per-query metrics) with ``per_user=True``.
    """
    score_fn, context = _score_fn(model, context)
    queries, qid = _queries(heldout, context)
    check_no_repeat_targets(heldout, exclude)
    items = heldout["item"].to_numpy()
    positions = np.empty(len(heldout), dtype=np.int64)
    start, n_rows = 0, batch_size or 1  # without a batch size, score one query first to learn the catalogue size
    while start < len(queries):
        batch = np.arange(start, min(start + n_rows, len(queries)))
        scores = _scores(score_fn, queries, batch, context, device)
        pairs = np.flatnonzero((qid >= batch[0]) & (qid <= batch[-1]))
        rows = torch.as_tensor(qid[pairs] - batch[0], device=scores.device)
        cols = torch.as_tensor(items[pairs], device=scores.device)
        mask_seen(scores, queries["user"].to_numpy()[batch], exclude)
        positions[pairs] = target_positions(scores, rows, cols).cpu().numpy()
        start, n_rows = batch[-1] + 1, batch_size or batch_rows(scores.shape[1])
    table = per_query_metrics(positions, qid, k)
    metrics = {name: float(table[name].mean()) for name in table.columns}
    if per_user:
        return metrics, pd.concat([queries, table], axis=1)
    return metrics


def evaluate_sampled(
    model,
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
    score_fn, context = _score_fn(model, context)
    rng = np.random.default_rng(seed)
    queries, qid = _queries(heldout, context)
    check_no_repeat_targets(heldout, exclude)
    items = heldout["item"].to_numpy()
    positions = np.empty(len(heldout), dtype=np.int64)
    n_rows = batch_rows(n_items)
    for start in range(0, len(queries), n_rows):
        batch = np.arange(start, min(start + n_rows, len(queries)))
        scores = _scores(score_fn, queries, batch, context, device).cpu()
        for p in np.flatnonzero((qid >= batch[0]) & (qid <= batch[-1])):
            user = queries["user"].iat[qid[p]]
            forbidden = np.union1d(exclude[user], items[qid == qid[p]])
            candidates = np.setdiff1d(np.arange(n_items), forbidden, assume_unique=True)
            negatives = rng.choice(candidates, size=min(n_negatives, len(candidates)), replace=False)
            row = scores[qid[p] - batch[0]]
            positions[p] = int((row[negatives] >= row[items[p]]).sum())
    table = per_query_metrics(positions, qid, k)
    return {name: float(table[name].mean()) for name in table.columns}
