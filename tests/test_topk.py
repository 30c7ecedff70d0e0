"""Batch top-K for every user (and context), and the context-aware popularity the page serves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recsys_tutorial.models import ContextPopularity, Recommender
from recsys_tutorial.serving import top_k
from recsys_tutorial.training import History


class FixedScores(Recommender):
    """A test double whose scores are a given (n_users, n_items[, n_contexts]) table, already "fitted"."""

    context_aware = True

    def __init__(self, table: torch.Tensor, seen: list[np.ndarray]):
        super().__init__(device="cpu")
        self.table, self.seen_, self.history_ = table, seen, History(best_epoch=0)
        self.n_users, self.n_items = table.shape[:2]
        self.n_contexts = table.shape[2] if table.ndim == 3 else 1

    def _score(self, users, contexts):
        return self.table[users] if contexts is None else self.table[users, :, contexts]  # (B, n_items)


def test_top_k_matches_sorting_with_seen_items_excluded():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7, 0.3], [0.8, 0.2, 0.6, 0.4, 1.0]])
    model = FixedScores(scores, [np.array([1]), np.array([4, 0])])
    lists = top_k(model, k=2, batch_size=1).lists
    assert lists[lists.user == 0]["item"].tolist() == [3, 2]  # 0.9 (seen) skipped: 0.7, then 0.5
    assert lists[lists.user == 1]["item"].tolist() == [2, 3]  # 1.0 and 0.8 seen: 0.6, then 0.4
    assert lists["rank"].tolist() == [1, 2, 1, 2]
    assert (lists["context"] == -1).all()


def test_top_k_batches_do_not_change_the_answer():
    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(37, 50, generator=generator)
    seen = [np.arange(u % 7) for u in range(37)]
    model = FixedScores(scores, seen)
    one = top_k(model, k=5, batch_size=37).lists
    many = top_k(model, k=5, batch_size=4).lists
    pd.testing.assert_frame_equal(one, many)
    for u, items in one.groupby("user")["item"]:
        assert not set(items) & set(seen[u])
        masked = scores[u].clone()
        masked[seen[u]] = -torch.inf
        assert items.tolist() == torch.topk(masked, 5).indices.tolist()


def test_top_k_makes_one_list_per_context():
    table = torch.zeros(2, 4, 2)
    table[:, 0, 0] = 1.0  # context 0 favours item 0
    table[:, 3, 1] = 1.0  # context 1 favours item 3
    lists = top_k(FixedScores(table, [np.array([], dtype=int)] * 2), k=1).lists
    assert lists.set_index(["user", "context"])["item"].to_dict() == {(0, 0): 0, (1, 0): 0, (0, 1): 3, (1, 1): 3}


def test_top_k_drops_users_without_enough_unseen_items():
    model = FixedScores(torch.rand(2, 3), [np.array([0, 1]), np.array([], dtype=int)])
    lists = top_k(model, k=2).lists
    assert lists.groupby("user").size().to_dict() == {0: 1, 1: 2}


@pytest.mark.parametrize(
    "kwargs, message",
    [({"k": 0}, "k must lie in 1..4"), ({"k": 5}, "k must lie in 1..4"), ({"batch_size": 0}, "batch_size"),
     ({"users": [7]}, "user id 7 is out of range"), ({"contexts": [0]}, "does not use context")],
)  # fmt: skip
def test_top_k_rejects_bad_arguments(kwargs, message):
    model = FixedScores(torch.rand(3, 4), [np.array([], dtype=int)] * 3)
    with pytest.raises(ValueError, match=message):
        top_k(model, **{"k": 2, **kwargs})


def test_context_popularity_counts_items_within_each_context():
    train = pd.DataFrame({"user": [0, 1, 2, 0, 1], "item": [0, 0, 1, 2, 2], "context_id": [1, 1, 1, 3, 3]})
    model = ContextPopularity(prior_strength=0.0).fit(train, n_users=3, n_items=3, n_contexts=4)
    torch.testing.assert_close(model.score([0], [1]).cpu(), torch.tensor([[2 / 3, 1 / 3, 0.0]]))
    torch.testing.assert_close(model.score([0], [3]).cpu(), torch.tensor([[0.0, 0.0, 1.0]]))
    shrunk = ContextPopularity(prior_strength=5.0).fit(train, 3, 3, n_contexts=4)
    torch.testing.assert_close(shrunk.score([0], [0]).cpu(), torch.tensor([[0.4, 0.2, 0.4]]))  # empty context: n_i / N
    with pytest.raises(ValueError, match="context id 4 is out of range"):
        model.score([0], [4])


def test_context_popularity_follows_the_recommender_contract():
    train = pd.DataFrame({"user": [0, 0, 1, 2], "item": [0, 1, 1, 2], "context_id": [0, 1, 1, 1]})
    model = ContextPopularity(device="cpu").fit(train, n_users=3, n_items=4, n_contexts=2)
    assert model.score([0, 2], [1, 0]).shape == (2, 4)
    items, _ = model.recommend([0], k=2, contexts=[1])
    assert not set(items[0].tolist()) & {0, 1}  # seen items excluded
    again = ContextPopularity(device="cpu").fit(train, n_users=3, n_items=4, n_contexts=2)
    torch.testing.assert_close(model.score([0, 1, 2], [0, 1, 1]), again.score([0, 1, 2], [0, 1, 1]))
    torch.testing.assert_close(model.score([0]), model.share_.expand(1, -1))  # no context: overall popularity
    with pytest.raises(ValueError, match="user id 3 is out of range"):
        model.score([3], [0])
    with pytest.raises(ValueError, match="no 'context_id' column"):
        ContextPopularity().fit(train.drop(columns="context_id"), 3, 4, 2)


def test_nan_scores_raise_instead_of_making_lists():
    """Regression: NaN scores from a diverged model used to pass through top-K and become stored lists."""
    scores = torch.rand(3, 5)
    scores[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN scores for 1 of 3 users"):
        top_k(FixedScores(scores, [np.array([], dtype=int)] * 3), k=2)


def test_default_batch_size_bounds_the_score_matrix():
    from recsys_tutorial.ranking import SCORE_BUDGET_MB, batch_rows

    model = FixedScores(torch.rand(50, 40_000), [np.array([], dtype=int)] * 50)
    result = top_k(model, k=3)
    assert result.peak_batch_bytes <= SCORE_BUDGET_MB * 2**20
    assert batch_rows(40_000) * 40_000 * 4 <= SCORE_BUDGET_MB * 2**20 < (batch_rows(40_000) + 1) * 40_000 * 4
