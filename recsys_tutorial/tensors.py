"""Tensors for notebooks 02-03: building them from interactions, TensorLy CP/Tucker without the pitfalls.

TensorLy runs on its PyTorch backend here (``tl.set_backend("pytorch")``), with every tensor on
:func:`~recsys_tutorial.utils.get_device`. The wrappers :func:`cp` and :func:`tucker` handle what
otherwise trips learners up:

* a mask must be a *float* tensor of the data's dtype and device (a bool mask fails on ``1 - mask``);
* float32 cannot reach TensorLy's default ``tol=1e-8`` (changes that small are rounding noise), so the
  tolerance defaults to 1e-6 for CP and 1e-5 for Tucker;
* ``random_state`` seeds NumPy, not torch: the wrappers always pass the seed explicitly;
* masked ALS imputes missing entries with the current reconstruction (EM), starting from zeros, so
  ratings 1..5 must be centred first (:func:`ratings_tensor` does it);
* masked Tucker's reported error is not a held-out error (nor even the fit to the observed cells): track
  held-out cells sweep by sweep with :func:`masked_hooi`, or evaluate with :func:`entries`;
* the full-SVD initialisation is costly at scale: ``init="random"`` is the default.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorly as tl
import torch
from tensorly.decomposition import parafac
from tensorly.decomposition import tucker as tl_tucker

from .ids import check_ids
from .utils import get_device

__all__ = [
    "RatingsTensor", "dense_tensor", "ratings_tensor", "float_mask", "cp", "tucker", "entries",
    "cp_entries", "tucker_entries", "HOOIPath", "masked_hooi", "factor_match_score", "match_components",
    "tensor_megabytes",
]  # fmt: skip

FLOAT32_TOL = 1e-6  # relative change in error below which float32 ALS is only rounding noise


def dense_tensor(df: pd.DataFrame, modes: list[str], shape: tuple[int, ...], value: str | None = None,
                 normalize: str | None = None, device=None) -> torch.Tensor:  # fmt: skip
    """Aggregate interactions into a dense tensor: counts (``value=None``) or sums of ``value`` per cell.

    ``modes`` names the integer columns indexing each mode (e.g. ``["genre", "context_id", "weekday"]``).
    ``normalize="first"`` divides each slice of mode 0 by its total, so rows become distributions.
    """
    index = tuple(df[m].to_numpy() for m in modes)
    for m, idx, n in zip(modes, index, shape, strict=True):
        check_ids(idx, n, m, "Pass a larger shape or re-encode the column.")
    weights = np.ones(len(df)) if value is None else df[value].to_numpy(dtype=np.float64)
    flat = np.ravel_multi_index(index, shape)
    X = np.bincount(flat, weights=weights, minlength=int(np.prod(shape))).reshape(shape)
    if normalize == "first":
        X = X / np.maximum(X.reshape(shape[0], -1).sum(1), 1e-12).reshape((-1,) + (1,) * (len(shape) - 1))
    return torch.tensor(X, dtype=torch.float32, device=device or get_device())


@dataclass(frozen=True)
class RatingsTensor:
    """A sparse ratings tensor stored densely: centred values, a float mask and the offset removed."""

    values: torch.Tensor  # (n_users, n_items, n_contexts) centred ratings, 0 where unobserved
    mask: torch.Tensor  # same shape, 1.0 where observed
    offset: float  # the training mean, added back to predictions

    @property
    def density(self) -> float:
        return float(self.mask.mean())


def ratings_tensor(train: pd.DataFrame, shape: tuple[int, int, int], context: str = "context_id",
                   centre: bool = True, device=None) -> RatingsTensor:  # fmt: skip
    """The user x item x context rating tensor of ``train`` (columns ``user, item, <context>, rating``).

    Repeated (user, item, context) cells are averaged. With ``centre=True`` the global mean is
    subtracted, so that EM's zero start for missing cells means "average rating", not "zero stars".
    """
    offset = float(train["rating"].mean()) if centre else 0.0
    modes = ["user", "item", context]
    sums = dense_tensor(train.assign(r=train["rating"] - offset), modes, shape, "r", device=device)
    counts = dense_tensor(train, modes, shape, device=device)
    mask = (counts > 0).to(sums.dtype)
    return RatingsTensor(sums / counts.clamp(min=1), mask, offset)


def float_mask(mask, like: torch.Tensor) -> torch.Tensor:
    """A mask TensorLy's PyTorch backend accepts: same dtype and device as the data (bool fails on ``1 - mask``)."""
    mask = torch.as_tensor(mask)
    if mask.shape != like.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} differs from the tensor's {tuple(like.shape)}")
    return mask.to(dtype=like.dtype, device=like.device)


def cp(tensor: torch.Tensor, rank: int, mask=None, n_iter: int = 100, tol: float | None = None,
       init: str = "random", seed: int = 0, l2_reg: float = 0.0, return_errors: bool = False):  # fmt: skip
    r"""CP decomposition :math:`\mathcal{X} \approx \sum_k \lambda_k\, u_k \circ v_k \circ c_k` by ALS (TensorLy).

    A thin wrapper over :func:`tensorly.decomposition.parafac` on the PyTorch backend that fixes the
    float-mask, float32-tolerance and seeding pitfalls listed in this module's docstring. With a
    mask, missing cells are imputed by the current model at each sweep (EM-ALS) [2]_.

    Returns a ``CPTensor`` (weights, factors), or ``(CPTensor, errors)`` with ``return_errors``.

    References
    ----------
    .. [1] T. G. Kolda and B. W. Bader, "Tensor Decompositions and Applications", SIAM Review 2009.
    .. [2] G. Tomasi and R. Bro, "PARAFAC and missing values", Chemometrics Intell. Lab. Syst. 2005.
    """
    tl.set_backend("pytorch")
    if tol is None:
        tol = FLOAT32_TOL if tensor.dtype == torch.float32 else 1e-8
    mask = None if mask is None else float_mask(mask, tensor)
    out = parafac(tensor, rank, n_iter_max=n_iter, init=init, tol=tol, random_state=seed, mask=mask,
                  l2_reg=l2_reg, return_errors=return_errors, normalize_factors=True)  # fmt: skip
    return out


def tucker(tensor: torch.Tensor, rank: tuple[int, ...], mask=None, n_iter: int = 100, tol: float = 1e-5,
           init: str = "random", seed: int = 0, return_errors: bool = False):  # fmt: skip
    r"""Tucker decomposition :math:`\mathcal{X} \approx \mathcal{G} \times_1 U \times_2 V \times_3 C` by HOOI.

    Wraps :func:`tensorly.decomposition.tucker` with the same pitfalls fixed as :func:`cp`;
    ``init="random"`` uses seeded random orthonormal factors (see :func:`_orthonormal_init`), ``"svd"``
    the HOSVD (costly with a mask at scale). With a mask the returned errors measure the fit to
    the *imputed* tensor, never a held-out error.

    References
    ----------
    .. [1] L. De Lathauwer, B. De Moor and J. Vandewalle, "On the Best Rank-1 and Rank-(R1,...,RN)
       Approximation of Higher-Order Tensors", SIAM J. Matrix Anal. Appl. 2000.
    """
    tl.set_backend("pytorch")
    mask = None if mask is None else float_mask(mask, tensor)
    if init == "random":
        init = _orthonormal_init(tensor if mask is None else tensor * mask, rank, seed)
    return tl_tucker(tensor, list(rank), n_iter_max=n_iter, init=init, tol=tol, random_state=seed, mask=mask,
                     return_errors=return_errors)  # fmt: skip


def _orthonormal_init(tensor: torch.Tensor, rank: tuple[int, ...], seed: int):
    """Random orthonormal factors and the core they project the (zero-filled) tensor to, a cheap HOSVD stand-in.

    TensorLy's own random Tucker init draws a uniform core and factors, whose reconstruction is far from
    the data's scale; with a mask, EM then imputes those huge values and HOOI never recovers.
    """
    g = torch.Generator().manual_seed(seed)
    factors = [torch.linalg.qr(torch.randn(n, r, generator=g, dtype=tensor.dtype))[0].to(tensor.device)
               for n, r in zip(tensor.shape, rank, strict=True)]  # fmt: skip
    return tl.tucker_tensor.TuckerTensor((tl.tenalg.multi_mode_dot(tensor, factors, transpose=True), factors))


def cp_entries(cp_tensor, index: tuple[np.ndarray, ...]) -> torch.Tensor:
    """Entries :math:`\\sum_k \\lambda_k U_{uk} V_{ik} C_{ck}` of a CP tensor at index arrays (no dense tensor)."""
    weights, factors = cp_tensor
    rows = [f[torch.as_tensor(np.array(i), device=f.device)] for f, i in zip(factors, index, strict=True)]
    prod = weights * torch.stack(rows).prod(0)  # (n_entries, rank)
    return prod.sum(1)


def tucker_entries(tucker_tensor, index: tuple[np.ndarray, ...]) -> torch.Tensor:
    """Entries :math:`\\sum_{abd} G_{abd} U_{ua} V_{ib} C_{cd}` of a 3-way Tucker tensor at index arrays.

    Only the indexed rows of each factor are gathered: no dense tensor is built.
    """
    core, factors = tucker_tensor
    rows = []
    for f, i, mode in zip(factors, index, ("first", "second", "third"), strict=True):
        i = torch.as_tensor(i if isinstance(i, torch.Tensor) else np.array(i), device=f.device)  # a writable copy
        check_ids(i, f.shape[0], f"{mode}-mode index", "The index arrays must fit the tensor's shape.")
        rows.append(f[i])  # (n_entries, rank of this mode)
    U, V, C = rows
    return torch.einsum("abd,na,nb,nd->n", core, U, V, C)  # (n_entries,)


@dataclass(frozen=True)
class HOOIPath:
    """What :func:`masked_hooi` saw after each sweep, and the decomposition it kept."""

    tucker: tl.tucker_tensor.TuckerTensor  # the decomposition after sweep ``best_sweep``
    reported: list[float]  # TensorLy's reported error (see masked_hooi: not a fit to any data)
    observed: list[float]  # relative error on the observed (training) cells
    heldout: list[float]  # relative error on the held-out cells
    best_sweep: int  # 1-based: the sweep with the lowest held-out error

    @property
    def sweeps(self) -> list[int]:
        return list(range(1, len(self.heldout) + 1))


def masked_hooi(tensor: torch.Tensor, rank: tuple[int, int, int], mask, heldout_index: tuple[np.ndarray, ...],
                heldout_values, n_iter: int = 100, patience: int = 2, seed: int = 0) -> HOOIPath:  # fmt: skip
    r"""Masked Tucker by HOOI, one sweep at a time, stopped when the held-out error stops improving.

    Each sweep runs TensorLy's masked ``tucker`` for one iteration from the previous sweep's core and
    factors, so the sweeps are those of one long run (the first starts from :func:`_orthonormal_init`):
    fill the missing cells with the current reconstruction (EM), then update each factor and the core.
    After sweep :math:`t` three relative errors are recorded:

    * ``reported``: TensorLy's :math:`\sqrt{|\lVert X_0\rVert^2 - \lVert G_t\rVert^2|} / \lVert X_0\rVert`,
      with :math:`X_0` the zero-filled data, computed once. :math:`\lVert G_t\rVert^2` is the energy the model
      captures of the *completed* tensor, which grows as the imputed cells fill in, so the difference
      shrinks, crosses zero and (through the absolute value) rises again: a V that is bookkeeping, not a fit;
    * ``observed``: :math:`\lVert P_\Omega(\hat X - X)\rVert / \lVert P_\Omega X\rVert` on the observed cells;
    * ``heldout``: :math:`\lVert \hat x_h - y_h\rVert / \lVert y_h\rVert` on the held-out cells, whose values
      ``heldout_values`` must be on the tensor's scale (centred, as :func:`ratings_tensor` centres).

    It stops after ``patience`` sweeps without a lower held-out error (or after ``n_iter``) and returns the
    decomposition of the best sweep: the held-out cells choose the number of sweeps, so they must be
    validation cells, never the test set.

    References
    ----------
    .. [1] L. De Lathauwer, B. De Moor and J. Vandewalle, "On the Best Rank-1 and Rank-(R1,...,RN)
       Approximation of Higher-Order Tensors", SIAM J. Matrix Anal. Appl. 2000.
    .. [2] G. Tomasi and R. Bro, "PARAFAC and missing values", Chemometrics Intell. Lab. Syst. 2005.
    """
    mask = float_mask(mask, tensor)
    heldout_values = torch.as_tensor(heldout_values, dtype=tensor.dtype, device=tensor.device)
    if n_iter < 1 or patience < 1:
        raise ValueError(f"n_iter and patience must be at least 1, got {n_iter} and {patience}")
    if len(heldout_index) != tensor.ndim or any(len(i) != len(heldout_values) for i in heldout_index):
        raise ValueError(f"heldout_index needs {tensor.ndim} index arrays as long as heldout_values")
    observed = torch.nonzero(mask, as_tuple=True)
    path = {"reported": [], "observed": [], "heldout": []}
    current = _orthonormal_init(tensor * mask, rank, seed)
    best, best_sweep = current, 0
    for sweep in range(1, n_iter + 1):
        core, factors = current  # TensorLy updates the factor list in place: pass a copy
        current, (reported,) = tucker(tensor, rank, mask=mask, n_iter=1, init=(core, list(factors)), seed=seed,
                                      return_errors=True)  # fmt: skip
        path["reported"].append(float(reported))
        path["observed"].append(_relative_error(tucker_entries(current, observed), tensor[observed]))
        path["heldout"].append(_relative_error(tucker_entries(current, heldout_index), heldout_values))
        if path["heldout"][-1] <= min(path["heldout"]):
            best, best_sweep = current, sweep
        elif sweep - best_sweep >= patience:
            break
    return HOOIPath(best, **path, best_sweep=best_sweep)


def _relative_error(estimate: torch.Tensor, target: torch.Tensor) -> float:
    return float((estimate - target).norm() / target.norm())


def entries(tensor: torch.Tensor, index: tuple[np.ndarray, ...]) -> torch.Tensor:
    """``tensor[u, i, c]`` for index arrays (e.g. the held-out ratings), as a 1-D tensor."""
    return tensor[tuple(torch.as_tensor(np.array(i), device=tensor.device) for i in index)]


def _unit_columns(factor) -> np.ndarray:
    f = np.asarray(torch.as_tensor(factor).detach().cpu(), dtype=np.float64)
    return f / np.maximum(np.linalg.norm(f, axis=0, keepdims=True), 1e-12)


def _congruence(true_factors, est_factors) -> np.ndarray:
    true = [_unit_columns(f) for f in true_factors]
    est = [_unit_columns(f) for f in est_factors]
    if est[0].shape[1] != true[0].shape[1] or true[0].shape[1] > 8:
        raise ValueError(f"need equal ranks of at most 8, got {true[0].shape[1]} and {est[0].shape[1]}")
    cosine = np.ones((true[0].shape[1],) * 2)
    for t, e in zip(true, est, strict=True):
        cosine *= np.abs(t.T @ e)  # (rank, rank): congruence of true component k with estimated j
    return cosine


def match_components(true_factors, est_factors) -> list[int]:
    """The permutation ``p`` pairing true component ``k`` with estimated component ``p[k]`` best."""
    cosine = _congruence(true_factors, est_factors)
    rank = cosine.shape[0]
    return list(max(itertools.permutations(range(rank)), key=lambda p: cosine[np.arange(rank), list(p)].sum()))


def factor_match_score(true_factors, est_factors) -> float:
    r"""Factor match score: mean over components of :math:`\prod_n |\cos(a^{(n)}_k, \hat a^{(n)}_{\pi(k)})|`.

    Components are matched by the best permutation :math:`\pi` (CP is unique only up to permutation and
    scaling, and signs within a component), so 1.0 means perfect recovery [1]_. Ranks up to 8 are matched
    exhaustively.

    References
    ----------
    .. [1] E. Acar et al., "All-at-once optimization for coupled matrix and tensor factorizations", 2011.
    """
    cosine = _congruence(true_factors, est_factors)
    perm = match_components(true_factors, est_factors)
    return float(np.mean(cosine[np.arange(len(perm)), perm]))


def tensor_megabytes(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> float:
    """Memory of one dense tensor of ``shape``; masked ALS holds several (data, mask, imputed copy, reconstruction)."""
    return float(np.prod(shape)) * torch.finfo(dtype).bits / 8 / 2**20
