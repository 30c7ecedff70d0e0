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
