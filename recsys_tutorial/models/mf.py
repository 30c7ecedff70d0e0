r"""Matrix factorization for explicit ratings: :math:`R \approx \mu + b_u + b_i + U V^\top`.

Three ways to find the factors, as in notebook 01:

* :func:`imputed_svd` / :class:`ImputedSVD`: fill the missing entries, take a truncated SVD (the
  closed-form best rank-``rank`` fit of a *complete* matrix, and why it struggles on sparse data);
* :class:`BiasedMF`: gradient descent in PyTorch on the observed ratings only;
* :class:`ALSMF`: alternating least squares, each half-step a batch of closed-form ridge solves.

Every model exposes its factors as ``U_`` (n_users, rank) and ``V_`` (n_items, rank), and its biases
as ``mu_``, ``b_u_`` (n_users,) and ``b_i_`` (n_items,), on the model's device.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..metrics import mae, rmse
from ..splits import random_holdout
from ..training import History, minibatches, train
from ..utils import get_device
from .base import Recommender, as_index, check_index

__all__ = [
    "imputed_svd", "ImputedSVD", "BiasedMFConfig", "BiasedMF", "ALSConfig", "ALSMF", "rating_matrix",
    "batched_gram", "similar_items", "BIASED_MF_ML100K", "ALS_ML100K", "SAMPLED_ALS_ML100K",
]  # fmt: skip


def rating_matrix(train: pd.DataFrame, n_users: int, n_items: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense ratings ``R`` (n_users, n_items) with 0 where unobserved, and the 0/1 ``mask`` of observed entries."""
    users, items = as_index(train["user"], device), as_index(train["item"], device)
    check_index(users, n_users, "user")
    check_index(items, n_items, "item")
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


class ImputedSVD(Recommender):
    """:func:`imputed_svd` behind the Recommender contract (a teaching baseline, not a strong model)."""

    def __init__(self, rank: int = 10):
        self.rank = rank

    def fit(self, train: pd.DataFrame, n_users: int, n_items: int) -> ImputedSVD:
        self.n_users, self.n_items, self.device = n_users, n_items, get_device()
        R, mask = rating_matrix(train, n_users, n_items, self.device)
        self.U_, self.V_ = imputed_svd(R, mask, self.rank)
        self._remember_seen(train)
        return self

    def predict(self, users, items) -> torch.Tensor:
        users, items = _checked_pairs(self, users, items)
        return (self.U_[users] * self.V_[items]).sum(-1)

    def _score(self, users, contexts):
        return self.U_[users] @ self.V_.T  # (B, n_items)


def _checked_pairs(model: Recommender, users, items) -> tuple[torch.Tensor, torch.Tensor]:
    """(user, item) index tensors on the model's device, range-checked."""
    users, items = as_index(users, model.device), as_index(items, model.device)
    check_index(users, model.n_users, "user")
    check_index(items, model.n_items, "item")
    if users.shape != items.shape:
        raise ValueError(f"got {users.numel()} users but {items.numel()} items: pass one item per user")
    return users, items


class _RatingMF(Recommender):
    """Shared prediction code: :math:`\\hat r_{ui} = \\mu + b_u + b_i + u_u \\cdot v_i`, clipped to the rating scale."""

    clip: tuple[float, float] | None = None

    def predict(self, users, items) -> torch.Tensor:
        """Predicted ratings for (user, item) pairs, shape (P,)."""
        users, items = _checked_pairs(self, users, items)
        r_hat = self.mu_ + self.b_u_[users] + self.b_i_[items] + (self.U_[users] * self.V_[items]).sum(-1)
        return r_hat.clamp(*self.clip) if self.clip else r_hat

    def _score(self, users, contexts):
        return self.mu_ + self.b_u_[users][:, None] + self.b_i_[None, :] + self.U_[users] @ self.V_.T  # (B, n_items)

    def evaluate(self, test: pd.DataFrame) -> dict[str, float]:
        """RMSE and MAE of the predictions on ``test`` (encoded ``user``, ``item``, ``rating``)."""
        pred = self.predict(test["user"], test["item"]).cpu().numpy()
        truth = test["rating"].to_numpy(copy=True)  # writable: metrics wraps it in a tensor
        return {"RMSE": rmse(truth, pred), "MAE": mae(truth, pred)}


# --- gradient descent -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BiasedMFConfig:
    """Hyperparameters of :class:`BiasedMF` (chosen on a validation split carved from u1.base)."""

    rank: int = 64
    reg: float = 0.1  # L2 on the factors of each rating's user and item (Funk/Koren style)
    reg_bias: float = 0.01  # biases need far less shrinkage than factors
    lr: float = 0.005  # Adam
    batch_size: int = 1024
    epochs: int = 60
    patience: int = 3  # epochs without validation improvement before stopping
    init_std: float = 0.01  # small start: the model begins as the bias baseline
    valid_fraction: float = 0.05  # held out of train for early stopping when no validation frame is given
    seed: int = 0


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


class BiasedMF(_RatingMF):
    r"""Biased matrix factorization trained by minibatch gradient descent on observed ratings only.

    .. math:: \hat r_{ui} = \mu + b_u + b_i + u_u^\top v_i, \quad
              \min \sum_{(u,i) \in \Omega} (r_{ui} - \hat r_{ui})^2
              + \lambda (\lVert u_u \rVert^2 + \lVert v_i \rVert^2) + \lambda_b (b_u^2 + b_i^2)

    Training goes through :func:`recsys_tutorial.training.train`: a progress bar, validation RMSE after
    every epoch, early stopping and the best weights restored; ``history_`` holds the learning curves.

    References
    ----------
    .. [1] Y. Koren, R. Bell and C. Volinsky, "Matrix Factorization Techniques for Recommender Systems",
       IEEE Computer 2009.
    """

    def __init__(self, config: BiasedMFConfig | None = None, **overrides):
        self.config = BiasedMFConfig(**{**(config.__dict__ if config else {}), **overrides})

    def fit(
        self, train_df: pd.DataFrame, n_users: int, n_items: int, valid: pd.DataFrame | None = None, progress=True
    ) -> BiasedMF:
        """Fit on ``train_df``; without ``valid``, a ``valid_fraction`` of it is held out for early stopping."""
        cfg, self.n_users, self.n_items, self.device = self.config, n_users, n_items, get_device()
        if valid is None and cfg.valid_fraction > 0:
            carved = random_holdout(train_df, test_fraction=cfg.valid_fraction, seed=cfg.seed)
            fit_df, valid = carved.train, carved.test
        else:
            fit_df = train_df
        generator = torch.Generator().manual_seed(cfg.seed)
        users, items = _checked_pairs(self, fit_df["user"], fit_df["item"])
        ratings = torch.tensor(fit_df["rating"].to_numpy(), dtype=torch.float32, device=self.device)
        self.clip = (float(ratings.min()), float(ratings.max()))
        net = _BiasedMFNet(n_users, n_items, cfg.rank, float(ratings.mean()), cfg.init_std, generator).to(self.device)
        optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)

        def run_epoch(epoch: int) -> float:
            total = 0.0
            for batch in minibatches(len(ratings), cfg.batch_size, generator):
                batch = batch.to(self.device)
                error, penalty = self._loss(net, users[batch], items[batch], ratings[batch])
                optimizer.zero_grad()
                (error + penalty).backward()
                optimizer.step()
                total += error.item() * len(batch)
            return (total / len(ratings)) ** 0.5  # train RMSE, averaged over the epoch's batches

        validate = self._validator(net, valid) if valid is not None and len(valid) else None
        self.history_: History = train(
            run_epoch, cfg.epochs, validate, module=net, patience=cfg.patience, higher_is_better=False,
            desc="biased MF (SGD)", progress=progress,
        )  # fmt: skip
        self._export(net)
        self._remember_seen(train_df)
        return self

    def _loss(self, net: _BiasedMFNet, users, items, ratings) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean squared error of a batch and its L2 penalty on the factors and biases it touches."""
        cfg = self.config
        error = ((net(users, items) - ratings) ** 2).mean()
        penalty = cfg.reg * (net.U[users].pow(2).sum(-1) + net.V[items].pow(2).sum(-1)).mean()
        return error, penalty + cfg.reg_bias * (net.b_u[users].pow(2) + net.b_i[items].pow(2)).mean()

    def _validator(self, net: _BiasedMFNet, valid: pd.DataFrame):
        """A callable returning the validation RMSE of ``net`` (predictions clipped to the rating scale)."""
        users, items = _checked_pairs(self, valid["user"], valid["item"])
        ratings = torch.tensor(valid["rating"].to_numpy(), dtype=torch.float32, device=self.device)

        def validate() -> float:
            with torch.no_grad():
                return float(((net(users, items).clamp(*self.clip) - ratings) ** 2).mean().sqrt())

        return validate

    def _export(self, net: _BiasedMFNet) -> None:
        self.mu_ = net.mu
        self.U_, self.V_ = net.U.detach().clone(), net.V.detach().clone()
        self.b_u_, self.b_i_ = net.b_u.detach().clone(), net.b_i.detach().clone()


# --- alternating least squares ---------------------------------------------------------------------


def batched_gram(mask: torch.Tensor, Z: torch.Tensor) -> torch.Tensor:
    r"""All rows' Gram matrices at once: ``G[u] = sum_i mask[u, i] z_i z_i^T``, shape (n_rows, d, d).

    One (sparse) matrix product of ``mask`` (n_rows, n_cols) with the row-wise outer products of
    ``Z`` (n_cols, d) flattened to (n_cols, d*d): no Python loop over users.
    """
    d = Z.shape[1]
    outer = (Z[:, :, None] * Z[:, None, :]).reshape(len(Z), d * d)  # (n_cols, d*d)
    return (mask @ outer).reshape(-1, d, d)  # (n_rows, d, d)


@dataclass(frozen=True)
class ALSConfig:
    """Hyperparameters of :class:`ALSMF` (chosen on a validation split carved from u1.base)."""

    rank: int = 32
    reg: float = 0.15  # weighted-lambda: each user's (item's) factor penalty is reg * count**reg_exponent
    reg_exponent: float = 1.0  # 1: weighted-lambda (ALS-WR); 0: one constant penalty for everyone
    reg_bias: float = 5.0  # penalty on each bias, not count-scaled (as the bias baseline's)
    n_sweeps: int = 12  # one sweep = solve all users, then all items
    n_restarts: int = 1  # models from different seeds, averaged (exactly: their factors concatenated)
    n_samples: int = 0  # > 0: after the sweeps, draw this many posterior samples and average them (BPMF-style)
    noise_std: float = 0.8  # rating noise sigma of the sampler's likelihood (about the RMSE it reaches)
    init_std: float = 0.1
    biases: bool = True  # False: plain R ≈ U V^T (the tests compare it with the closed-form SVD)
    seed: int = 0


# Presets for MovieLens-100K, chosen on a random 10% validation split of u1.base (notebook 01 shows how):
# never on the test folds.
BIASED_MF_ML100K = BiasedMFConfig()
ALS_ML100K = ALSConfig(rank=32, reg=0.15)  # rank 64 scored within 0.001 on validation, at 4x the cost
SAMPLED_ALS_ML100K = ALSConfig(rank=8, reg=5.0, reg_exponent=0.0, n_sweeps=8, n_samples=100, noise_std=0.8)


class ALSMF(_RatingMF):
    r"""Biased MF fitted by alternating least squares with weighted-lambda regularisation.

    Fixing the item side ``[v_i, 1]``, each user's ``[u_u, b_u]`` is a ridge regression with a closed
    form; all users are solved at once with one batched Cholesky solve, then the items likewise:

    .. math:: [u_u; b_u] = (Z_u^\top Z_u + \Lambda_u)^{-1} Z_u^\top (r_u - \mu - b_{I_u}), \quad
              \Lambda_u = \mathrm{diag}(\lambda n_u, \dots, \lambda n_u, \lambda_b)

    ``n_samples > 0`` continues after the sweeps with Gibbs draws: each ridge solution plus Gaussian noise
    with covariance :math:`\sigma^2 (Z_u^\top Z_u + \Lambda_u)^{-1}`, the posterior of Bayesian PMF with fixed
    priors [3]_, and averages the draws' predictions. ``n_restarts > 1`` averages models from several seeds.
    An average of MF predictions is itself an MF whose factors are the concatenated factors scaled by
    :math:`1/\sqrt{n}`, so ``U_``/``V_`` stay exact (their width is then rank x number of models averaged).

    References
    ----------
    .. [1] Y. Zhou et al., "Large-Scale Parallel Collaborative Filtering for the Netflix Prize", AAIM 2008.
    .. [2] Y. Koren, R. Bell and C. Volinsky, "Matrix Factorization Techniques for Recommender Systems", 2009.
    .. [3] R. Salakhutdinov and A. Mnih, "Bayesian Probabilistic Matrix Factorization using Markov Chain
       Monte Carlo", ICML 2008.
    """

    def __init__(self, config: ALSConfig | None = None, **overrides):
        self.config = ALSConfig(**{**(config.__dict__ if config else {}), **overrides})

    def fit(self, train_df: pd.DataFrame, n_users: int, n_items: int, valid: pd.DataFrame | None = None) -> ALSMF:
        cfg, self.n_users, self.n_items, self.device = self.config, n_users, n_items, get_device()
        if cfg.n_restarts < 1:
            raise ValueError(f"n_restarts must be at least 1, got {cfg.n_restarts}")
        users, items = _checked_pairs(self, train_df["user"], train_df["item"])
        ratings = torch.tensor(train_df["rating"].to_numpy(), dtype=torch.float32, device=self.device)
        self.mu_ = float(ratings.mean()) if cfg.biases else 0.0
        self.clip = (float(ratings.min()), float(ratings.max())) if cfg.biases else None
        data = _ALSData(users, items, ratings - self.mu_, n_users, n_items)
        self.valid_rmse_: list[float] = []  # validation RMSE after each sweep of the first model, if given
        fits = [f for k in range(cfg.n_restarts) for f in self._fit_one(data, cfg.seed + k, valid if k == 0 else None)]
        scale = len(fits) ** -0.5
        self.U_ = torch.cat([f[0] for f in fits], dim=1) * scale  # (n_users, rank * n_models)
        self.V_ = torch.cat([f[1] for f in fits], dim=1) * scale  # (n_items, rank * n_models)
        self.b_u_ = torch.stack([f[2] for f in fits]).mean(0)
        self.b_i_ = torch.stack([f[3] for f in fits]).mean(0)
        self._remember_seen(train_df)
        return self

    def _fit_one(self, data: _ALSData, seed: int, valid: pd.DataFrame | None) -> list[tuple]:
        """ALS sweeps from one seed, then optional posterior samples; returns the (U, V, b_u, b_i) to average."""
        cfg = self.config
        generator = torch.Generator().manual_seed(seed)
        V = (torch.randn(data.n_items, cfg.rank, generator=generator) * cfg.init_std).to(self.device)
        b_i = torch.zeros(data.n_items, device=self.device)
        b_u = torch.zeros(data.n_users, device=self.device)
        for _ in range(cfg.n_sweeps):
            U, b_u = self._half_step(data.by_user, V, b_i, data.user_counts, b_u)
            V, b_i = self._half_step(data.by_item, U, b_u, data.item_counts, b_i)
            self._track(valid, [(U, V, b_u, b_i)])
        if cfg.n_samples == 0:
            return [(U, V, b_u, b_i)]
        samples = []
        for _ in range(cfg.n_samples):
            U, b_u = self._half_step(data.by_user, V, b_i, data.user_counts, b_u, generator)
            V, b_i = self._half_step(data.by_item, U, b_u, data.item_counts, b_i, generator)
            samples.append((U, V, b_u, b_i))
            self._track(valid, samples)
        return samples

    def _track(self, valid: pd.DataFrame | None, fits: list[tuple]) -> None:
        """Append the validation RMSE of the average of ``fits`` to ``valid_rmse_`` (for learning curves)."""
        if valid is None or not len(valid):
            return
        scale = len(fits) ** -0.5
        self.U_ = torch.cat([f[0] for f in fits], dim=1) * scale
        self.V_ = torch.cat([f[1] for f in fits], dim=1) * scale
        self.b_u_, self.b_i_ = torch.stack([f[2] for f in fits]).mean(0), torch.stack([f[3] for f in fits]).mean(0)
        self.valid_rmse_.append(self.evaluate(valid)["RMSE"])

    def _half_step(self, side: _Side, Z, b_other, counts, b_self, generator: torch.Generator | None = None):
        """Solve every row of one side given the other side's factors ``Z`` and biases ``b_other``."""
        cfg = self.config
        target = side.residual - (b_other[side.cols] if cfg.biases else 0.0)  # (nnz,) what this side must explain
        if cfg.biases:
            Z = torch.cat([Z, torch.ones(len(Z), 1, device=Z.device)], dim=1)  # (n_other, rank + 1)
        d = Z.shape[1]
        gram = batched_gram(side.mask, Z)  # (n_rows, d, d)
        rhs = side.matrix(target) @ Z  # (n_rows, d): sum over each row's entries of target * z
        penalty = cfg.reg * counts.clamp(min=1)[:, None].pow(cfg.reg_exponent).expand(-1, d).clone()  # (n_rows, d)
        if cfg.biases:
            penalty[:, -1] = cfg.reg_bias
        L = torch.linalg.cholesky(gram + torch.diag_embed(penalty))  # (n_rows, d, d), A = L L^T
        X = torch.cholesky_solve(rhs[:, :, None], L)  # (n_rows, d, 1): the ridge solution, A^-1 rhs
        if generator is not None:  # a draw from the posterior N(A^-1 rhs, sigma^2 A^-1)
            z = torch.randn(X.shape, generator=generator).to(X.device) * cfg.noise_std
            X = X + torch.linalg.solve_triangular(L.mT, z, upper=True)
        X = X[..., 0]
        return (X[:, :-1], X[:, -1]) if cfg.biases else (X, b_self)


class _Side:
    """Observed entries seen from one side (rows = users or items): a sparse matrix maker, columns, targets."""

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, residual: torch.Tensor, n_rows: int, n_cols: int):
        self.rows, self.cols, self.residual, self.shape = rows, cols, residual, (n_rows, n_cols)
        self.order = torch.argsort(rows * n_cols + cols)  # CSR order: by row, then column
        counts = torch.bincount(rows, minlength=n_rows)
        self.crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        self.col = cols[self.order]
        self.mask = self.matrix(torch.ones_like(residual))

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """The (n_rows, n_cols) sparse matrix with ``values`` (in the ratings' order) at the observed entries."""
        if self.rows.device.type == "mps":  # no sparse products there: dense is small enough for MovieLens
            return torch.zeros(self.shape, device=values.device).index_put_((self.rows, self.cols), values)
        with warnings.catch_warnings():  # torch labels sparse CSR "beta"; the products used here are stable
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(self.crow, self.col, values[self.order], self.shape, check_invariants=False)


class _ALSData:
    """Observed ratings seen from both sides, with each user's and item's rating count."""

    def __init__(self, users, items, residual, n_users, n_items):
        self.n_users, self.n_items = n_users, n_items
        self.user_counts = torch.bincount(users, minlength=n_users).float()
        self.item_counts = torch.bincount(items, minlength=n_items).float()
        self.by_user = _Side(users, items, residual, n_users, n_items)
        self.by_item = _Side(items, users, residual, n_items, n_users)


def similar_items(V: torch.Tensor, item: int, k: int = 10) -> np.ndarray:
    """The ``k`` items whose factor rows in ``V`` (n_items, rank) are most cosine-similar to ``item``'s."""
    if not 0 <= item < len(V):
        raise ValueError(f"item id {item} is out of range: the model knows {len(V)} items")
    V = torch.nn.functional.normalize(V.float(), dim=1)
    sims = V @ V[item]  # (n_items,)
    sims[item] = -torch.inf  # an item is not its own neighbour
    return torch.topk(sims, k).indices.cpu().numpy()
