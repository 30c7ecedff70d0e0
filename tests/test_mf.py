"""Matrix factorization: known answers on tiny problems, recovery of planted factors, the contract."""

import numpy as np
import pandas as pd
import pytest
import torch

from recsys_tutorial.models import ALSMF, BiasedMF, ImplicitALS, ImputedSVD, imputed_svd, similar_items
from recsys_tutorial.models.als import ObservedEntries
from recsys_tutorial.models.mf import rating_matrix


def _frame(R: np.ndarray, observed: np.ndarray) -> pd.DataFrame:
    users, items = np.nonzero(observed)
    return pd.DataFrame({"user": users, "item": items, "rating": R[users, items].astype(np.float32)})


def _planted(n_users=40, n_items=30, rank=2, density=0.6, seed=0):
    """R = 3 + U V^T with a random share ``density`` of entries observed; returns (R, observed)."""
    rng = np.random.default_rng(seed)
    U, V = rng.normal(size=(n_users, rank)), rng.normal(size=(n_items, rank))
    return 3.0 + U @ V.T * 0.5, rng.random((n_users, n_items)) < density


def _unobserved_rmse(model, R, observed) -> float:
    users, items = np.nonzero(~observed)
    pred = model.predict(users, items).cpu().numpy()
    return float(np.sqrt(np.mean((pred - R[users, items]) ** 2)))


def test_als_matches_closed_form_svd_on_a_complete_matrix():
    # On a fully observed matrix, the best rank-k fit is the truncated SVD (Eckart-Young); unregularised
    # ALS must reach the same reconstruction.
    rng = np.random.default_rng(1)
    R = rng.normal(size=(12, 9))
    full = np.ones_like(R, dtype=bool)
    R_t, mask = rating_matrix(_frame(R, full), 12, 9)
    U, V = imputed_svd(R_t, mask, rank=3)
    als = ALSMF(rank=3, reg=1e-6, reg_exponent=0.0, biases=False, n_sweeps=300).fit(_frame(R, full), 12, 9)
    als_fit = (als.U_ @ als.V_.T).cpu()  # fitted factors live on the chosen device
    svd_error = torch.linalg.norm(U @ V.T - R_t)
    als_error = torch.linalg.norm(als_fit - R_t)
    torch.testing.assert_close(als_error, svd_error, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(als_fit, U @ V.T, rtol=0, atol=2e-2)


def test_als_recovers_planted_low_rank_matrix():
    R, observed = _planted()
    model = ALSMF(rank=2, reg=1e-3, reg_bias=1e-3, n_sweeps=50).fit(_frame(R, observed), *R.shape)
    assert _unobserved_rmse(model, R, observed) < 0.05


def test_gradient_mf_recovers_planted_low_rank_matrix():
    R, observed = _planted()
    config = dict(rank=2, reg=1e-4, reg_bias=0.0, lr=0.03, batch_size=256, epochs=150, valid_fraction=0.0)
    model = BiasedMF(**config, init_std=0.3, progress=False).fit(_frame(R, observed), *R.shape)
    assert _unobserved_rmse(model, R, observed) < 0.1


def test_posterior_sampling_averages_into_one_factorization():
    R, observed = _planted()
    config = dict(rank=2, n_sweeps=20, reg=1e-2, reg_bias=1e-2, reg_exponent=0.0, noise_std=0.05)
    model = ALSMF(**config, n_samples=4).fit(_frame(R, observed), *R.shape)
    assert model.U_.shape == (R.shape[0], 8) and model.V_.shape == (R.shape[1], 8)  # 4 samples of rank 2
    assert _unobserved_rmse(model, R, observed) < 0.1


MODELS = {
    "imputed_svd": lambda seed: ImputedSVD(rank=2),
    "biased_mf": lambda seed: BiasedMF(rank=3, epochs=3, seed=seed, progress=False),
    "als": lambda seed: ALSMF(rank=3, n_sweeps=3, seed=seed),
    "als_sampled": lambda seed: ALSMF(rank=3, n_sweeps=2, n_samples=2, seed=seed),
    "implicit_als": lambda seed: ImplicitALS(rank=3, n_sweeps=3, seed=seed),
}


def _fit(name, seed=0):
    R, observed = _planted(seed=3)
    return MODELS[name](seed).fit(_frame(R, observed), *R.shape)


@pytest.mark.parametrize("name", MODELS)
def test_contract_shapes_and_factors(name):
    model = _fit(name)
    assert model.score([0, 1, 2]).shape == (3, 30)
    assert model.U_.shape[0] == 40 and model.V_.shape[0] == 30 and model.U_.shape[1] == model.V_.shape[1]


@pytest.mark.parametrize("name", MODELS)
def test_recommend_never_returns_a_seen_item(name):
    model = _fit(name)
    _, observed = _planted(seed=3)  # the interactions _fit gave to fit
    users = np.arange(40)
    top, _ = model.recommend(users, k=5)
    for u, row in zip(users, top.cpu().numpy(), strict=True):
        assert not set(row.tolist()) & set(np.flatnonzero(observed[u]).tolist())


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_factors(name):
    torch.testing.assert_close(_fit(name, seed=7).V_, _fit(name, seed=7).V_)


@pytest.mark.parametrize("name", ["biased_mf", "als", "implicit_als"])
def test_different_seed_different_factors(name):
    assert not torch.allclose(_fit(name, seed=1).V_, _fit(name, seed=2).V_)


@pytest.mark.parametrize("name", MODELS)
def test_out_of_range_ids_raise_value_error(name):
    model = _fit(name)
    with pytest.raises(ValueError, match="user id 40 is out of range"):
        model.score([0, 40])
    with pytest.raises(ValueError, match="user id -1 is out of range"):
        model.score([-1, 0])
    if hasattr(model, "predict"):
        with pytest.raises(ValueError, match="item id 30 is out of range"):
            model.predict([0], [30])
        with pytest.raises(ValueError, match="item id -1 is out of range"):
            model.predict([0], [-1])
        with pytest.raises(ValueError, match="user id -1 is out of range"):
            model.predict([-1], [0])
    with pytest.raises(ValueError, match="out of range"):
        similar_items(model.V_, 30)
    with pytest.raises(ValueError, match="item id -1 is out of range"):
        similar_items(model.V_, -1)


def test_fit_rejects_ids_beyond_the_declared_sizes():
    R, observed = _planted()
    with pytest.raises(ValueError, match="item id 29 is out of range"):
        ALSMF(rank=2).fit(_frame(R, observed), 40, 29)


def test_implicit_als_ranks_the_withheld_item_of_a_block_first():
    # Two groups of users, each watching its own block of items; every user misses one item of their block.
    n_users, n_items = 20, 10
    watched = np.zeros((n_users, n_items), dtype=bool)
    watched[:10, :5] = watched[10:, 5:] = True
    withheld = np.where(np.arange(n_users) < 10, np.arange(n_users) % 5, 5 + np.arange(n_users) % 5)
    watched[np.arange(n_users), withheld] = False
    model = ImplicitALS(rank=2, reg=1e-3, n_sweeps=10).fit(_frame(watched.astype(float), watched), n_users, n_items)
    top, _ = model.recommend(np.arange(n_users), k=1)
    np.testing.assert_array_equal(top[:, 0].cpu().numpy(), withheld)


def test_similar_items_finds_the_item_with_the_same_factors():
    V = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.1], [-1.0, 0.0]])
    assert similar_items(V, 0, k=1).tolist() == [2]


def test_one_als_half_step_is_a_ridge_regression_per_user():
    """The batched half-step equals each user's own ridge solve, written the slow and obvious way."""
    R, observed = _planted(n_users=12, n_items=9, seed=5)
    df = _frame(R, observed)
    model = ALSMF(rank=3, n_sweeps=2, reg=0.1, reg_bias=2.0, seed=0, device="cpu").fit(df, 12, 9)
    users, items = torch.tensor(df["user"].to_numpy()), torch.tensor(df["item"].to_numpy())
    residual = torch.tensor(df["rating"].to_numpy()) - model.mu_
    side = ObservedEntries(users, items, residual, 12, 9)
    U, b_u = model.half_step(side, model.V_, model.b_i_, torch.zeros(12))
    for u in range(12):
        mine = items[users == u]  # the films user u rated
        Z = torch.cat([model.V_[mine], torch.ones(len(mine), 1)], 1)  # (n_u, rank + 1)
        y = residual[users == u] - model.b_i_[mine]
        penalty = torch.diag(torch.tensor([0.1 * len(mine)] * 3 + [2.0]))
        x = torch.linalg.solve(Z.T @ Z + penalty, Z.T @ y)
        torch.testing.assert_close(torch.cat([U[u], b_u[u : u + 1]]), x, rtol=1e-4, atol=1e-5)


def test_history_records_every_sweep_and_the_validation_curve():
    R, observed = _planted(seed=4)
    df = _frame(R, observed)
    fit, valid = df.iloc[::2], df.iloc[1::2]
    model = ALSMF(rank=2, n_sweeps=4, n_samples=3, seed=0).fit(fit, *R.shape, valid=valid)
    assert model.history_.epochs == 7 and len(model.history_.valid) == 7  # 4 sweeps, then 3 draws averaged
    assert model.history_.metric == "RMSE" and model.history_.seconds > 0
    assert model.history_.valid[-1] == pytest.approx(model.evaluate(valid)["RMSE"], rel=1e-5)
