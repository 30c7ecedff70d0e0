"""Baselines every model must beat: the bias baseline for ratings, most-popular (per context) for ranking."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..ids import check_ids
from ..metrics import rmse
from ..training import History
from .base import Recommender, as_index

__all__ = ["BiasBaselineConfig", "BiasBaseline", "MostPopular", "ContextPopularityConfig", "ContextPopularity"]


@dataclass(frozen=True)
class BiasBaselineConfig:
    """Ridge penalties of :class:`BiasBaseline` (Surprise's defaults for baseline ALS)."""

    reg_user: float = 15.0  # users are regularised a little more than items: fewer ratings each
    reg_item: float = 10.0
    n_sweeps: int = 10  # alternating closed-form updates; a few converge


class BiasBaseline(Recommender):
    r"""Rating baseline :math:`\hat r_{ui} = \mu + b_u + b_i` with ridge-regularised biases.

    Fitted by alternating closed-form updates, as in Koren [1]_:
    :math:`b_i = \sum_u (r_{ui} - \mu - b_u) / (\lambda_i + n_i)`, then the same for :math:`b_u`.
    ``history_`` holds the training RMSE after each sweep (and the validation RMSE with ``valid``).

    References
    ----------
    .. [1] Y. Koren, "Factor in the Neighbors: Scalable and Accurate Collaborative Filtering", TKDD 2010.
    """

    Config = BiasBaselineConfig
    predicts_ratings = True

    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> History:
        cfg = self.config
        u, i = train["user"].to_numpy(), train["item"].to_numpy()
        r = train["rating"].to_numpy(dtype=np.float64)
        self.mu_ = float(r.mean())
        b_u, b_i = np.zeros(self.n_users), np.zeros(self.n_items)
        n_u, n_i = np.bincount(u, minlength=self.n_users), np.bincount(i, minlength=self.n_items)
        history = History(metric="RMSE", higher_is_better=False)
        for _ in range(cfg.n_sweeps):
            b_i = np.bincount(i, weights=r - self.mu_ - b_u[u], minlength=self.n_items) / (cfg.reg_item + n_i)
            b_u = np.bincount(u, weights=r - self.mu_ - b_i[i], minlength=self.n_users) / (cfg.reg_user + n_u)
            history.train_loss.append(rmse(r, self.mu_ + b_u[u] + b_i[i]))
            if valid is not None:
                vu, vi = valid["user"].to_numpy(), valid["item"].to_numpy()
                history.valid.append(rmse(valid["rating"], self.mu_ + b_u[vu] + b_i[vi]))
        history.best_epoch = len(history.train_loss) - 1
        self.b_u_ = torch.tensor(b_u, dtype=torch.float32, device=self.device)
        self.b_i_ = torch.tensor(b_i, dtype=torch.float32, device=self.device)
        return history

    def predict(self, users, items) -> torch.Tensor:
        """Predicted ratings for (user, item) pairs, shape (P,)."""
        users, items = self._pairs(users, items)
        return self.mu_ + self.b_u_[users] + self.b_i_[items]

    def _score(self, users, contexts):
        return self.mu_ + self.b_u_[users][:, None] + self.b_i_[None, :]  # (B, n_items)

    def _learned(self):
        return [self.b_u_, self.b_i_, torch.tensor([self.mu_])]


class MostPopular(Recommender):
    """Recommend the items with the most training interactions: the same list for everyone."""

    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> History:
        counts = np.bincount(train["item"].to_numpy(), minlength=self.n_items)
        self.popularity_ = torch.tensor(counts, dtype=torch.float32, device=self.device)  # (n_items,)
        return History(best_epoch=0)

    def _score(self, users, contexts):
        return self.popularity_.expand(len(users), -1)  # (B, n_items)

    def _learned(self):
        return [self.popularity_]


@dataclass(frozen=True)
class ContextPopularityConfig:
    """Prior strength and context column of :class:`ContextPopularity`."""

    # 100 pseudo-interactions: small next to MovieLens' time-of-day buckets (thousands each), large next to one.
    prior_strength: float = 100.0
    context: str = "context_id"  # the column of integer context ids in the frames passed to fit

    def __post_init__(self):
        if self.prior_strength < 0:
            raise ValueError(f"prior_strength must be >= 0, got {self.prior_strength}")


class ContextPopularity(Recommender):
    r"""Popularity within each context (time of day), shrunk towards overall popularity.

    .. math:: s(u, i, c) = \frac{n_{ic} + \beta\, n_i / N}{n_c + \beta}

    where :math:`n_{ic}` counts training interactions with item i in context c, :math:`n_c` all
    interactions in context c, :math:`n_i / N` the overall share of item i, and :math:`\beta` a prior
    strength in pseudo-interactions. Sparse contexts fall back on overall popularity instead of on a
    handful of counts. Same list for every user in a context, in the spirit of the pre-filtering
    approach of Adomavicius and Tuzhilin [1]_.

    References
    ----------
    .. [1] G. Adomavicius and A. Tuzhilin, "Context-Aware Recommender Systems", in Recommender Systems
       Handbook, Springer, 2011.
    """

    Config = ContextPopularityConfig
    context_aware = True
    without_context = "ranks by overall popularity n_i / N (the prior every context is shrunk towards)"

    def fit(self, train: pd.DataFrame, n_users: int, n_items: int, n_contexts: int, valid=None):
        """Count items per context in ``train`` (encoded ``user``, ``item`` and the config's context column)."""
        column = self.config.context
        if column not in train:
            raise ValueError(f"train has no {column!r} column: add one with recsys_tutorial.data.add_context")
        check_ids(train[column].to_numpy(), n_contexts, "context", "Pass n_contexts larger than the context ids.")
        return self._fit_checked(train, n_users, n_items, int(n_contexts), valid)

    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> History:
        items, contexts = as_index(train["item"]), as_index(train[self.config.context])
        counts = torch.zeros(self.n_contexts, self.n_items)  # (n_contexts, n_items): n_ic
        counts.index_put_((contexts, items), torch.ones(len(items)), accumulate=True)
        self.share_ = (counts.sum(0) / len(items)).to(self.device)  # (n_items,): n_i / N
        beta = self.config.prior_strength
        scores = (counts + beta * counts.sum(0) / len(items)) / (counts.sum(1, keepdim=True) + beta)
        self.scores_ = scores.to(self.device)  # (n_contexts, n_items); batch top-K then runs on the device
        return History(best_epoch=0)

    def _score(self, users, contexts):
        if contexts is None:
            return self.share_.expand(len(users), -1)  # (B, n_items)
        return self.scores_[contexts]  # (B, n_items)

    def _learned(self):
        return [self.scores_]
