import math

import numpy as np
import pandas as pd
import pytest
import torch

from recsys_tutorial.evaluation import evaluate_ranking, evaluate_sampled
from recsys_tutorial.metrics import mae, per_query_metrics, ranking_metrics, rmse, target_positions
from recsys_tutorial.models import MostPopular


def test_rating_metrics_by_hand():
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one shape"):
        rmse([1, 2], [1, 2, 3])


def test_positions_count_ties_against_the_target():
    scores = torch.tensor([[0.9, 0.5, 0.5, 0.1]])
    pos = target_positions(scores, torch.tensor([0, 0, 0]), torch.tensor([0, 1, 3]))
    assert pos.tolist() == [0, 2, 3]  # item 1 ties with item 2, so it is placed after it


def test_single_target_metrics_by_hand():
    positions = [0, 2, 11]  # three users: hit at the top, hit at rank 3, miss
    m = ranking_metrics(positions, [0, 1, 2], k=10)
    assert m["HR@10"] == pytest.approx(2 / 3) and m["Recall@10"] == pytest.approx(2 / 3)  # one item each: equal
    assert m["NDCG@10"] == pytest.approx((1 + 1 / math.log2(4)) / 3)
    assert m["MRR"] == pytest.approx((1 + 1 / 3 + 1 / 12) / 3)
    per_user = per_query_metrics(positions, [0, 1, 2], k=10)
    assert per_user["NDCG@10"].tolist() == pytest.approx([1.0, 1 / math.log2(4), 0.0])


def test_three_item_lists_ndcg_and_recall_by_hand():
    # user 0: relevant items at positions 0 and 2 of a three-item list; user 1: one relevant item at position 1
    positions, groups = [0, 2, 1], [0, 0, 1]
    m = ranking_metrics(positions, groups, k=3)
    ideal_two = 1 + 1 / math.log2(3)
    expected_ndcg = ((1 + 1 / math.log2(4)) / ideal_two + (1 / math.log2(3)) / 1) / 2
    assert m["NDCG@3"] == pytest.approx(expected_ndcg)
    assert m["HR@3"] == 1.0 and m["Recall@3"] == 1.0
    assert m["MRR"] == pytest.approx((1 + 1 / 2) / 2)
    assert ranking_metrics(positions, groups, k=1)["Recall@1"] == pytest.approx((1 / 2 + 0) / 2)


def _checkerboard(n_users=6, n_items=6):
    """Users of parity p like items of parity p; each user's withheld item is their last same-parity item."""
    rows = [(u, i) for u in range(n_users) for i in range(n_items) if i % 2 == u % 2]
    df = pd.DataFrame(rows, columns=["user", "item"])
    test = df.groupby("user").tail(1)
    train = df.drop(test.index)
    return train, test.reset_index(drop=True), n_users, n_items


def _parity_scores(users):
    items = torch.arange(6)
    return (items[None, :] % 2 == users[:, None] % 2).float()  # (B, n_items): 1 for the user's parity


def test_checkerboard_withheld_item_comes_first():
    train, test, n_users, n_items = _checkerboard()
    exclude = [train.loc[train.user == u, "item"].to_numpy() for u in range(n_users)]
    m = evaluate_ranking(_parity_scores, test, exclude, k=1)
    assert m["HR@1"] == 1.0 and m["NDCG@1"] == 1.0 and m["MRR"] == 1.0


def test_without_excluding_seen_items_the_target_is_pushed_down():
    _, test, n_users, _ = _checkerboard()
    m = evaluate_ranking(_parity_scores, test, [np.array([], dtype=int)] * n_users, k=1)
    assert m["HR@1"] == 0.0  # two seen same-parity items tie with the target and count against it


def test_repeat_target_in_exclude_raises_instead_of_inflating():
    """Regression: a held-out item listed among the user's seen items used to be put back into the ranking.

    A recommender that excludes seen items never recommends such an item, so scoring it inflated every
    metric (about half of the planted data's held-out clicks were repeats).
    """
    _, test, n_users, _ = _checkerboard()
    exclude = [np.arange(6)] * n_users
    with pytest.raises(ValueError, match="repeat targets inflate"):
        evaluate_ranking(_parity_scores, test, exclude, k=1)
    with pytest.raises(ValueError, match="repeat targets inflate"):
        evaluate_sampled(_parity_scores, test, exclude, 6, k=1)


def test_per_user_table_means_are_the_metrics():
    train, test, n_users, n_items = _checkerboard()
    exclude = [np.array([], dtype=int)] * n_users
    metrics, table = evaluate_ranking(_parity_scores, test, exclude, k=3, per_user=True)
    assert len(table) == n_users and list(table["user"]) == sorted(test["user"])
    assert {name: table[name].mean() for name in metrics} == pytest.approx(metrics)


def test_a_context_free_recommender_is_scored_without_the_context():
    train = pd.DataFrame({"user": [0, 0, 1], "item": [0, 1, 0]})
    test = pd.DataFrame({"user": [0, 1], "item": [2, 1], "context_id": [3, 1]})
    model = MostPopular(device="cpu").fit(train, 2, 3)
    with pytest.raises(ValueError, match="does not use context"):
        model.score([0], contexts=[1])
    given = evaluate_ranking(model, test, model.seen_, k=2, context="context_id")
    assert given == evaluate_ranking(model, test, model.seen_, k=2)


def test_constant_scores_cannot_look_good():
    _, test, n_users, _ = _checkerboard()
    m = evaluate_ranking(lambda u: torch.zeros(len(u), 6), test, [np.array([], dtype=int)] * n_users, k=3)
    assert m["HR@3"] == 0.0


def test_context_is_passed_to_the_score_function():
    test = pd.DataFrame({"user": [0, 0], "item": [1, 2], "context_id": [0, 1]})

    def by_context(users, contexts):  # context c prefers item c + 1
        return torch.nn.functional.one_hot(contexts + 1, 4).float()

    m = evaluate_ranking(by_context, test, [np.array([], dtype=int)], k=1, context="context_id")
    assert m["HR@1"] == 1.0


@pytest.mark.parametrize("context", [None, "context_id"])
def test_evaluate_ranking_is_the_same_for_every_batch_size(context):
    """7 users, 2 contexts, some queries with two held-out items, rows unsorted: batches of 1 and 4 split them."""
    rng = np.random.default_rng(0)
    n_users, n_items = 7, 12
    table = torch.tensor(rng.normal(size=(2, n_users, n_items)), dtype=torch.float32)  # (context, user, item)
    test = pd.DataFrame(
        {"user": [3, 0, 6, 1, 3, 2, 5, 4, 0, 6, 1], "item": [1, 4, 7, 2, 9, 0, 11, 5, 8, 3, 10]}
    ).assign(context_id=[0, 1, 0, 1, 1, 0, 1, 0, 1, 1, 0])
    targets = test.groupby("user")["item"].apply(list)
    exclude = [np.setdiff1d(rng.choice(n_items, size=4, replace=False), targets[u]) for u in range(n_users)]

    def score(users, contexts=None):
        return table[0 if contexts is None else contexts, users]  # (B, n_items)

    runs = [
        evaluate_ranking(score, test, exclude, k=3, context=context, **kw)
        for kw in ({"batch_size": 1}, {"batch_size": 4}, {})
    ]
    assert runs[0] == runs[1] == runs[2]
    assert 0.0 < runs[0]["HR@3"] < 1.0  # a mix of hits and misses, so every query's rank counts


def test_sampled_protocol_inflates_the_same_ranking():
    # every user's target sits at full-ranking position 40 of 400: a clear miss at K=10 ...
    n_users, n_items = 50, 400
    test = pd.DataFrame({"user": np.arange(n_users), "item": np.full(n_users, 40)})
    scores = -torch.arange(n_items, dtype=torch.float32).expand(n_users, -1)  # item 0 ranks first
    exclude = [np.array([], dtype=int)] * n_users
    full = evaluate_ranking(lambda u: scores[u], test, exclude)
    # ... but among 100 random negatives only ~10 of the 40 better items turn up, so it is often a "hit"
    sampled = evaluate_sampled(lambda u: scores[u], test, exclude, n_items, seed=0)
    assert full["HR@10"] == 0.0
    assert sampled["HR@10"] > 0.3


def test_clip_to_the_rating_scale_before_scoring():
    assert rmse([5, 1], [6, 0], clip=(1, 5)) == 0.0
    assert mae([5, 1], [6, 0]) == pytest.approx(1.0)
