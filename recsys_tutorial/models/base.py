"""The one contract every recommender in the series follows.

``fit(...) -> self``, ``score(users[, contexts]) -> (B, n_items)`` and
``recommend(users, k, exclude_seen=True)``. Subclasses implement ``fit`` and ``_score``; this base
checks ids at the boundary (a clear ``ValueError``, never a device-side assert), excludes seen items
and takes the top K.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..evaluation import top_k_batch
from ..splits import seen_items

__all__ = ["Recommender", "check_index", "as_index"]


def as_index(values, device=None) -> torch.Tensor:
    """Ids as a 1-D long tensor (copied, so read-only pandas/NumPy buffers are safe)."""
    if isinstance(values, torch.Tensor):
        return values.to(device=device, dtype=torch.long).reshape(-1)
    return torch.tensor(np.asarray(values), dtype=torch.long, device=device).reshape(-1)


def check_index(values: torch.Tensor, n: int, name: str) -> None:
    """Raise a ``ValueError`` when an index lies outside 0..n-1 (before it can reach an embedding)."""
    if values.numel() == 0:
        return
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= n:
        bad = hi if hi >= n else lo
        raise ValueError(f"{name} id {bad} is out of range: the model knows {n} {name}s (0..{n - 1})")


class Recommender:
    """Base class: subclasses set ``n_users``, ``n_items`` (and ``n_contexts`` if context-aware)."""

    n_users: int
    n_items: int
    n_contexts: int | None = None
    device: torch.device = torch.device("cpu")

    def _remember_seen(self, train: pd.DataFrame) -> None:
        self.seen_ = seen_items(train, self.n_users, self.n_items)

    def _score(self, users: torch.Tensor, contexts: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def score(self, users, contexts=None) -> torch.Tensor:
        """Scores of every item for each user (and context), shape (B, n_items); higher is better."""
        users = as_index(users, self.device)
        check_index(users, self.n_users, "user")
        if contexts is not None:
            if self.n_contexts is None:
                raise ValueError(f"{type(self).__name__} does not use context: call score(users) without it")
            contexts = as_index(contexts, self.device)
            check_index(contexts, self.n_contexts, "context")
            if contexts.numel() == 1:
                contexts = contexts.expand_as(users)
            if contexts.shape != users.shape:
                raise ValueError(f"got {users.numel()} users but {contexts.numel()} contexts")
        with torch.no_grad():
            return self._score(users, contexts)

    def recommend(self, users, k: int = 10, exclude_seen: bool = True, contexts=None):
        """Top-``k`` item indices and their scores for each user, each (B, k), best first."""
        if not 1 <= k <= self.n_items:
            raise ValueError(f"k must lie in 1..{self.n_items}, got {k}")
        users = as_index(users, "cpu")  # the seen-item lookup runs on the CPU, wherever the scores live
        return top_k_batch(self.score(users, contexts), users.numpy(), k, self.seen_or_none(exclude_seen))

    def seen_or_none(self, exclude_seen: bool):
        """The seen items to exclude from rankings (``None`` when ``exclude_seen`` is False)."""
        if not exclude_seen:
            return None
        if not hasattr(self, "seen_"):
            raise ValueError("the model has no record of seen items: fit it first or pass exclude_seen=False")
        return self.seen_
