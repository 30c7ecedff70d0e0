"""Batch top-K: score every item for every user (and context) in batches, exclude seen items, keep K.

Offline serving precomputes each user's list once per model refresh, so the API only looks lists up.
Brute force is the honest baseline: scoring all ``n_users x n_items`` pairs is one matrix product per
batch, and a batch of ``B`` users holds a ``(B, n_items)`` float32 score matrix, the memory that
``batch_size`` bounds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..ids import check_ids
from ..models.base import Recommender, as_index
from ..ranking import batch_rows, top_k_batch

__all__ = ["TopKResult", "top_k"]


@dataclass(frozen=True)
class TopKResult:
    """Every user's top-K lists as a long frame ``user, context, rank, item, score``, and how it was made."""

    lists: pd.DataFrame  # one row per (user, context, rank); rank starts at 1; context -1 = no context
    seconds: float  # wall time of scoring, masking and top-K for all users and contexts
    peak_batch_bytes: int  # size of the largest (B, n_items) float32 score matrix held at once
    device: str
    peak_cuda_bytes: int | None = None  # measured peak of allocated CUDA memory during the run (GPU only)


def top_k(
    model: Recommender,
    k: int = 10,
    users=None,
    contexts: Sequence[int] | None = None,
    batch_size: int | None = None,
    exclude_seen: bool = True,
) -> TopKResult:
    r"""Top-``k`` items for every user (and every context) of a fitted model.

    Parameters
    ----------
    model : Recommender
        Fitted; ``model.score(users[, contexts])`` returns (B, n_items) on ``model.device``.
    k : int
        List length, 1..n_items.
    users : array of int, optional
        User indices (default: all ``model.n_users``).
    contexts : sequence of int, optional
        Context ids to make one list per user and context (context-aware models; default: all of
        ``model.n_contexts`` if the model has contexts, else a single list with context -1).
    batch_size : int, optional
        Users scored at once; bounds memory at ``batch_size * n_items * 4`` bytes. By default as many as
        fit :data:`recsys_tutorial.ranking.SCORE_BUDGET_MB`, so a large catalogue gets smaller batches.
    exclude_seen : bool
        Drop the items in ``model.seen_`` (each user's training interactions).

    A user with fewer than ``k`` unseen items gets ``-inf`` scores at the end of the list; those rows are
    dropped, so such a list is shorter than ``k`` (and the store refuses to publish incomplete lists).
    NaN scores raise a ``ValueError``.

    Brute force is exact: for each user, :math:`\operatorname{top}_k \{ s(u, i[, c]) : i \notin
    \mathcal{S}_u \}` over every item, where :math:`\mathcal{S}_u` are the user's seen items. Systems with
    millions of items replace it by approximate nearest-neighbour search over item embeddings [1]_; at
    MovieLens scale the exact answer is cheap (``benchmarks/serving.py`` times it).

    References
    ----------
    .. [1] P. Covington, J. Adams and E. Sargin, "Deep Neural Networks for YouTube Recommendations",
       RecSys 2016.
    """
    if not 1 <= k <= model.n_items:
        raise ValueError(f"k must lie in 1..{model.n_items} (the model's items), got {k}")
    batch_size = batch_rows(model.n_items) if batch_size is None else batch_size
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    users = np.arange(model.n_users) if users is None else as_index(users, "cpu").numpy()
    check_ids(users, model.n_users, "user")
    if contexts is None:
        contexts = range(model.n_contexts) if model.uses_context else [None]
    elif not model.uses_context:
        raise ValueError(f"{type(model).__name__} does not use context: call top_k without contexts")
    exclude = model.seen_or_none(exclude_seen)
    cuda = torch.device(model.device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(model.device)
    frames, start = [], time.perf_counter()
    for context in contexts:
        for lo in range(0, len(users), batch_size):
            batch = users[lo : lo + batch_size]
            ctx = None if context is None else torch.full((len(batch),), context, dtype=torch.long)
            items, scores = top_k_batch(model.score(batch, ctx), batch, k, exclude)  # (B, k) each
            frames.append((batch, -1 if context is None else context, items.cpu().numpy(), scores.cpu().numpy()))
    _sync(model.device)
    seconds = time.perf_counter() - start
    peak = min(batch_size, len(users)) * model.n_items * 4
    measured = torch.cuda.max_memory_allocated(model.device) if cuda else None
    return TopKResult(_long_frame(frames, k), seconds, peak, str(model.device), measured)


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work so that timings are honest."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _long_frame(frames: list, k: int) -> pd.DataFrame:
    """(users, context, (B, k) items, (B, k) scores) chunks -> one row per finite (user, context, rank)."""
    users = np.concatenate([np.repeat(b, k) for b, _, _, _ in frames])
    context = np.concatenate([np.full(len(b) * k, c) for b, c, _, _ in frames])
    rank = np.concatenate([np.tile(np.arange(1, k + 1), len(b)) for b, _, _, _ in frames])
    item = np.concatenate([i.reshape(-1) for _, _, i, _ in frames])
    score = np.concatenate([s.reshape(-1) for _, _, _, s in frames])
    out = pd.DataFrame({"user": users, "context": context, "rank": rank, "item": item, "score": score})
    return out[np.isfinite(out["score"])].reset_index(drop=True)
