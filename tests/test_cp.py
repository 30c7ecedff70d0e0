"""CP: TensorLy recovery of planted factors, our wrappers' pitfalls, and the embedding CP model."""

import numpy as np
import pandas as pd
import pytest
import tensorly as tl
import torch
from tensorly.decomposition import parafac

import recsys_tutorial as rt
from recsys_tutorial import tensors
from recsys_tutorial.data import make_planted_data
from recsys_tutorial.models.cp import CPModel

tl.set_backend("pytorch")


def _low_rank(shape=(30, 20, 4), rank=3, seed=0):
    rng = np.random.default_rng(seed)
    factors = [torch.tensor(rng.random((n, rank)), dtype=torch.float32) for n in shape]
    return tl.cp_to_tensor((torch.ones(rank), factors)), factors


def test_cp_recovers_planted_tensor():
    planted = make_planted_data()
    X = torch.tensor(planted.tensor(), dtype=torch.float32)
    est = tensors.cp(X, 3, n_iter=500, seed=0)
    assert tensors.factor_match_score([planted.U, planted.V, planted.C], est.factors) >= 0.95


def test_factor_match_score_ignores_permutation_and_scale():
    _, factors = _low_rank()
    shuffled = [2.0 * f[:, [2, 0, 1]] for f in factors]
    assert tensors.factor_match_score(factors, shuffled) == pytest.approx(1.0)
    assert tensors.factor_match_score(factors, [torch.rand_like(f) for f in factors]) < 0.9


def test_masked_cp_accepts_bool_mask_and_completes_held_out_cells():
    X, _ = _low_rank()
    mask = torch.rand(X.shape, generator=torch.Generator().manual_seed(0)) > 0.3  # a bool mask
    est = tensors.cp(X, 3, mask=mask, n_iter=300, seed=0)
    held = ~mask
    err = (tl.cp_to_tensor(est) - X)[held].norm() / X[held].norm()
    assert err < 0.05


def test_cp_wrapper_matches_tensorly_parafac():
    X, _ = _low_rank()
    ours = tensors.cp(X, 3, n_iter=50, seed=1, init="random")
    ref = parafac(X, 3, n_iter_max=50, init="random", random_state=1, tol=1e-6, normalize_factors=True)
    torch.testing.assert_close(tl.cp_to_tensor(ours), tl.cp_to_tensor(ref))


def test_cp_seed_reproduces():
    X, _ = _low_rank()
    a, b = tensors.cp(X, 3, n_iter=20, seed=3), tensors.cp(X, 3, n_iter=20, seed=3)
    torch.testing.assert_close(tl.cp_to_tensor(a), tl.cp_to_tensor(b))


def test_float_mask_rejects_wrong_shape():
    X, _ = _low_rank()
    with pytest.raises(ValueError, match="mask shape"):
        tensors.float_mask(torch.ones(3, 3), X)


def test_ratings_tensor_centres_and_averages():
    df = pd.DataFrame({"user": [0, 0, 1], "item": [1, 1, 0], "context_id": [0, 0, 1], "rating": [4.0, 2.0, 3.0]})
    rt_ = tensors.ratings_tensor(df, (2, 2, 2), device="cpu")
    assert rt_.offset == pytest.approx(3.0)
    assert float(rt_.values[0, 1, 0]) == pytest.approx(0.0)  # mean of 4 and 2, centred
    assert float(rt_.mask.sum()) == 2.0 and rt_.mask.dtype == torch.float32


def _clicks(n_users=20, n_items=15, n_contexts=3, n=400, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user": rng.integers(0, n_users, n),
            "item": rng.integers(0, n_items, n),
            "context_id": rng.integers(0, n_contexts, n),
            "rating": rng.integers(1, 6, n).astype("float32"),
        }
    )


def test_embedding_cp_equals_cp_to_tensor():
    model = CPModel(rank=4, epochs=2, biases=False, loss="bce", progress=False).fit(_clicks(), 20, 15, 3)
    scores = torch.stack([model.score(torch.arange(20), torch.full((20,), c)) for c in range(3)], -1)
    torch.testing.assert_close(scores, tl.cp_to_tensor(model.cp_tensor()))  # (n_users, n_items, n_contexts)


def test_single_context_cp_is_mf():
    model = CPModel(rank=4, epochs=2, progress=False).fit(_clicks(), 20, 15, n_contexts=1)
    net = model.net_
    mf = net.mu + net.b_u[:, None] + net.b_i[None, :] + (net.U * net.C[0]) @ net.V.T
    torch.testing.assert_close(model.score(torch.arange(20)), mf.detach())


def test_embedding_cp_seed_reproduces():
    a = CPModel(rank=4, epochs=2, seed=5, progress=False).fit(_clicks(), 20, 15, 3)
    b = CPModel(rank=4, epochs=2, seed=5, progress=False).fit(_clicks(), 20, 15, 3)
    torch.testing.assert_close(a.score([0, 1], [2, 0]), b.score([0, 1], [2, 0]))


def test_embedding_cp_bad_ids_raise():
    model = CPModel(rank=2, epochs=1, progress=False).fit(_clicks(), 20, 15, 3)
    with pytest.raises(ValueError, match="context id 3 is out of range"):
        model.score([0], [3])
    with pytest.raises(ValueError, match="context id -1 is out of range"):
        model.score([0], [-1])
    with pytest.raises(ValueError, match="item id 15 is out of range"):
        model.predict([0], [15], [0])
    with pytest.raises(ValueError, match="item id -1 is out of range"):
        model.predict([0], [-1], [0])
    with pytest.raises(ValueError, match="user id -1 is out of range"):
        model.predict([-1], [0], [0])
    with pytest.raises(ValueError, match="user id"):
        model.recommend([20], k=5)
    with pytest.raises(ValueError, match="user id -1 is out of range"):
        model.recommend([-1], k=5)
    bad = _clicks().assign(context_id=7)
    with pytest.raises(ValueError, match="context id 7"):
        CPModel(rank=2, epochs=1, progress=False).fit(bad, 20, 15, 3)


def test_embedding_cp_learns_context():
    """Users click item 0 in context 0 and item 1 in context 1: CP ranks them by context, MF cannot."""
    rows = [(u, c, c) for u in range(10) for c in (0, 1) for _ in range(5)]
    df = pd.DataFrame(rows, columns=["user", "item", "context_id"])
    rt.seed_everything(0)
    model = CPModel(rank=2, epochs=60, loss="bce", lr=0.05, reg=0.0, progress=False).fit(df, 10, 6, 2)
    users = torch.arange(10)
    top0 = model.recommend(users, k=1, exclude_seen=False, contexts=torch.zeros(10, dtype=torch.long))[0]
    top1 = model.recommend(users, k=1, exclude_seen=False, contexts=torch.ones(10, dtype=torch.long))[0]
    assert (top0[:, 0] == 0).all()
    assert (top1[:, 0] == 1).all()


def test_bad_loss_raises():
    with pytest.raises(ValueError, match="loss must be"):
        CPModel(loss="hinge")
