"""Tucker: HOOI recovers a planted low-multilinear-rank tensor; the Tucker embedding model's contract."""

import numpy as np
import pandas as pd
import pytest
import tensorly as tl
import torch

from recsys_tutorial import tensors
from recsys_tutorial.models.tucker import TuckerModel

tl.set_backend("pytorch")


def _tucker_tensor(shape=(25, 20, 4), rank=(3, 2, 2), seed=0):
    g = torch.Generator().manual_seed(seed)
    core = torch.randn(*rank, generator=g)
    factors = [torch.linalg.qr(torch.randn(n, r, generator=g))[0] for n, r in zip(shape, rank, strict=True)]
    return tl.tucker_to_tensor((core, factors)), core, factors


def test_tucker_recovers_planted_tensor():
    X, _, factors = _tucker_tensor()
    core_hat, factors_hat = tensors.tucker(X, (3, 2, 2), n_iter=100, seed=0)
    assert (tl.tucker_to_tensor((core_hat, factors_hat)) - X).norm() / X.norm() < 1e-4
    for f, f_hat in zip(factors, factors_hat, strict=True):  # same subspaces: projections agree
        torch.testing.assert_close(f @ f.T, f_hat @ f_hat.T, atol=1e-4, rtol=1e-4)


def test_masked_tucker_completes_held_out_cells():
    X, _, _ = _tucker_tensor()
    mask = torch.rand(X.shape, generator=torch.Generator().manual_seed(1)) > 0.2
    core_hat, factors_hat = tensors.tucker(X, (3, 2, 2), mask=mask, n_iter=300, tol=0, seed=0)
    held = ~mask
    err = (tl.tucker_to_tensor((core_hat, factors_hat)) - X)[held].norm() / X[held].norm()
    assert err < 0.05


def test_tucker_seed_reproduces():
    X, _, _ = _tucker_tensor()
    a, b = tensors.tucker(X, (3, 2, 2), n_iter=5, seed=2), tensors.tucker(X, (3, 2, 2), n_iter=5, seed=2)
    torch.testing.assert_close(tl.tucker_to_tensor(a), tl.tucker_to_tensor(b))


def _clicks(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"user": rng.integers(0, 12, n), "item": rng.integers(0, 10, n), "context_id": rng.integers(0, 3, n)}
    )


def test_tucker_model_equals_tucker_to_tensor():
    model = TuckerModel(rank=3, epochs=2, biases=False, loss="bce", progress=False).fit(_clicks(), 12, 10, 3)
    scores = torch.stack([model.score(torch.arange(12), torch.full((12,), c)) for c in range(3)], -1)
    torch.testing.assert_close(scores, tl.tucker_to_tensor(model.tucker_tensor()))


def test_tucker_model_score_is_core_contraction():
    model = TuckerModel(rank=3, epochs=1, lr=0.0, biases=False, loss="bce", progress=False).fit(_clicks(), 12, 10, 3)
    core, (U, V, C) = model.tucker_tensor()
    assert core.shape == (3, 3, 3)
    torch.testing.assert_close(model.score([0], [1])[0], V @ torch.einsum("a,abd,d->b", U[0], core, C[1]))


def test_tucker_model_seed_and_bad_ids():
    a = TuckerModel(rank=3, epochs=2, seed=1, loss="bce", progress=False).fit(_clicks(), 12, 10, 3)
    b = TuckerModel(rank=3, epochs=2, seed=1, loss="bce", progress=False).fit(_clicks(), 12, 10, 3)
    torch.testing.assert_close(a.score([0, 5], [1, 2]), b.score([0, 5], [1, 2]))
    with pytest.raises(ValueError, match="context id 3 is out of range"):
        a.score([0], [3])


def _masked_problem(noise=0.0):
    """The planted tensor of _tucker_tensor with 30% of its cells held out, plus Gaussian noise on every cell."""
    X, _, _ = _tucker_tensor()
    noisy = X + noise * X.std() * torch.randn(X.shape, generator=torch.Generator().manual_seed(2))
    mask = torch.rand(X.shape, generator=torch.Generator().manual_seed(1)) > 0.3
    held = torch.nonzero(~mask, as_tuple=True)
    return X, noisy, mask, held


def test_tucker_entries_are_the_dense_tensor_entries():
    X, _, _ = _tucker_tensor()
    decomposition = tensors.tucker(X, (3, 2, 2), n_iter=5, seed=0)
    index = (np.array([0, 24, 3]), np.array([19, 0, 7]), np.array([1, 3, 0]))
    torch.testing.assert_close(
        tensors.tucker_entries(decomposition, index), tensors.entries(tl.tucker_to_tensor(decomposition), index)
    )
    with pytest.raises(ValueError, match="second-mode index id 20 is out of range"):
        tensors.tucker_entries(decomposition, (np.array([0]), np.array([20]), np.array([0])))


def test_masked_hooi_sweeps_are_one_long_run():
    X, _, mask, held = _masked_problem()
    path = tensors.masked_hooi(X, (3, 2, 2), mask, held, X[held], n_iter=8, patience=8, seed=0)
    one_run, errors = tensors.tucker(X, (3, 2, 2), mask=mask, n_iter=8, tol=0, seed=0, return_errors=True)
    np.testing.assert_allclose(path.reported, [float(e) for e in errors], rtol=1e-5)
    assert path.best_sweep == 8 and path.heldout == sorted(path.heldout, reverse=True)  # clean data: still improving
    torch.testing.assert_close(tl.tucker_to_tensor(path.tucker), tl.tucker_to_tensor(one_run))


def test_masked_hooi_stops_when_the_heldout_error_rises_and_keeps_the_best_sweep():
    X, noisy, mask, held = _masked_problem(noise=1.0)  # rank (8, 8, 4) on noisy cells: it overfits after a few sweeps
    path = tensors.masked_hooi(noisy, (8, 8, 4), mask, held, X[held], n_iter=60, patience=3, seed=0)
    assert len(path.heldout) < 60 and len(path.heldout) == path.best_sweep + 3
    assert path.best_sweep == int(np.argmin(path.heldout)) + 1 and path.heldout[-1] > path.heldout[path.best_sweep - 1]
    kept = float((tensors.tucker_entries(path.tucker, held) - X[held]).norm() / X[held].norm())
    assert kept == pytest.approx(path.heldout[path.best_sweep - 1], rel=1e-5)
    assert path.observed[-1] < path.observed[path.best_sweep - 1]  # the fit to observed cells kept improving


def test_masked_hooi_rejects_heldout_cells_that_do_not_line_up():
    X, _, mask, held = _masked_problem()
    with pytest.raises(ValueError, match="index arrays as long as heldout_values"):
        tensors.masked_hooi(X, (3, 2, 2), mask, held, X[held][:-1])
    with pytest.raises(ValueError, match="at least 1"):
        tensors.masked_hooi(X, (3, 2, 2), mask, held, X[held], patience=0)
