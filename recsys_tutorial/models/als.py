r"""Alternating least squares for biased MF: each half-step is a batch of closed-form ridge solves.

Fix the item side and every user's factors (and bias) solve a small ridge regression; fix the users
and every item's do. :class:`ObservedEntries` holds the observed entries seen from one side as a
sparse matrix, so that all users' (or items') normal equations are built by sparse products and solved
by one batched Cholesky factorisation: no Python loop over users. :class:`ALSMF` uses it for ratings,
:class:`~recsys_tutorial.models.implicit_mf.ImplicitALS` for implicit feedback.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pandas as pd
import torch

from ..metrics import rmse
from ..ranking import batch_rows
from ..training import History
from .base import as_index
from .mf import RatingMF

__all__ = [
    "ObservedEntries", "batched_gram", "row_blocks", "ALSConfig", "ALSMF", "ALS_ML100K", "SAMPLED_ALS_ML100K",
]  # fmt: skip


class ObservedEntries:
    """Observed entries seen from one side (rows = users or items): columns, values and a sparse-matrix maker.

    ``rows``, ``cols`` and ``values`` are (nnz,) tensors in the interactions' order; :meth:`matrix` puts
    any (nnz,) values at the observed positions of an (n_rows, n_cols) sparse CSR matrix, ``mask`` is the
    0/1 matrix of observed entries and ``counts`` each row's number of entries.
    """

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, n_rows: int, n_cols: int):
        self.rows, self.cols, self.values, self.shape = rows, cols, values, (n_rows, n_cols)
        self.order = torch.argsort(rows * n_cols + cols)  # CSR order: by row, then column
        self.counts = torch.bincount(rows, minlength=n_rows).float()  # (n_rows,)
        self.crow = torch.cat([rows.new_zeros(1), torch.bincount(rows, minlength=n_rows).cumsum(0)])
        self.col = cols[self.order]
        self.mask = self.matrix(torch.ones_like(values))

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """The (n_rows, n_cols) sparse matrix with ``values`` (in the interactions' order) at the observed entries."""
        if self.rows.device.type == "mps":  # no sparse products there: dense is small enough for MovieLens
            return torch.zeros(self.shape, device=values.device).index_put_((self.rows, self.cols), values)
        with warnings.catch_warnings():  # torch labels sparse CSR "beta"; the products used here are stable
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(self.crow, self.col, values[self.order], self.shape, check_invariants=False)

    def transposed(self) -> ObservedEntries:
        """The same entries seen from the other side (items as rows)."""
        return ObservedEntries(self.cols, self.rows, self.values, self.shape[1], self.shape[0])

    def block_mask(self, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
        """The 0/1 sparse matrix of the observed entries in rows ``lo..hi-1`` and columns ``a..b-1``."""
        (lo, hi), (a, b) = rows, cols
        if (lo, hi, a, b) == (0, *self.shape[:1], 0, self.shape[1]):
            return self.mask
        if self.mask.layout == torch.strided:  # MPS keeps the mask dense (no sparse products there)
            return self.mask[lo:hi, a:b]
        per_row = self.crow[lo + 1 : hi + 1] - self.crow[lo:hi]  # (hi - lo,) entries of each row
        row = torch.repeat_interleave(torch.arange(hi - lo, device=per_row.device), per_row)  # (entries,) in the block
        col = self.col[int(self.crow[lo]) : int(self.crow[hi])]  # (entries,) CSR order: by row, then column
        keep = (col >= a) & (col < b)
        crow = torch.cat([row.new_zeros(1), torch.bincount(row[keep], minlength=hi - lo).cumsum(0)])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            ones = torch.ones(int(keep.sum()), device=col.device)
            return torch.sparse_csr_tensor(crow, col[keep] - a, ones, (hi - lo, b - a), check_invariants=False)

    def gram(self, Z: torch.Tensor, rows: tuple[int, int]) -> torch.Tensor:
        """:func:`batched_gram` of rows ``lo..hi-1``, over column blocks whose outer products fit the budget."""
        gram = None
        for a, b in row_blocks(len(Z), Z.shape[1] ** 2):  # blocks of Z whose (b - a, d * d) outer products fit
            part = batched_gram(self.block_mask(rows, (a, b)), Z[a:b])  # (hi - lo, d, d)
            gram = part if gram is None else gram.add_(part)
        return gram


def row_blocks(n_rows: int, width: int) -> list[tuple[int, int]]:
    """Row ranges ``(lo, hi)`` covering ``n_rows`` whose (rows, width) float32 blocks fit the memory budget.

    The budget is :data:`recsys_tutorial.ranking.SCORE_BUDGET_MB`; one range when everything fits.
    """
    step = batch_rows(width, cap=n_rows)
    return [(lo, min(lo + step, n_rows)) for lo in range(0, n_rows, step)]


def batched_gram(mask: torch.Tensor, Z: torch.Tensor) -> torch.Tensor:
    r"""All rows' Gram matrices at once: ``G[u] = sum_i mask[u, i] z_i z_i^T``, shape (n_rows, d, d).

    One (sparse) matrix product of ``mask`` (n_rows, n_cols) with the row-wise outer products of
    ``Z`` (n_cols, d) flattened to (n_cols, d*d).
    """
    d = Z.shape[1]
    outer = (Z[:, :, None] * Z[:, None, :]).reshape(len(Z), d * d)  # (n_cols, d*d)
    return (mask @ outer).reshape(-1, d, d)  # (n_rows, d, d)


@dataclass(frozen=True)
class ALSConfig:
    """Hyperparameters of :class:`ALSMF`."""

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

    def __post_init__(self):
        if self.n_restarts < 1 or self.n_sweeps < 1:
            raise ValueError(f"n_restarts and n_sweeps must be at least 1, got {self.n_restarts}, {self.n_sweeps}")


# Starting points for MovieLens-100K; which values a fold uses is chosen on that fold's validation share
# (recsys_tutorial.tuning), never on test ratings.
ALS_ML100K = ALSConfig(rank=32, reg=0.15)
SAMPLED_ALS_ML100K = ALSConfig(rank=8, reg=5.0, reg_exponent=0.0, n_sweeps=8, n_samples=100, noise_std=0.8)


class ALSMF(RatingMF):
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
    ``history_`` has one entry per sweep and then per draw: the training and validation RMSE of the
    average so far.

    References
    ----------
    .. [1] Y. Zhou et al., "Large-Scale Parallel Collaborative Filtering for the Netflix Prize", AAIM 2008.
    .. [2] Y. Koren, R. Bell and C. Volinsky, "Matrix Factorization Techniques for Recommender Systems", 2009.
    .. [3] R. Salakhutdinov and A. Mnih, "Bayesian Probabilistic Matrix Factorization using Markov Chain
       Monte Carlo", ICML 2008.
    """

    Config = ALSConfig

    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> History:
        cfg = self.config
        users, items = as_index(train["user"], self.device), as_index(train["item"], self.device)
        ratings = torch.tensor(train["rating"].to_numpy(), dtype=torch.float32, device=self.device)
        self.mu_ = float(ratings.mean()) if cfg.biases else 0.0
        self.clip = (float(ratings.min()), float(ratings.max())) if cfg.biases else None
        by_user = ObservedEntries(users, items, ratings - self.mu_, self.n_users, self.n_items)
        history = History(metric="RMSE", higher_is_better=False)
        track = self._tracker(history, train, valid)
        fits = [
            f for k in range(cfg.n_restarts) for f in self._fit_one(by_user, cfg.seed + k, track if k == 0 else None)
        ]
        self._set_average(fits)
        history.best_epoch = len(history.train_loss) - 1
        return history

    def _tracker(self, history: History, train: pd.DataFrame, valid: pd.DataFrame | None):
        """A ``track(fits)`` recording the training (and validation) RMSE of the average of ``fits`` in ``history``.

        ``fits`` is either one sweep's fit or the draws so far, the newest last; only the newest one's predictions
        are computed and added to running sums, so tracking S draws costs O(S), not O(S^2) predictions.
        """
        frames = {"train": train} if valid is None else {"train": train, "valid": valid}
        index = {
            name: (as_index(f["user"], self.device), as_index(f["item"], self.device)) for name, f in frames.items()
        }
        sums: dict[str, torch.Tensor] = {}  # each frame's summed predictions (less mu) of the fits averaged so far

        def track(fits: list[tuple]) -> None:
            U, V, b_u, b_i = fits[-1]
            for name, (users, items) in index.items():
                newest = b_u[users] + b_i[items] + (U[users] * V[items]).sum(-1)  # (P,) as RatingMF.predict, less mu
                sums[name] = newest if len(fits) == 1 else sums[name] + newest
                pred = self.mu_ + sums[name] / len(fits)  # the average model's prediction, as _set_average makes it
                pred = pred.clamp(*self.clip) if self.clip else pred
                (history.train_loss if name == "train" else history.valid).append(rmse(frames[name]["rating"], pred))

        return track

    def _fit_one(self, by_user: ObservedEntries, seed: int, track) -> list[tuple]:
        """ALS sweeps from one seed, then optional posterior draws; returns the (U, V, b_u, b_i) to average."""
        cfg, by_item = self.config, by_user.transposed()
        generator = torch.Generator().manual_seed(seed)
        V = (torch.randn(self.n_items, cfg.rank, generator=generator) * cfg.init_std).to(self.device)
        b_i = torch.zeros(self.n_items, device=self.device)
        b_u = torch.zeros(self.n_users, device=self.device)
        for _ in range(cfg.n_sweeps):
            U, b_u = self.half_step(by_user, V, b_i, b_u)
            V, b_i = self.half_step(by_item, U, b_u, b_i)
            if track:
                track([(U, V, b_u, b_i)])
        if cfg.n_samples == 0:
            return [(U, V, b_u, b_i)]
        samples = []
        for _ in range(cfg.n_samples):
            U, b_u = self.half_step(by_user, V, b_i, b_u, generator)
            V, b_i = self.half_step(by_item, U, b_u, b_i, generator)
            samples.append((U, V, b_u, b_i))
            if track:
                track(samples)
        return samples

    def _set_average(self, fits: list[tuple]) -> None:
        """Make the model the average of ``fits``: concatenated factors scaled by 1/sqrt(n), mean biases."""
        scale = len(fits) ** -0.5
        self.U_ = torch.cat([f[0] for f in fits], dim=1) * scale  # (n_users, rank * n_models)
        self.V_ = torch.cat([f[1] for f in fits], dim=1) * scale  # (n_items, rank * n_models)
        self.b_u_ = torch.stack([f[2] for f in fits]).mean(0)
        self.b_i_ = torch.stack([f[3] for f in fits]).mean(0)

    def half_step(self, side: ObservedEntries, Z, b_other, b_self, generator: torch.Generator | None = None):
        """Solve every row of one side given the other side's factors ``Z`` (n_other, rank) and biases.

        Returns the new factors (n_rows, rank) and biases (n_rows,). With ``generator``, each row's solution
        is a draw from its Gaussian posterior instead of the ridge solution (the mean of that posterior).
        """
        cfg = self.config
        target = side.values - (b_other[side.cols] if cfg.biases else 0.0)  # (nnz,) what this side must explain
        if cfg.biases:
            Z = torch.cat([Z, torch.ones(len(Z), 1, device=Z.device)], dim=1)  # (n_other, rank + 1)
        d = Z.shape[1]
        rhs = side.matrix(target) @ Z  # (n_rows, d): sum over each row's entries of target * z
        penalty = cfg.reg * side.counts.clamp(min=1)[:, None].pow(cfg.reg_exponent).expand(-1, d).clone()  # (n, d)
        if cfg.biases:
            penalty[:, -1] = cfg.reg_bias
        # The (rows, d, d) systems are built and solved in blocks of rows that fit the memory budget.
        noise = None if generator is None else torch.randn(len(rhs), d, 1, generator=generator) * cfg.noise_std
        X = torch.cat([self._solve_block(side, Z, rhs, penalty, noise, rows) for rows in row_blocks(len(rhs), d * d)])
        return (X[:, :-1], X[:, -1]) if cfg.biases else (X, b_self)

    def _solve_block(self, side: ObservedEntries, Z, rhs, penalty, noise, rows: tuple[int, int]) -> torch.Tensor:
        """Ridge solutions (or posterior draws, given ``noise``) of rows ``lo..hi-1``, shape (hi - lo, d)."""
        lo, hi = rows
        L = torch.linalg.cholesky(side.gram(Z, rows) + torch.diag_embed(penalty[lo:hi]))  # (rows, d, d), A = L L^T
        X = torch.cholesky_solve(rhs[lo:hi, :, None], L)  # (rows, d, 1): the ridge solution, A^-1 rhs
        if noise is not None:  # a draw from the posterior N(A^-1 rhs, sigma^2 A^-1)
            X = X + torch.linalg.solve_triangular(L.mT, noise[lo:hi].to(X.device), upper=True)
        return X[..., 0]
