r"""Matrix factorization for implicit feedback and top-K ranking: implicit ALS.

Ratings become "the user watched it" (1) or not (0). Fitting the 0/1 matrix with every missing entry
as a weak zero makes the model rank items, not predict stars. Factors are exposed as ``U_``
(n_users, rank) and ``V_`` (n_items, rank); the score of item i for user u is :math:`u_u^\top v_i`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from ..evaluation import evaluate_ranking
from ..splits import seen_items
from ..utils import get_device
from .base import Recommender
from .mf import _checked_pairs, _Side, batched_gram

__all__ = ["ImplicitALSConfig", "ImplicitALS", "IMPLICIT_ALS_ML100K"]


@dataclass(frozen=True)
class ImplicitALSConfig:
    """Hyperparameters of :class:`ImplicitALS` (chosen on the leave-one-out validation item)."""

    rank: int = 64
    reg: float = 0.005  # ridge penalty, scaled by each row's (n_observed + unobserved_weight * n_other)
    unobserved_weight: float = 0.1  # w0: weight of the zeros; small, since a missing entry is weak evidence
    n_sweeps: int = 10
    init_std: float = 0.1  # divided by sqrt(rank) so initial scores have the same scale for every rank
    seed: int = 0


# Preset for MovieLens-100K, chosen on the temporal leave-one-out *validation* items (never the test items).
IMPLICIT_ALS_ML100K = ImplicitALSConfig(rank=32, unobserved_weight=0.3)


class ImplicitALS(Recommender):
    r"""Implicit ALS: fit the 0/1 interaction matrix, every unobserved entry a weighted zero.

    .. math:: \min_{U, V} \sum_{(u,i) \in \Omega} (1 - u_u^\top v_i)^2
              + w_0 \sum_{u,i} (u_u^\top v_i)^2
              + \lambda \sum_u (n_u + w_0 n_{items}) \lVert u_u \rVert^2 + (\text{same for } v_i)

    Each half-step is closed form. The sum over *all* items needs only :math:`V^\top V` (rank x rank),
    so a sweep costs the same as explicit ALS: :math:`u_u = (G_u + w_0 V^\top V + \lambda_u I)^{-1}
    \sum_{i \in \Omega_u} v_i` with :math:`G_u = \sum_{i \in \Omega_u} v_i v_i^\top`.

    References
    ----------
    .. [1] Y. Hu, Y. Koren and C. Volinsky, "Collaborative Filtering for Implicit Feedback Datasets", ICDM 2008.
    .. [2] S. Rendle et al., "Revisiting the Performance of iALS on Item Recommendation Benchmarks",
       RecSys 2022.
    """

    def __init__(self, config: ImplicitALSConfig | None = None, **overrides):
        self.config = ImplicitALSConfig(**{**(config.__dict__ if config else {}), **overrides})

    def fit(self, train: pd.DataFrame, n_users: int, n_items: int, valid: pd.DataFrame | None = None) -> ImplicitALS:
        """Fit on the (user, item) pairs of ``train`` (ratings ignored); ``valid`` tracks NDCG@10 per sweep."""
        cfg, self.n_users, self.n_items, self.device = self.config, n_users, n_items, get_device()
        pairs = train[["user", "item"]].drop_duplicates()
        users, items = _checked_pairs(self, pairs["user"], pairs["item"])
        ones = torch.ones(len(users), device=self.device)
        by_user, by_item = _Side(users, items, ones, n_users, n_items), _Side(items, users, ones, n_items, n_users)
        generator = torch.Generator().manual_seed(cfg.seed)
        self.U_ = torch.zeros(n_users, cfg.rank, device=self.device)
        self.V_ = (torch.randn(n_items, cfg.rank, generator=generator) * cfg.init_std / cfg.rank**0.5).to(self.device)
        self._remember_seen(train)
        exclude = seen_items(train, n_users, n_items)
        self.valid_ndcg_: list[float] = []  # validation NDCG@10 after each sweep, if ``valid`` is given
        for _ in range(cfg.n_sweeps):
            self.U_ = self._half_step(by_user, self.V_)
            self.V_ = self._half_step(by_item, self.U_)
            if valid is not None and len(valid):
                self.valid_ndcg_.append(evaluate_ranking(self.score, valid, exclude)["NDCG@10"])
        return self

    def _half_step(self, side: _Side, Z: torch.Tensor) -> torch.Tensor:
        """Solve every row of one side given the other side's factors ``Z`` (n_other, rank)."""
        cfg = self.config
        gram = batched_gram(side.mask, Z) + cfg.unobserved_weight * (Z.T @ Z)  # (n_rows, rank, rank)
        counts = torch.bincount(side.rows, minlength=side.shape[0]).float()  # (n_rows,)
        penalty = cfg.reg * (counts + cfg.unobserved_weight * side.shape[1])  # (n_rows,)
        A = gram + penalty[:, None, None] * torch.eye(Z.shape[1], device=Z.device)
        rhs = side.mask @ Z  # (n_rows, rank): sum of the factors of each row's observed entries
        return torch.cholesky_solve(rhs[:, :, None], torch.linalg.cholesky(A))[..., 0]

    def _score(self, users, contexts):
        return self.U_[users] @ self.V_.T  # (B, n_items)
