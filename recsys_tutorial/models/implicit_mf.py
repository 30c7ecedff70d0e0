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
from ..training import History
from .als import ObservedEntries, row_blocks
from .base import Recommender, as_index

__all__ = ["ImplicitALSConfig", "ImplicitALS", "IMPLICIT_ALS_ML100K"]


@dataclass(frozen=True)
class ImplicitALSConfig:
    """Hyperparameters of :class:`ImplicitALS`."""

    rank: int = 64
    reg: float = 0.005  # ridge penalty, scaled by each row's (n_observed + unobserved_weight * n_other)
    unobserved_weight: float = 0.1  # w0: weight of the zeros; small, since a missing entry is weak evidence
    n_sweeps: int = 10
    init_std: float = 0.1  # divided by sqrt(rank) so initial scores have the same scale for every rank
    seed: int = 0


# Preset for MovieLens-100K: the best validation NDCG@10 of the sweep over rank x w0 x reg on the temporal
# leave-one-out *validation* items (never the test items), kept in
# benchmarks/results/implicit_als_validation_sweep_2core_cpu.jsonl (benchmarks/implicit_als_sweep.py).
IMPLICIT_ALS_ML100K = ImplicitALSConfig(rank=32, unobserved_weight=3.0, reg=0.002)


class ImplicitALS(Recommender):
    r"""Implicit ALS: fit the 0/1 interaction matrix, every unobserved entry a weighted zero.

    .. math:: \min_{U, V} \sum_{(u,i) \in \Omega} (1 - u_u^\top v_i)^2
              + w_0 \sum_{u,i} (u_u^\top v_i)^2
              + \lambda \sum_u (n_u + w_0 n_{items}) \lVert u_u \rVert^2 + (\text{same for } v_i)

    Each half-step is closed form. The sum over *all* items needs only :math:`V^\top V` (rank x rank),
    so a sweep costs the same as explicit ALS: :math:`u_u = (G_u + w_0 V^\top V + \lambda_u I)^{-1}
    \sum_{i \in \Omega_u} v_i` with :math:`G_u = \sum_{i \in \Omega_u} v_i v_i^\top`. ``history_`` holds the
    data term of the objective per observed entry after each sweep, and validation NDCG@10 with ``valid``.

    References
    ----------
    .. [1] Y. Hu, Y. Koren and C. Volinsky, "Collaborative Filtering for Implicit Feedback Datasets", ICDM 2008.
    .. [2] S. Rendle et al., "Revisiting the Performance of iALS on Item Recommendation Benchmarks",
       RecSys 2022.
    """

    Config = ImplicitALSConfig

    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> History:
        cfg = self.config
        pairs = train[["user", "item"]].drop_duplicates()
        users, items = as_index(pairs["user"], self.device), as_index(pairs["item"], self.device)
        by_user = ObservedEntries(users, items, torch.ones(len(users), device=self.device), self.n_users, self.n_items)
        by_item = by_user.transposed()
        generator = torch.Generator().manual_seed(cfg.seed)
        self.U_ = torch.zeros(self.n_users, cfg.rank, device=self.device)
        self.V_ = (torch.randn(self.n_items, cfg.rank, generator=generator) * cfg.init_std / cfg.rank**0.5).to(
            self.device
        )
        history = History(metric="NDCG@10", higher_is_better=True)
        for _ in range(cfg.n_sweeps):
            self.U_ = self.half_step(by_user, self.V_)
            self.V_ = self.half_step(by_item, self.U_)
            history.train_loss.append(self._data_loss(users, items))
            if valid is not None:
                history.valid.append(evaluate_ranking(self, valid, self.seen_)["NDCG@10"])
        history.best_epoch = len(history.train_loss) - 1
        return history

    def _data_loss(self, users: torch.Tensor, items: torch.Tensor) -> float:
        """The objective's data terms per observed entry: observed errors plus w0 times all squared scores."""
        observed = (1 - (self.U_[users] * self.V_[items]).sum(-1)).pow(2).sum()
        all_squared = (self.U_.T @ self.U_ * (self.V_.T @ self.V_)).sum()  # sum_ui s_ui^2 = <U^T U, V^T V>
        return float((observed + self.config.unobserved_weight * all_squared) / len(users))

    def half_step(self, side: ObservedEntries, Z: torch.Tensor) -> torch.Tensor:
        """Solve every row of one side given the other side's factors ``Z`` (n_other, rank); returns (n_rows, rank)."""
        cfg = self.config
        penalty = cfg.reg * (side.counts + cfg.unobserved_weight * side.shape[1])  # (n_rows,)
        rhs = side.mask @ Z  # (n_rows, rank): sum of the factors of each row's observed entries
        everyone = cfg.unobserved_weight * (Z.T @ Z)  # (rank, rank): the weighted zeros, the same for every row
        solved = []
        for lo, hi in row_blocks(len(rhs), Z.shape[1] ** 2):  # (rows, rank, rank) blocks within the memory budget
            gram = side.gram(Z, (lo, hi)) + everyone  # (rows, rank, rank)
            A = gram + penalty[lo:hi, None, None] * torch.eye(Z.shape[1], device=Z.device)
            solved.append(torch.cholesky_solve(rhs[lo:hi, :, None], torch.linalg.cholesky(A))[..., 0])
        return torch.cat(solved)

    def _score(self, users, contexts):
        return self.U_[users] @ self.V_.T  # (B, n_items)

    def _learned(self):
        return [self.U_, self.V_]
