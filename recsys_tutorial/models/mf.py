r"""Matrix factorization for explicit ratings: :math:`R \approx \mu + b_u + b_i + U V^\top`.

Three ways to find the factors, as in notebook 01:

* :func:`imputed_svd` / :class:`ImputedSVD`: fill the missing entries, take a truncated SVD (the
  closed-form best rank-``rank`` fit of a *complete* matrix, and why it struggles on sparse data);
* :class:`BiasedMF`: gradient descent in PyTorch on the observed ratings only;
* :class:`~recsys_tutorial.models.als.ALSMF`: alternating least squares, each half-step a batch of
  closed-form ridge solves.

Every model exposes its factors as ``U_`` (n_users, rank) and ``V_`` (n_items, rank), and its biases
as ``mu_``, ``b_u_`` (n_users,) and ``b_i_`` (n_items,), on the model's device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..ids import check_ids
from ..metrics import mae, rmse
from ..splits import random_holdout
from ..training import History, minibatches, run_epochs
from .base import Recommender, as_index

__all__ = [
    "rating_matrix", "imputed_svd", "ImputedSVDConfig", "ImputedSVD", "RatingMF", "BiasedMFConfig", "BiasedMF",
    "similar_items", "BIASED_MF_ML100K",
]  # fmt: skip


def rating_matrix(train: pd.DataFrame, n_users: int, n_items: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense ratings ``R`` (n_users, n_items) with 0 where unobserved, and the 0/1 ``mask`` of observed entries."""
    users, items = as_index(train["user"], device), as_index(train["item"], device)
    check_ids(users, n_users, "user")
    check_ids(items, n_items, "item")
    R = torch.zeros(n_users, n_items, device=device)
    R[users, items] = torch.tensor(train["rating"].to_numpy(), dtype=torch.float32, device=device)
    mask = torch.zeros_like(R)
    mask[users, items] = 1.0
    return R, mask


def imputed_svd(R: torch.Tensor, mask: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Fill unobserved entries with item means, then take the rank-``rank`` truncated SVD.

    By Eckart-Young the truncated SVD :math:`U_r \Sigma_r V_r^\top` is the best rank-``rank`` fit of a
    *complete* matrix in squared error, so on a fully observed ``R`` this is the closed-form answer.
    With most of MovieLens missing, the filled-in means dominate what the SVD fits.

    Returns
    -------
    U : (n_users, rank) tensor, :math:`U_r \Sigma_r^{1/2}`
    V : (n_items, rank) tensor, :math:`V_r \Sigma_r^{1/2}`, so that ``U @ V.T`` is the reconstruction.

    References
    ----------
    .. [1] B. Sarwar et al., "Application of Dimensionality Reduction in Recommender System", WebKDD 2000.
    """
    if not 1 <= rank <= min(R.shape):
        raise ValueError(f"rank must lie in 1..{min(R.shape)}, got {rank}")
    counts = mask.sum(0)  # (n_items,)
    global_mean = (R * mask).sum() / mask.sum().clamp(min=1)
    item_mean = torch.where(counts > 0, (R * mask).sum(0) / counts.clamp(min=1), global_mean)  # (n_items,)
    filled = torch.where(mask.bool(), R, item_mean[None, :])  # (n_users, n_items)
    left, sigma, right_t = torch.linalg.svd(filled, full_matrices=False)
    root = sigma[:rank].sqrt()
    return left[:, :rank] * root, right_t[:rank].T * root


class RatingMF(Recommender, abstract=True):
    r"""Shared prediction code: :math:`\hat r_{ui} = \mu + b_u + b_i + u_u^\top v_i`, clipped to the rating scale.

    Subclasses set ``mu_``, ``b_u_``, ``b_i_``, ``U_``, ``V_`` and ``clip`` (the training ratings' range).
    """

    predicts_ratings = True
    clip: tuple[float, float] | None = None

    def predict(self, users, items) -> torch.Tensor:
        """Predicted ratings for (user, item) pairs, shape (P,)."""
        users, items = self._pairs(users, items)
        r_hat = self.mu_ + self.b_u_[users] + self.b_i_[items] + (self.U_[users] * self.V_[items]).sum(-1)
        return r_hat.clamp(*self.clip) if self.clip else r_hat

    def _score(self, users, contexts):
        return self.mu_ + self.b_u_[users][:, None] + self.b_i_[None, :] + self.U_[users] @ self.V_.T  # (B, n_items)

    def evaluate(self, test: pd.DataFrame) -> dict[str, float]:
        """RMSE and MAE of the predictions on ``test`` (encoded ``user``, ``item``, ``rating``)."""
        pred = self.predict(test["user"], test["item"])
        return {"RMSE": rmse(test["rating"], pred), "MAE": mae(test["rating"], pred)}

    def _learned(self):
        return [self.U_, self.V_, self.b_u_, self.b_i_, torch.as_tensor([self.mu_])]


@dataclass(frozen=True)
class ImputedSVDConfig:
    """The rank of :class:`ImputedSVD`."""

    rank: int = 10


class ImputedSVD(RatingMF):
    """:func:`imputed_svd` behind the Recommender contract (a teaching baseline, not a strong model)."""

    Config = ImputedSVDConfig

    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> History:
        R, mask = rating_matrix(train, self.n_users, self.n_items, self.device)
        self.U_, self.V_ = imputed_svd(R, mask, self.config.rank)
        self.mu_, self.clip = 0.0, None
        self.b_u_ = torch.zeros(self.n_users, device=self.device)
        self.b_i_ = torch.zeros(self.n_items, device=self.device)
        history = History(metric="RMSE", higher_is_better=False, best_epoch=0)
        history.train_loss.append(self.evaluate(train)["RMSE"])
        if valid is not None:
            history.valid.append(self.evaluate(valid)["RMSE"])
        return history

    def _learned(self):
        return [self.U_, self.V_]


# --- gradient descent -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BiasedMFConfig:
    """Hyperparameters of :class:`BiasedMF`."""

    rank: int = 64
    reg: float = 0.1  # L2 on the factors of each rating's user and item (Funk/Koren style)
    reg_bias: float = 0.01  # biases need far less shrinkage than factors
    lr: float = 0.005  # Adam
    batch_size: int = 1024
    epochs: int = 60  # an upper bound: early stopping on validation RMSE ends sooner
    patience: int = 3  # epochs without validation improvement before stopping
    init_std: float = 0.01  # small start: the model begins as the bias baseline
    valid_fraction: float = 0.05  # held out of train for early stopping when no validation frame is given
    seed: int = 0


BIASED_MF_ML100K = BiasedMFConfig()


class _BiasedMFNet(nn.Module):
    """The parameters of biased MF as embeddings."""

    def __init__(self, n_users: int, n_items: int, rank: int, mu: float, init_std: float, generator):
        super().__init__()
        self.mu = mu
        self.U = nn.Parameter(torch.randn(n_users, rank, generator=generator) * init_std)
        self.V = nn.Parameter(torch.randn(n_items, rank, generator=generator) * init_std)
        self.b_u = nn.Parameter(torch.zeros(n_users))
        self.b_i = nn.Parameter(torch.zeros(n_items))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.mu + self.b_u[users] + self.b_i[items] + (self.U[users] * self.V[items]).sum(-1)  # (B,)


class BiasedMF(RatingMF):
    r"""Biased matrix factorization trained by minibatch gradient descent on observed ratings only.

    .. math:: \hat r_{ui} = \mu + b_u + b_i + u_u^\top v_i, \quad
              \min \sum_{(u,i) \in \Omega} (r_{ui} - \hat r_{ui})^2
              + \lambda (\lVert u_u \rVert^2 + \lVert v_i \rVert^2) + \lambda_b (b_u^2 + b_i^2)

    Training goes through :func:`recsys_tutorial.training.train`: a progress bar, validation RMSE after
    every epoch, early stopping and the best weights restored; ``history_`` holds the learning curves.
    Without ``valid``, a ``valid_fraction`` of ``train`` is held out for early stopping.

    References
    ----------
    .. [1] Y. Koren, R. Bell and C. Volinsky, "Matrix Factorization Techniques for Recommender Systems",
       IEEE Computer 2009.
    """

    Config = BiasedMFConfig
    epochs_field = "epochs"

    def _refit_overrides(self) -> dict:
        return {**super()._refit_overrides(), "valid_fraction": 0.0}  # the fixed epoch count replaces stopping

    def _fit(self, train_df: pd.DataFrame, valid: pd.DataFrame | None) -> History:
        cfg = self.config
        if valid is None and cfg.valid_fraction > 0:
            carved = random_holdout(train_df, test_fraction=cfg.valid_fraction, seed=cfg.seed)
            train_df, valid = carved.train, carved.test
        generator = torch.Generator().manual_seed(cfg.seed)
        users, items = as_index(train_df["user"], self.device), as_index(train_df["item"], self.device)
        ratings = torch.tensor(train_df["rating"].to_numpy(), dtype=torch.float32, device=self.device)
        self.clip = (float(ratings.min()), float(ratings.max()))
        net = _BiasedMFNet(self.n_users, self.n_items, cfg.rank, float(ratings.mean()), cfg.init_std, generator)
        self.net_ = net.to(self.device)
        optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)

        def run_epoch(epoch: int) -> float:
            total = 0.0
            for batch in minibatches(len(ratings), cfg.batch_size, generator):
                batch = batch.to(self.device)
                error, penalty = self._loss(users[batch], items[batch], ratings[batch])
                optimizer.zero_grad()
                (error + penalty).backward()
                optimizer.step()
                total += error.item() * len(batch)
            return (total / len(ratings)) ** 0.5  # train RMSE, averaged over the epoch's batches

        validate = self._validator(valid) if valid is not None and len(valid) else None
        history = run_epochs(
            run_epoch, cfg.epochs, validate, module=net, patience=cfg.patience, higher_is_better=False,
            desc="biased MF (SGD)", progress=self.progress, metric="RMSE",
        )  # fmt: skip
        self.mu_ = net.mu
        self.U_, self.V_ = net.U.detach(), net.V.detach()
        self.b_u_, self.b_i_ = net.b_u.detach(), net.b_i.detach()
        return history

    def _loss(self, users, items, ratings) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean squared error of a batch and its L2 penalty on the factors and biases it touches."""
        cfg, net = self.config, self.net_
        error = ((net(users, items) - ratings) ** 2).mean()
        penalty = cfg.reg * (net.U[users].pow(2).sum(-1) + net.V[items].pow(2).sum(-1)).mean()
        return error, penalty + cfg.reg_bias * (net.b_u[users].pow(2) + net.b_i[items].pow(2)).mean()

    def _validator(self, valid: pd.DataFrame):
        """A callable returning the validation RMSE (predictions clipped to the rating scale)."""
        users, items = as_index(valid["user"], self.device), as_index(valid["item"], self.device)
        ratings = torch.tensor(valid["rating"].to_numpy(), dtype=torch.float32, device=self.device)

        def validate() -> float:
            with torch.no_grad():
                return float(((self.net_(users, items).clamp(*self.clip) - ratings) ** 2).mean().sqrt())

        return validate


def similar_items(V: torch.Tensor, item: int, k: int = 10) -> np.ndarray:
    """The ``k`` items whose factor rows in ``V`` (n_items, rank) are most cosine-similar to ``item``'s."""
    check_ids([item], len(V), "item")
    V = torch.nn.functional.normalize(V.float(), dim=1)
    sims = V @ V[item]  # (n_items,)
    sims[item] = -torch.inf  # an item is not its own neighbour
    return torch.topk(sims, k).indices.cpu().numpy()
