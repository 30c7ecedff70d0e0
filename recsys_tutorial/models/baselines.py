"""Baselines every model must beat: the bias baseline for ratings, most-popular for ranking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..utils import get_device
from .base import Recommender, as_index, check_index

__all__ = ["BiasBaseline", "MostPopular", "ContextPopularity"]


class BiasBaseline(Recommender):
    r"""Rating baseline :math:`\hat r_{ui} = \mu + b_u + b_i` with ridge-regularised biases.

    Fitted by alternating closed-form updates (a few sweeps converge), as in Koren [1]_:
    :math:`b_i = \sum_u (r_{ui} - \mu - b_u) / (\lambda_i + n_i)`, then the same for :math:`b_u`.

    References
    ----------
    .. [1] Y. Koren, "Factor in the Neighbors: Scalable and Accurate Collaborative Filtering", TKDD 2010.
    """

    def __init__(self, reg_user: float = 15.0, reg_item: float = 10.0, n_sweeps: int = 10):
        # Surprise's defaults for baseline ALS: users regularised a little more than items.
        self.reg_user, self.reg_item, self.n_sweeps = reg_user, reg_item, n_sweeps

    def fit(self, train: pd.DataFrame, n_users: int, n_items: int) -> BiasBaseline:
        self.n_users, self.n_items = n_users, n_items
        u, i = train["user"].to_numpy(), train["item"].to_numpy()
        check_index(as_index(u), n_users, "user")  # a clear error before any indexing below
        check_index(as_index(i), n_items, "item")
        r = train["rating"].to_numpy(dtype=np.float64)
        self.mu_ = float(r.mean())
        b_u, b_i = np.zeros(n_users), np.zeros(n_items)
        n_u, n_i = np.bincount(u, minlength=n_users), np.bincount(i, minlength=n_items)
        for _ in range(self.n_sweeps):
            b_i = np.bincount(i, weights=r - self.mu_ - b_u[u], minlength=n_items) / (self.reg_item + n_i)
            b_u = np.bincount(u, weights=r - self.mu_ - b_i[i], minlength=n_users) / (self.reg_user + n_u)
        self.b_u_, self.b_i_ = torch.tensor(b_u), torch.tensor(b_i)
        self._remember_seen(train)
        return self

    def predict(self, users, items) -> torch.Tensor:
        """Predicted ratings for (user, item) pairs."""
        users, items = as_index(users), as_index(items)
        check_index(users, self.n_users, "user")
        check_index(items, self.n_items, "item")
        return self.mu_ + self.b_u_[users] + self.b_i_[items]

    def _score(self, users, contexts):
        return self.mu_ + self.b_u_[users][:, None] + self.b_i_[None, :]  # (B, n_items)


class MostPopular(Recommender):
    """Recommend the items with the most training interactions, the same list for everyone."""

    def fit(self, train: pd.DataFrame, n_users: int, n_items: int) -> MostPopular:
        self.n_users, self.n_items = n_users, n_items
        counts = np.bincount(train["item"].to_numpy(), minlength=n_items)
        self.popularity_ = torch.tensor(counts, dtype=torch.float32)
        self._remember_seen(train)
        return self

    def _score(self, users, contexts):
        return self.popularity_.to(users.device).expand(len(users), -1)  # (B, n_items)


class ContextPopularity(Recommender):
    r"""Popularity within each context (time of day), shrunk towards overall popularity.

    .. math:: s(u, i, c) = \frac{n_{ic} + \beta\, n_i / N}{n_c + \beta}

    where :math:`n_{ic}` counts training interactions with item i in context c, :math:`n_c` all
    interactions in context c, :math:`n_i / N` the overall share of item i, and :math:`\beta` a prior
    strength in pseudo-interactions. Sparse contexts (MovieLens nights) fall back on overall popularity
    instead of on a handful of counts. Same list for every user in a context; seen items are excluded
    by ``recommend``. A context-aware baseline for the serving notebook, in the spirit of the
    pre-filtering approach of Adomavicius and Tuzhilin [1]_.

    References
    ----------
    .. [1] G. Adomavicius and A. Tuzhilin, "Context-Aware Recommender Systems", in Recommender Systems
       Handbook, Springer, 2011.
    """

    def __init__(self, prior_strength: float = 100.0):
        # 100 pseudo-interactions: small next to MovieLens contexts (thousands each), large next to one rating.
        if prior_strength < 0:
            raise ValueError(f"prior_strength must be >= 0, got {prior_strength}")
        self.prior_strength = prior_strength

    def fit(
        self, train: pd.DataFrame, n_users: int, n_items: int, n_contexts: int = 4, context: str = "context_id",
        device: torch.device | str | None = None,
    ) -> ContextPopularity:  # fmt: skip
        """Count items per context in ``train`` (encoded ``user``, ``item`` and a context-id column)."""
        if context not in train:
            raise ValueError(f"train has no {context!r} column: add one with recsys_tutorial.data.add_context")
        self.n_users, self.n_items, self.n_contexts = n_users, n_items, n_contexts
        items, contexts = as_index(train["item"].to_numpy()), as_index(train[context].to_numpy())
        check_index(items, n_items, "item")
        check_index(contexts, n_contexts, "context")
        counts = torch.zeros(n_contexts, n_items)  # (n_contexts, n_items): n_ic
        counts.index_put_((contexts, items), torch.ones(len(items)), accumulate=True)
        share = counts.sum(0) / max(len(items), 1)  # (n_items,): n_i / N
        beta = self.prior_strength
        self.scores_ = (counts + beta * share) / (counts.sum(1, keepdim=True) + beta)  # (n_contexts, n_items)
        self.device = torch.device(device) if device is not None else get_device()
        self.scores_ = self.scores_.to(self.device)  # scoring (and batch top-K) then runs on the chosen device
        self._remember_seen(train)
        return self

    def _score(self, users, contexts):
        if contexts is None:
            raise ValueError("ContextPopularity scores per context: call score(users, contexts)")
        return self.scores_[contexts]  # (B, n_items)
