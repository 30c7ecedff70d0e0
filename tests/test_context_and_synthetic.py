import numpy as np
import pandas as pd
import pytest
import tensorly as tl

from recsys_tutorial.data import TIME_OF_DAY, add_context, make_planted_data


def test_time_of_day_buckets_and_weekend():
    ts = pd.to_datetime(["2024-01-06 05:59", "2024-01-06 06:00", "2024-01-08 12:30", "2024-01-08 23:59"], utc=True)
    out = add_context(pd.DataFrame({"timestamp": ts}))
    assert out["time_of_day"].astype(str).tolist() == ["night", "morning", "afternoon", "evening"]
    assert out["context_id"].tolist() == [0, 1, 2, 3]
    assert out["is_weekend"].tolist() == [True, True, False, False]  # 2024-01-06 is a Saturday
    assert list(TIME_OF_DAY) == ["night", "morning", "afternoon", "evening"]


def test_naive_timestamps_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        add_context(pd.DataFrame({"timestamp": pd.to_datetime(["2024-01-01 10:00"])}))


def test_planted_data_is_determined_by_its_seed():
    a, b, c = make_planted_data(seed=3), make_planted_data(seed=3), make_planted_data(seed=4)
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    assert not a.interactions["item_id"].equals(c.interactions["item_id"])


def test_planted_tensor_is_the_cp_reconstruction_of_its_factors():
    data = make_planted_data(n_users=20, n_items=12)
    with tl.backend_context("numpy"):
        X = tl.cp_to_tensor((np.ones(data.rank), [data.U, data.V, data.C]))
    np.testing.assert_allclose(data.tensor(), X)
    assert X.shape == (20, 12, len(TIME_OF_DAY))


def test_planted_pattern_mornings_news_evenings_entertainment():
    data = make_planted_data()
    df = data.interactions.merge(data.items, on="item_id")
    share = pd.crosstab(df["context_id"], df["category"], normalize="index")
    morning, evening = TIME_OF_DAY.index("morning"), TIME_OF_DAY.index("evening")
    assert share.loc[morning, ["news", "productivity"]].sum() > 0.8
    assert share.loc[evening, "entertainment"] > 0.6


def test_context_contrast_sharpens_what_each_context_favours():
    from recsys_tutorial.data.synthetic import CONTEXT_AFFINITY

    np.testing.assert_array_equal(make_planted_data(n_users=20).C, CONTEXT_AFFINITY)  # default: the pattern as is
    np.testing.assert_allclose(make_planted_data(n_users=20, context_contrast=3.0).C, CONTEXT_AFFINITY**3)

    def category_share(contrast):
        data = make_planted_data(taste_concentration=3.0, p_follow=0.0, context_contrast=contrast)
        df = data.interactions.merge(data.items, on="item_id")
        return pd.crosstab(df["context_id"], df["category"], normalize="index")

    soft, sharp = category_share(1.0), category_share(3.0)
    afternoon, night = TIME_OF_DAY.index("afternoon"), TIME_OF_DAY.index("night")
    assert sharp.loc[afternoon, "productivity"] > soft.loc[afternoon, "productivity"] + 0.15
    assert sharp.loc[night, "entertainment"] > soft.loc[night, "entertainment"]
    with pytest.raises(ValueError, match="context_contrast must be positive"):
        make_planted_data(context_contrast=0.0)


def test_planted_sequences_carry_an_order_signal():
    data = make_planted_data()
    df = data.interactions.sort_values(["user_id", "timestamp"])
    same_session = df["session"].eq(df["session"].shift())
    follows = df["item_id"].eq(pd.Series(data.successor[df["item_id"].shift(fill_value=0).astype(int)], index=df.index))
    rate = follows[same_session].mean()
    assert rate > data.config.p_follow * 0.9  # far above the 1/n_items of chance
    assert set(data.interactions["rating"].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
