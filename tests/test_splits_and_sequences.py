import numpy as np
import pandas as pd
import pytest
import torch

from recsys_tutorial.sequences import left_pad
from recsys_tutorial.splits import (
    IdMap,
    canonical_fold,
    encode_ids,
    random_holdout,
    seen_items,
    temporal_leave_one_out,
    user_sequences,
)


def _toy():
    # user 10 rates items 7, 5, 9, 8 (in that time order); user 20 rates only two items
    return pd.DataFrame(
        {
            "user_id": [10, 10, 10, 10, 20, 20],
            "item_id": [9, 7, 8, 5, 7, 8],
            "rating": [3.0, 4.0, 5.0, 1.0, 2.0, 2.0],
            "timestamp": pd.to_datetime([30, 10, 40, 20, 5, 6], unit="s", utc=True),
        }
    )


def test_encode_ids_is_contiguous_and_reversible():
    enc, users, items = encode_ids(_toy())
    assert enc["user"].tolist() == [0, 0, 0, 0, 1, 1]
    assert sorted(enc["item"].unique()) == [0, 1, 2, 3]
    assert items.to_raw(enc["item"]).tolist() == _toy()["item_id"].tolist()
    with pytest.raises(ValueError, match=r"unknown item id\(s\) \[99\]"):
        items.to_index([5, 99])
    with pytest.raises(ValueError, match="out of range"):
        IdMap("item", np.array([5, 7])).to_raw([2])


def test_temporal_leave_one_out_holds_out_the_last_two():
    enc, _, items = encode_ids(_toy())
    split = temporal_leave_one_out(enc)
    assert items.to_raw(split.test["item"]).tolist() == [8]  # user 10's last (t=40)
    assert items.to_raw(split.valid["item"]).tolist() == [9]  # second-to-last (t=30)
    assert sorted(items.to_raw(split.train["item"]).tolist()) == [5, 7, 7, 8]  # user 20 (2 items) stays in train
    assert (split.n_users, split.n_items) == (2, 4)


def _same_second_sittings(n_users=200, sitting=4, seed=0):
    """Each user rates items in sittings of ``sitting`` films that share one second; item ids grow over time,
    so within a sitting the highest index is also the newest item (as MovieLens' ids grow with release)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = np.sort(rng.choice(500, size=3 * sitting, replace=False))
        for s_ in range(3):
            for i in items[s_ * sitting : (s_ + 1) * sitting]:
                rows.append((u, int(i), s_))
    df = pd.DataFrame(rows, columns=["user", "item", "sitting"])
    df["timestamp"] = pd.to_datetime(df["sitting"] * 3600, unit="s", utc=True)
    return df


def test_same_second_ties_are_not_broken_by_item_index():
    """Regression: ties were broken by item index, so the test item was always the highest index of the last sitting.

    With a seeded random key, each of a sitting's ``k`` films is the held-out one about 1/k of the time.
    """
    df = _same_second_sittings()
    last = df[df["sitting"] == 2]
    highest = last.groupby("user")["item"].max()
    old = temporal_leave_one_out(df, tie_break="item").test.set_index("user")["item"]
    assert (old == highest).all()  # the old rule: the highest index, every time
    new = temporal_leave_one_out(df).test.set_index("user")["item"]
    share = (new == highest).mean()
    assert 0.15 < share < 0.35, share  # about 1/4, not 1
    assert new.isin(last["item"]).all()  # still from the last sitting: time still comes first
    again = temporal_leave_one_out(df).test.set_index("user")["item"]
    pd.testing.assert_series_equal(new, again)  # fixed seed: reproducible
    other = temporal_leave_one_out(df, seed=1).test.set_index("user")["item"]
    assert (other != new).any()


def test_sequences_follow_the_split_order():
    split = temporal_leave_one_out(_same_second_sittings(n_users=30))
    history = pd.concat([split.train, split.valid, split.test])
    seqs = user_sequences(history, 30)
    for u in range(30):
        ordered = history[history["user"] == u].sort_values("order")["item"].to_numpy()
        np.testing.assert_array_equal(seqs[u], ordered)
        assert seqs[u][-1] == split.test.set_index("user").loc[u, "item"]
    # a subset sorted without the order column gives the same order (the key depends on user and item only)
    no_order = user_sequences(split.train.drop(columns="order"), 30)
    for u in range(30):
        np.testing.assert_array_equal(no_order[u], user_sequences(split.train, 30)[u])


def test_repeats_are_dropped_so_the_held_out_item_is_new():
    """Regression: the held-out item could be a repeat of an item already in the user's history."""
    df = pd.DataFrame(
        {"user": [0] * 5, "item": [3, 1, 3, 2, 1], "timestamp": pd.to_datetime(range(5), unit="s", utc=True)}
    )
    kept = temporal_leave_one_out(df, repeats="keep")
    assert kept.test["item"].tolist() == [1] and 1 in kept.train["item"].tolist()  # a repeat held out
    split = temporal_leave_one_out(df)
    assert split.repeats_dropped == 2
    assert split.test["item"].tolist() == [2] and split.valid["item"].tolist() == [1]
    assert split.train["item"].tolist() == [3]


def test_same_seed_same_random_split():
    enc, _, _ = encode_ids(_toy())
    a, b = random_holdout(enc, 0.5, seed=1), random_holdout(enc, 0.5, seed=1)
    pd.testing.assert_frame_equal(a.test, b.test)
    assert len(a.test) == 3 and len(a.train) == 3
    with pytest.raises(ValueError, match="fractions"):
        random_holdout(enc, 1.5)


def test_splits_require_encoded_ids():
    with pytest.raises(ValueError, match="encode_ids"):
        temporal_leave_one_out(_toy())


def test_seen_items_and_sequences():
    enc, _, _ = encode_ids(_toy())
    seen = seen_items(enc, 2, 4)
    assert [s.tolist() for s in seen] == [[0, 1, 2, 3], [1, 2]]
    seqs = user_sequences(enc, 2)
    assert seqs[0].tolist() == [1, 0, 3, 2]  # items 7, 5, 9, 8 in time order
    with pytest.raises(ValueError, match="out of range"):
        seen_items(enc, 2, 3)


def test_canonical_folds_share_one_encoding(ml100k_dir):
    split = canonical_fold(1)
    assert (split.n_users, split.n_items) == (943, 1682)
    assert len(split.train) == 80_000 and len(split.test) == 20_000 and split.valid.empty


def test_left_pad_keeps_the_most_recent_items_on_the_right():
    batch = left_pad([np.array([4, 5]), np.array([1, 2, 3, 6])], max_len=3)
    assert batch.tolist() == [[0, 5, 6], [3, 4, 7]]
    assert batch.dtype == torch.long
    with pytest.raises(ValueError, match="negative"):
        left_pad([np.array([-1])], 2)
