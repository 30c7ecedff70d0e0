"""Large catalogues: the sampled softmax, memory bounds on training and scoring, the catalogue generator."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from recsys_tutorial import ranking
from recsys_tutorial.data import add_context
from recsys_tutorial.data.catalogue import make_catalogue_data
from recsys_tutorial.evaluation import evaluate_ranking, target_positions_excluding
from recsys_tutorial.metrics import target_positions
from recsys_tutorial.models import CPModel, ImplicitALS, TuckerModel, sasrec
from recsys_tutorial.models.als import ALSMF
from recsys_tutorial.models.sasrec import SASRec, SASRecConfig, SASRecNet, ce_loss, proposal, sampled_softmax_loss
from recsys_tutorial.sequences import left_pad
from recsys_tutorial.serving.topk import top_k
from recsys_tutorial.splits import encode_ids, temporal_leave_one_out, user_sequences

N_ITEMS = 30


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any torch operation allocates while active (forward and backward passes)."""

    def __init__(self):
        super().__init__()
        self.bytes, self.where, self.shapes = 0, None, set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.layout == torch.strided and not t._is_view():
                self.shapes.add(tuple(t.shape))
                if t.numel() * t.element_size() > self.bytes:
                    self.bytes, self.where = t.numel() * t.element_size(), f"{func} -> {tuple(t.shape)}"
        return out


def _net_and_batch(seed: int = 0):
    torch.manual_seed(seed)
    net = SASRecNet(N_ITEMS, 3, SASRecConfig(max_len=6, dim=8, dropout=0.0))
    h = torch.randn(4, 6, 8, requires_grad=True)  # (B, T, D)
    targets = left_pad([np.array([3, 7, 7, 1]), np.arange(6), np.array([29]), np.array([0, 12, 5])], 6)  # (B, T)
    return net, h, targets


def _grads(loss, net, h):
    return torch.autograd.grad(loss, [net.item.weight, h])


# --- sampled softmax --------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["sorted", "shuffled"])
def test_sampled_softmax_with_every_item_as_negative_is_the_full_softmax(order):
    net, h, targets = _net_and_batch()
    every_item = torch.arange(N_ITEMS) if order == "sorted" else torch.randperm(N_ITEMS)
    uniform = torch.full((N_ITEMS,), -np.log(N_ITEMS))  # log q of the uniform proposal
    full = ce_loss(net, h, targets)
    sampled = sampled_softmax_loss(net, h, targets, every_item, uniform)  # each target also drawn: an accidental hit
    torch.testing.assert_close(sampled, full)
    for a, b in zip(_grads(sampled, net, h), _grads(ce_loss(net, h, targets), net, h), strict=True):
        torch.testing.assert_close(a.to_dense(), b)


def test_logq_correction_matters_only_when_the_proposal_is_not_uniform():
    net, h, targets = _net_and_batch()
    negatives = sasrec.draw_negatives(torch.full((N_ITEMS,), 1 / N_ITEMS), 12, torch.Generator().manual_seed(0))
    uniform = torch.full((N_ITEMS,), -np.log(N_ITEMS))
    torch.testing.assert_close(
        sampled_softmax_loss(net, h, targets, negatives, uniform), sampled_softmax_loss(net, h, targets, negatives)
    )
    popular = proposal(torch.arange(N_ITEMS) ** 2, alpha=1.0).log()
    corrected = sampled_softmax_loss(net, h, targets, negatives, popular)
    assert abs(float((corrected - sampled_softmax_loss(net, h, targets, negatives)).detach())) > 0.1


def test_accidental_hits_are_removed():
    """A negative equal to a position's target must not compete with it: one position, target item 4."""
    net, h, _ = _net_and_batch()
    targets = torch.tensor([[0, 0, 0, 0, 0, 5]])  # token 5 = item 4, the only real position
    h = h[:1]
    with_hits = sampled_softmax_loss(net, h, targets, torch.tensor([4, 9, 4, 17]))
    without = sampled_softmax_loss(net, h, targets, torch.tensor([9, 17]))
    torch.testing.assert_close(with_hits, without)


def test_proposal_is_uniform_at_alpha_zero_and_follows_counts_at_one():
    counts = torch.tensor([0, 1, 3, 7])
    torch.testing.assert_close(proposal(counts, 0.0), torch.full((4,), 0.25))
    torch.testing.assert_close(proposal(counts, 1.0), torch.tensor([1.0, 2.0, 4.0, 8.0]) / 15)
    with pytest.raises(ValueError, match="n_negatives"):
        SASRecConfig(loss="sampled", n_negatives=0)
    with pytest.raises(ValueError, match="'sampled'"):
        SASRecConfig(loss="softmax")


def _walks(n_users: int = 40, length: int = 8, n_items: int = N_ITEMS, seed: int = 0) -> pd.DataFrame:
    """Each user walks item i -> i + 1 (mod n_items) from a random start: the next item is known."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(n_items, size=n_users)
    rows = [(u, (starts[u] + t) % n_items, t) for u in range(n_users) for t in range(length)]
    df = pd.DataFrame(rows, columns=["user", "item", "t"])
    return df.assign(timestamp=pd.to_datetime(df["t"], unit="s", utc=True))


def test_sampled_loss_same_seed_same_loss_and_it_learns_the_walk():
    df = _walks()
    config = SASRecConfig(max_len=8, dim=16, epochs=60, lr=1e-2, dropout=0.0, loss="sampled", n_negatives=8, seed=1)
    a = SASRec(config, device="cpu", progress=False).fit(df, 40, N_ITEMS)
    b = SASRec(config, device="cpu", progress=False).fit(df, 40, N_ITEMS)
    c = SASRec(config, seed=2, device="cpu", progress=False).fit(df, 40, N_ITEMS)
    assert a.history_.train_loss == b.history_.train_loss != c.history_.train_loss
    torch.testing.assert_close(a.score(range(40)), b.score(range(40)))
    last = df.groupby("user")["item"].last().to_numpy()
    assert (a.score(np.arange(40)).argmax(1).numpy() == (last + 1) % N_ITEMS).mean() > 0.9
    assert a.proposal_.shape == (N_ITEMS,) and torch.isclose(a.proposal_.sum(), torch.tensor(1.0))


def test_vectorised_training_windows_equal_the_loop_over_users():
    """Regression: the windows were cut by a Python loop over users; the vectorised cut must give the same tensors."""
    data = make_catalogue_data(n_users=300, n_items=200, n_interactions=3_000, min_per_user=1, seed=3)
    df, _, _ = encode_ids(data.interactions)
    for T in (2, 3, 7, 50):
        model = SASRec(max_len=T, device="cpu")
        model.n_users, model.n_items = df["user"].max() + 3, 200  # two users without any interaction
        users, inputs, targets = [], [], []
        for u, s in enumerate(user_sequences(df, model.n_users)):  # the loop the vectorised code replaced
            for end in range(len(s) - 1, 0, -T):
                users.append(u)
                inputs.append(s[max(0, end - T) : end])
                targets.append(s[max(0, end - T) + 1 : end + 1])
        expected = (torch.tensor(users), left_pad(inputs, T), left_pad(targets, T))
        for got, want in zip(model._training_pairs(df), expected, strict=True):
            assert torch.equal(got, want)


# --- memory bounds ----------------------------------------------------------------------------------------


@pytest.fixture
def one_megabyte(monkeypatch):
    """A 1 MiB budget for every (rows x n_items) matrix: any catalogue of 20,000 items must then be chunked."""
    monkeypatch.setattr(ranking, "SCORE_BUDGET_MB", 1)
    return 2**20


def _catalogue(n_items: int, n_users: int = 200, per_user: int = 12):
    data = make_catalogue_data(n_users=n_users, n_items=n_items, n_interactions=per_user * n_users, seed=1)
    encoded, _, _ = encode_ids(data.interactions)
    return temporal_leave_one_out(encoded), data


@pytest.mark.parametrize("loss", ["ce", "sampled"])
def test_sasrec_training_evaluation_and_top_k_stay_within_the_budget(one_megabyte, loss):
    split, _ = _catalogue(n_items=20_000)
    n_items = 20_000  # more than the ids seen, so that a (positions x n_items) matrix is well above 1 MiB
    # 20,000 negatives: the sampled loss's (positions x (1 + S)) logits exceed the budget as well
    model = SASRec(max_len=8, dim=8, epochs=1, loss=loss, n_negatives=20_000, device="cpu", progress=False)
    with LargestTensor() as largest:
        model.fit(split.train, split.n_users, n_items, valid=split.valid)
        top_k(model, k=10)
        model.recommend(np.arange(split.n_users), k=10)
    assert largest.bytes <= one_megabyte, largest.where


def test_chunked_full_softmax_equals_the_one_piece_softmax(monkeypatch):
    net, h, targets = _net_and_batch()
    whole = ce_loss(net, h, targets)
    grads = _grads(whole, net, h)
    monkeypatch.setattr(ranking, "SCORE_BUDGET_MB", 3 * 4 * N_ITEMS / 2**20)  # three positions' logits per chunk
    with LargestTensor() as largest:
        chunked = ce_loss(net, h, targets)
        chunked_grads = _grads(chunked, net, h)
    D = net.config.dim  # (D, n_items) is the item table's gradient, not logits
    logit_rows = [shape[0] for shape in largest.shapes if len(shape) == 2 and shape[1] == N_ITEMS and shape[0] != D]
    assert 0 < max(logit_rows) <= 3  # 14 positions, never more than three positions' logits at once
    torch.testing.assert_close(chunked, whole)
    for a, b in zip(chunked_grads, grads, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "model_class, config", [(ImplicitALS, {"rank": 16}), (ALSMF, {"rank": 15}), (ALSMF, {"rank": 15, "n_samples": 2})]
)
def test_als_sweeps_stay_within_the_budget_and_match_the_unblocked_solution(monkeypatch, model_class, config):
    # 2,500 users and 5,000 items with 16 x 16 systems: 2.6 MB of Gram matrices, 5 MB of outer products
    split, _ = _catalogue(n_items=5_000, n_users=2_500, per_user=5)
    fit = lambda: model_class(n_sweeps=2, device="cpu", progress=False, **config).fit(  # noqa: E731
        split.train, split.n_users, 5_000, valid=split.valid
    )
    whole = fit()
    monkeypatch.setattr(ranking, "SCORE_BUDGET_MB", 1)
    with LargestTensor() as largest:
        blocked = fit()
    assert largest.bytes <= 2**20, largest.where
    torch.testing.assert_close(blocked.U_, whole.U_, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(blocked.V_, whole.V_, atol=1e-4, rtol=1e-3)


def test_recommend_scores_many_users_in_batches_with_the_same_lists(monkeypatch):
    split, _ = _catalogue(n_items=3_000)
    model = CPModel(rank=4, loss="bce", epochs=1, device="cpu", progress=False)
    model.fit(split.train, split.n_users, 3_000, n_contexts=4)
    users = np.arange(split.n_users)
    contexts = users % 4
    whole = model.recommend(users, k=5, contexts=contexts)
    monkeypatch.setattr(ranking, "SCORE_BUDGET_MB", 7 * 4 * 3_000 / 2**20)  # seven users per batch
    with LargestTensor() as largest:
        batched = model.recommend(users, k=5, contexts=contexts)
    assert max(s[0] for s in largest.shapes if len(s) == 2 and s[1] == 3_000) == 7
    for a, b in zip(batched, whole, strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="contexts"):
        model.recommend(users, k=5, contexts=contexts[:3])


@pytest.mark.parametrize("model_class", [CPModel, TuckerModel])
def test_embedding_tensor_models_validate_within_the_budget(one_megabyte, model_class):
    split, _ = _catalogue(n_items=20_000)
    model = model_class(rank=4, loss="bce", epochs=1, device="cpu", progress=False)
    with LargestTensor() as largest:
        model.fit(split.train, split.n_users, 20_000, n_contexts=4, valid=split.valid)
        evaluate_ranking(model, split.test, model.seen_, context="context_id")
    assert largest.bytes <= one_megabyte, largest.where


def test_positions_without_masking_equal_masked_positions():
    """Counting above the target and subtracting excluded items ranks exactly as masking them to -inf."""
    rng = np.random.default_rng(0)
    scores = torch.tensor(rng.integers(0, 6, size=(5, 40)), dtype=torch.float32)  # many ties
    users = np.array([3, 0, 4, 1, 2])  # batch row r holds user users[r]
    exclude = [rng.choice(40, size=n) for n in (0, 5, 9, 3, 12)]  # with repeated items
    rows = np.array([4, 0, 0, 2, 1, 3, 2])  # unsorted, two targets in rows 0 and 2
    items = np.array([rng.choice(np.setdiff1d(np.arange(40), exclude[users[r]])) for r in rows])
    masked = ranking.mask_seen(scores.clone(), users, exclude)
    expected = target_positions(masked, torch.as_tensor(rows), torch.as_tensor(items)).numpy()
    np.testing.assert_array_equal(target_positions_excluding(scores, rows, items, users, exclude), expected)


# --- the catalogue generator ------------------------------------------------------------------------------


def test_catalogue_is_seeded_long_tailed_and_sequential():
    a, b = make_catalogue_data(seed=5), make_catalogue_data(seed=5)
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    df = a.interactions
    assert not df.duplicated(["user_id", "item_id"]).any()
    assert len(df) == pytest.approx(a.config.n_interactions, rel=0.02)
    counts = df["item_id"].value_counts().to_numpy()  # sorted, most popular first
    assert counts[: len(counts) // 10].sum() > 0.35 * len(df)  # the top tenth of items: a large share
    same_session = df["session"].eq(df["session"].shift())
    follows = df["item_id"].to_numpy()[1:] == a.successor[df["item_id"].to_numpy()[:-1]]
    assert follows[same_session.to_numpy()[1:]].mean() > a.config.p_follow / 2  # chance: about 1 / n_items
    assert (add_context(df)["context_id"] == df["context_id"]).all()
    assert df.groupby("user_id")["timestamp"].apply(lambda t: t.is_monotonic_increasing).all()


def test_largest_catalogue_splits_for_leave_one_out():
    data = make_catalogue_data(n_users=30_000, n_items=25_000, n_interactions=300_000)
    encoded, users, items = encode_ids(data.interactions)
    split = temporal_leave_one_out(encoded)
    assert len(users) == 30_000 and 20_000 < len(items) <= 25_000
    assert len(split.valid) == len(split.test) == 30_000 and len(split.train) > 200_000
    with pytest.raises(ValueError, match="min_per_user"):
        make_catalogue_data(n_users=100, n_interactions=100)


# --- the benchmark ----------------------------------------------------------------------------------------


def _benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "scaling.py"
    spec = importlib.util.spec_from_file_location("scaling_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_growth_exponent_is_the_log_log_slope():
    bench = _benchmark()
    records = [{"model": "m", "interactions": n, "seconds_per_epoch": 3.0 * n**1.5} for n in (1e5, 2e5, 3e5)]
    records += [{"model": "one size", "interactions": 1e5, "seconds_per_epoch": 1.0}]
    exponents = bench.growth_exponents(records)
    assert exponents["m"] == pytest.approx(1.5, abs=1e-3) and exponents["one size"] is None
    assert bench.parse_size("large") == (30_000, 25_000, 300_000) and bench.parse_size("10x20x300") == (10, 20, 300)
    with pytest.raises(SystemExit, match="USERSxITEMSxINTERACTIONS"):
        bench.parse_size("10x20")


def test_benchmark_writes_one_line_per_model_and_size_and_a_summary(tmp_path):
    out = tmp_path / "scaling.jsonl"
    args = ["--sizes", "300x400x3000,200x300x2000", "--models", "sasrec-sampled", "--epochs", "1", "--max-len", "8"]
    _benchmark().main([*args, "--out", str(out), "--device", "cpu", "--threads", "1"])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["model"], r["size"][0]) for r in lines[:-1]] == [("sasrec-sampled", 200), ("sasrec-sampled", 300)]
    for r in lines[:-1]:
        assert "error" not in r and r["peak_rss_mb"] > 0 and r["topk_lists"] == r["n_users"] and r["date"]
        assert 0 <= r["valid_ndcg10"] <= 1 and r["eval_seconds"] > 0 and r["epochs_run"] == 1 and "core" in r["machine"]
    assert lines[-1]["benchmark"] == "scaling_summary" and "sasrec-sampled" in lines[-1]["exponent_seconds_per_epoch"]
