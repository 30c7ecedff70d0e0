"""The cold-start protocol: which items and users are cold, what is ranked, and what unseen ids score."""

import numpy as np
import pandas as pd
import pytest
import torch

from recsys_tutorial.coldstart import (
    UNSEEN,
    cold_start_split,
    cold_start_table,
    evaluate_cold_start,
    how_unseen_is_handled,
)  # fmt: skip
from recsys_tutorial.data.features import Features
from recsys_tutorial.models import FeatureTransformer, GenrePopularity, ImplicitALS, MostPopular, Recommender, SASRec
from recsys_tutorial.stats import compare_per_user

N_USERS, N_ITEMS = 8, 10
GENRES = np.eye(2, dtype=int)[np.arange(N_ITEMS) % 2]  # (N_ITEMS, 2): even items genre 0, odd items genre 1


def log() -> pd.DataFrame:
    """Days 0-3 (before the cut-off, day 10) use items 0-7 and users 0-5; items 8, 9 and users 6, 7 start after.

    Warm user u sees the four items of its parity before the cut-off (in turns, so each is in training), then a
    new warm item of the other parity (day 12) and cold item 8 + u % 2 (day 13). Users 6 and 7 see items 0, 1
    and 8 + u % 2 after the cut-off.
    """
    rows = [(u, i, t, t % 4) for u in range(6) for t, i in enumerate(np.roll(range(u % 2, 8, 2), u // 2))]
    rows += [row for u in range(6) for row in ((u, (u + 1) % 8, 12, 1), (u, 8 + u % 2, 13, 2))]
    rows += [(u, i, 11 + t, 3) for u in (6, 7) for t, i in enumerate((0, 1, 8 + u % 2))]
    df = pd.DataFrame(rows, columns=["user", "item", "day", "context_id"])
    df["timestamp"] = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(df["day"], unit="D")
    return df


CUTOFF = pd.Timestamp("2024-01-11", tz="UTC")


def test_items_and_users_first_seen_after_the_cut_off_are_cold_and_absent_from_training():
    split = cold_start_split(log(), CUTOFF)
    assert split.cold_items.tolist() == [8, 9] and split.cold_users.tolist() == [6, 7]
    history = split.history
    assert not history["item"].isin([8, 9]).any() and not history["user"].isin([6, 7]).any()
    assert (history["timestamp"] < CUTOFF).all() and (split.test["timestamp"] >= CUTOFF).all()
    cold, warm, new_users = (split.targets(p) for p in ("cold_items", "warm_items", "cold_users"))
    assert set(cold["item"]) == {8, 9} and not warm["item"].isin([8, 9]).any()
    assert set(new_users["user"]) == {6, 7} and not cold["user"].isin([6, 7]).any()
    assert len(cold) + len(warm) + len(new_users) == len(split.test)
    last = log()[log()["timestamp"] < CUTOFF].sort_values("timestamp").groupby("user").tail(1)
    assert set(zip(split.valid["user"], split.valid["item"], strict=True)) == set(
        zip(last["user"], last["item"], strict=True)
    )


def test_the_cut_off_as_a_fraction_is_a_quantile_of_time_and_must_leave_both_sides():
    split = cold_start_split(log(), 0.5)
    assert split.cutoff == log()["timestamp"].quantile(0.5)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        cold_start_split(log(), 1.0)
    with pytest.raises(ValueError, match="no interaction on one side"):
        cold_start_split(log(), "2030-01-01")


class _Oracle:
    """Scores each user's targets 1 and everything else 0: with one target per user, each ranking is a hit."""

    uses_context = False

    def __init__(self, targets: pd.DataFrame, n_items: int):
        self.targets, self.n_items = targets, n_items

    def score(self, users, contexts=None):
        scores = torch.zeros(len(users), self.n_items)
        for r, u in enumerate(users.tolist()):
            scores[r, self.targets.loc[self.targets["user"] == u, "item"].to_list()] = 1.0
        return scores


def test_cold_items_are_candidates_and_seen_items_are_not():
    split = cold_start_split(log(), CUTOFF)
    metrics, table = cold_start_table(_Oracle(split.targets("cold_items"), N_ITEMS), split, "cold_items", k=1)
    assert metrics["HR@1"] == 1.0 and metrics["targets"] == len(split.targets("cold_items"))
    assert len(table) == split.targets("cold_items")["user"].nunique()
    popular = MostPopular(device="cpu").fit(split.history, split.n_users, split.n_items)
    assert cold_start_table(popular, split, "cold_items", k=2)[0]["HR@2"] == 0.0  # cold items score 0: ranked last
    among_cold, _ = cold_start_table(popular, split, "cold_items", k=2, candidates="cold")
    assert among_cold["HR@2"] == 1.0  # two cold candidates left: both in the top 2


def test_per_query_tables_of_context_free_and_context_aware_models_are_comparable():
    split = cold_start_split(log(), CUTOFF)
    popular = MostPopular(device="cpu").fit(split.history, split.n_users, split.n_items)
    transformer = fitted_transformer(split)
    summary, tables = evaluate_cold_start({"pop": popular, "ft": transformer}, split, context="context_id")
    assert set(summary["part"]) == {"cold_items", "warm_items"} and len(summary) == 4
    a, b = tables["ft", "warm_items"], tables["pop", "warm_items"]
    assert list(a.columns[:2]) == ["user", "context_id"] and a[["user", "context_id"]].equals(b[["user", "context_id"]])
    assert np.isfinite(compare_per_user(a, b, "NDCG@10").estimate)


def fitted_transformer(split, **overrides) -> FeatureTransformer:
    features = Features.from_arrays("item", fields={"year": (np.arange(N_ITEMS) >= 8).astype(int)},
                                    bags={"genres": GENRES})  # fmt: skip
    config = {"max_len": 8, "dim": 8, "epochs": 3, "seed": 0, **overrides}
    model = FeatureTransformer(item_features=features, device="cpu", progress=False, **config)
    return model.fit(split.train, split.n_users, split.n_items, 4)


# --- what each model does with an item or user it never saw: the claims of coldstart.UNSEEN ---------------


def test_unseen_handling_is_described_for_models_and_refused_for_others():
    assert how_unseen_is_handled(MostPopular) is UNSEEN["MostPopular"]
    assert how_unseen_is_handled(SASRec()).item.startswith("its random initial id embedding")

    class Unknown(Recommender, abstract=True):
        pass

    with pytest.raises(ValueError, match="no description of how Unknown scores"):
        how_unseen_is_handled(Unknown)


def test_id_only_models_score_cold_items_as_unseen_says():
    split = cold_start_split(log(), CUTOFF)
    popular = MostPopular(device="cpu").fit(split.history, split.n_users, split.n_items)
    assert (popular.score(range(6))[:, [8, 9]] == 0).all()
    als = ImplicitALS(rank=3, n_sweeps=3, device="cpu").fit(split.history, split.n_users, split.n_items)
    assert torch.count_nonzero(als.V_[[8, 9]]) == 0 and torch.count_nonzero(als.U_[[6, 7]]) == 0


def test_genre_popularity_scores_a_cold_item_as_a_warm_item_of_its_genres():
    split = cold_start_split(log(), CUTOFF)
    model = GenrePopularity(item_features=Features.from_arrays("item", bags={"genres": GENRES}), device="cpu")
    scores = model.fit(split.history, split.n_users, split.n_items).score(range(N_USERS))
    torch.testing.assert_close(scores[:, 8], scores[:, 0])  # item 8 (cold) and item 0 share genre 0
    assert (scores[[0, 2, 4], 8] > scores[[0, 2, 4], 9]).all()  # even users' history is genre 0
    torch.testing.assert_close(scores[6], scores[7])  # users without history: everyone's genre shares


def test_the_transformer_scores_a_cold_item_by_its_features_alone():
    split = cold_start_split(log(), CUTOFF)
    model = fitted_transformer(split)
    net = model.net_
    assert not net.known[[8, 9]].any() and net.known[:8].all()
    torch.testing.assert_close(net.items()[[8, 9]], net.item_features()[[8, 9]])  # no id part
    before = model.score(range(6))
    with torch.no_grad():  # an id embedding written for a cold item is ignored: it was never trained
        net.item_id.weight[9 + 1] += 5.0  # token of item 9
    torch.testing.assert_close(before[:, 9], model.score(range(6))[:, 9])
