"""Intervals on differences: known answers, and verdicts that name a winner only outside the noise."""

import numpy as np
import pandas as pd
import pytest

from recsys_tutorial.stats import (
    Interval,
    compare_per_user,
    compare_rmse,
    mean_interval,
    paired_bootstrap,
    paired_interval,
    verdict,
)


def test_t_interval_by_hand():
    # mean 2, sample sd 1, n = 3: half-width t(0.975, 2) * 1 / sqrt(3) = 4.3027 / 1.7321
    interval = mean_interval([1.0, 2.0, 3.0])
    assert interval.estimate == 2.0
    assert interval.high - 2.0 == pytest.approx(4.302653 / np.sqrt(3), rel=1e-4)
    with pytest.raises(ValueError, match="at least 2 runs"):
        mean_interval([0.1])


def test_paired_interval_uses_the_per_run_differences():
    a, b = [0.50, 0.52, 0.51], [0.40, 0.43, 0.41]  # paired by seed: the difference barely varies
    inside = paired_interval(a, b)
    assert inside.estimate == pytest.approx(0.0967, abs=1e-3) and inside.excludes_zero


def test_paired_bootstrap_finds_a_real_difference_and_not_a_fake_one():
    rng = np.random.default_rng(0)
    base = rng.random(2000)
    better = base + 0.05 + rng.normal(0, 0.01, 2000)  # every user gains about 0.05
    found = paired_bootstrap(better, base, seed=1)
    assert found.low > 0.04 and found.high < 0.06 and found.excludes_zero
    noise = base + rng.normal(0, 0.05, 2000)  # no gain, only noise
    assert not paired_bootstrap(noise, base, seed=1).excludes_zero
    assert paired_bootstrap(better, base, seed=1) == found  # seeded: reproducible
    with pytest.raises(ValueError, match="aligned"):
        paired_bootstrap([1.0, 2.0], [1.0])


def test_compare_per_user_aligns_the_two_tables_on_their_queries():
    a = pd.DataFrame({"user": [0, 1, 2, 3], "NDCG@10": [1.0, 0.5, 0.0, 0.25]})
    b = a.sample(frac=1, random_state=0).assign(**{"NDCG@10": lambda t: t["NDCG@10"] - 0.1})  # shuffled rows
    assert compare_per_user(a, b).estimate == pytest.approx(0.1)
    with pytest.raises(ValueError, match="different queries"):
        compare_per_user(a, b.iloc[:3])


def test_verdict_names_a_winner_only_outside_the_noise():
    win = Interval(0.01, 0.004, 0.016, 0.95, "paired bootstrap over 943 units")
    assert verdict(win, "CP", "MF", what="NDCG@10").startswith("CP beats MF on NDCG@10 by +0.0100")
    tie = Interval(0.01, -0.002, 0.022, 0.95, "paired bootstrap over 943 units")
    assert "within noise" in verdict(tie, "CP", "MF")
    lower_rmse = Interval(-0.01, -0.016, -0.004, 0.95, "t interval over 5 runs")  # a - b for RMSE: a is better
    assert verdict(lower_rmse, "ALS", "SGD", higher_is_better=False).startswith("ALS beats SGD by +0.0100")


def test_a_context_free_table_pairs_with_a_context_table_on_users():
    with_context = pd.DataFrame({"user": [0, 1, 2], "context_id": [3, 0, 1], "NDCG@10": [1.0, 0.5, 0.0]})
    without = pd.DataFrame({"user": [2, 0, 1], "NDCG@10": [0.5, 0.5, 0.5]})
    assert compare_per_user(with_context, without).estimate == pytest.approx(0.0)
    twice = pd.concat([with_context, with_context.assign(context_id=2)])  # two queries per user
    with pytest.raises(ValueError, match="not unique"):
        compare_per_user(twice, without)


def test_compare_rmse_matches_the_rmse_difference_and_resamples_users_not_ratings():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(200), 20)  # 200 users, 20 ratings each
    y = rng.integers(1, 6, users.size).astype(float)
    offset = rng.normal(0, 1, 200)[users]  # model b's error is shared by all of a user's ratings
    pred_a, pred_b = y + rng.normal(0, 0.5, users.size), y + offset + rng.normal(0, 0.5, users.size)
    by_users = compare_rmse(y, pred_a, pred_b, users, seed=1)
    rmse = lambda p: np.sqrt(np.mean((p - y) ** 2))  # noqa: E731
    assert by_users.estimate == pytest.approx(rmse(pred_a) - rmse(pred_b))
    assert by_users.excludes_zero and by_users.high < 0 and by_users.method == "paired bootstrap over 200 users"
    by_ratings = compare_rmse(y, pred_a, pred_b, np.arange(users.size), seed=1)  # ignores the per-user clustering
    assert by_ratings.high - by_ratings.low < (by_users.high - by_users.low) / 2
    same = compare_rmse(y, pred_a, pred_a + rng.normal(0, 0.01, users.size), users, seed=1)
    assert not same.excludes_zero
    with pytest.raises(ValueError, match="aligned"):
        compare_rmse(y, pred_a[:-1], pred_b, users)
