"""Nested model selection: each fold chooses on its own base only, and the headline is the validation choice."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recsys_tutorial.models import BiasBaseline
from recsys_tutorial.splits import Split, canonical_fold, random_holdout
from recsys_tutorial.tuning import (
    SURPRISE_RESULTS,
    chosen_rows,
    fit_and_score,
    grid,
    nested_folds,
    read_peer_results,
    select_on_validation,
    summarize,
)

OUR_RESULTS = SURPRISE_RESULTS.with_name("mf_folds_nested_2core_cpu.jsonl")  # benchmarks/mf_folds.py, recorded


def synthetic_folds(n_users: int = 30, n_items: int = 25, n_ratings: int = 400, seed: int = 0) -> dict[str, Split]:
    """Five folds built like ml-100k's: disjoint test fifths, each base the other four fifths."""
    rng = np.random.default_rng(seed)
    cells = rng.choice(n_users * n_items, size=n_ratings, replace=False)  # distinct (user, item) pairs
    users, items = np.divmod(cells, n_items)
    ratings = np.clip(np.round(3.5 + 0.5 * rng.standard_normal(n_ratings)), 1, 5)
    frame = pd.DataFrame({"user": users, "item": items, "rating": ratings})
    fifth = np.arange(n_ratings) % 5
    return {
        f"u{k + 1}": Split(frame[fifth != k], frame.iloc[:0], frame[fifth == k], n_users, n_items) for k in range(5)
    }


def pairs(frame_or_users, items=None) -> set[tuple[int, int]]:
    """The (user, item) pairs of a frame, or of two id arrays: a rating's identity in these folds."""
    if items is None:
        frame_or_users, items = frame_or_users["user"], frame_or_users["item"]
    return set(zip(np.asarray(frame_or_users).tolist(), np.asarray(items).tolist(), strict=True))


class Spy:
    """Predicts the training mean plus ``shift``; records every frame it is fitted on and asked to predict."""

    def __init__(self, log: list[dict], family: str, shift: float = 0.0, inner=None):
        self.record = {"family": family, "shift": shift, "fit": None, "predict": []}
        self.log, self.shift, self.inner = log, shift, inner

    def fit(self, train: pd.DataFrame, n_users: int, n_items: int) -> Spy:
        assert self.record["fit"] is None, "a candidate's model must be fresh: fitted once"
        self.record["fit"] = pairs(train)
        self.log.append(self.record)
        self.mu = float(train["rating"].mean())
        if self.inner is not None:
            self.inner.fit(train, n_users=n_users, n_items=n_items)
        return self

    def predict(self, users, items) -> np.ndarray:
        self.record["predict"].append(pairs(users, items))
        if self.inner is not None:
            return np.asarray(self.inner.predict(users, items)) + self.shift
        return np.full(len(users), self.mu + self.shift)


def spy_families(log: list[dict]) -> dict:
    return {
        "mean": grid(lambda shift: Spy(log, "mean", shift), shift=[0.0, 0.4, -0.3]),
        "shifted": grid(lambda shift: Spy(log, "shifted", shift), shift=[0.8, -0.6]),
    }


def assert_sealed(log: list[dict], folds: dict[str, Split], families: dict) -> None:
    """Every fold selects on its own base only, before it reads its test ratings, and reads them once per family.

    A final fit is the one on a whole ``uk.base``; every selection fit before it (and after the previous
    fold's finals) belongs to fold k.
    """
    bases = {name: pairs(split.train) for name, split in folds.items()}
    tests = {name: pairs(split.test) for name, split in folds.items()}
    n_candidates = sum(len(c) for c in families.values())
    pending, seen_folds = [], []
    for record in log:
        fold = next((name for name, base in bases.items() if record["fit"] == base), None)
        if fold is None:  # a selection fit
            pending.append(record)
            continue
        if not seen_folds or seen_folds[-1] != fold:
            assert len(pending) == n_candidates, f"fold {fold}: {len(pending)} selection fits on its own base"
            for chosen in pending:
                fitted, [valid] = chosen["fit"], chosen["predict"]
                assert fitted <= bases[fold], f"fold {fold}: a selection fit read rows outside {fold}.base"
                assert valid <= bases[fold], f"fold {fold}: validation rows outside {fold}.base"
                assert not fitted & valid, f"fold {fold}: validation rows were also fitted"
                assert fitted | valid == bases[fold], f"fold {fold}: the carve does not cover {fold}.base"
            pending = []
            seen_folds.append(fold)
        assert record["predict"] == [tests[fold]], f"fold {fold}: the refit must score {fold}.test once"
    assert not pending, "selection fits after the last fold's final scoring"
    assert seen_folds == list(folds), f"folds scored in order {seen_folds}, expected {list(folds)}"
    finals = [r for r in log if any(r["fit"] == b for b in bases.values())]
    assert len(finals) == len(folds) * len(families), "one refit per fold and family"


def old_protocol(families: dict, folds: dict[str, Split], seed: int = 0) -> None:
    """The protocol notebook 01 used: choose on a share of u1.base, refit and score on every fold."""
    first = folds["u1"]
    for split in folds.values():
        chosen = {
            name: select_on_validation(candidates, first.train, first.n_users, first.n_items, 0.1, seed)
            for name, candidates in families.items()
        }  # fmt: skip
        for selection in chosen.values():
            fit_and_score(selection.candidate.make, split.train, split.test, split.n_users, split.n_items)


def test_each_fold_selects_on_its_own_base_and_reads_its_test_only_to_score():
    folds, log = synthetic_folds(), []
    families = spy_families(log)
    table = nested_folds(families, folds, valid_fraction=0.2, seed=3)
    assert_sealed(log, folds, families)
    assert len(table) == 5 * 2 and table.groupby("fold")["chosen"].sum().eq(1).all()
    bases = [pairs(split.train) for split in folds.values()]
    refits = [(r["family"], r["shift"]) for r in log if r["fit"] in bases]  # in fold order, then family order
    assert refits == [(row.family, row.params["shift"]) for row in table.itertuples()]  # the refit is the choice


def test_the_seal_check_flags_tuning_on_u1_base_for_every_fold():
    # u2.test .. u5.test lie inside u1.base: choosing on a share of it tunes folds 2-5 on their own test ratings
    folds, log = synthetic_folds(), []
    families = spy_families(log)
    old_protocol(families, folds)
    with pytest.raises(AssertionError, match=r"fold u2: a selection fit read rows outside u2.base"):
        assert_sealed(log, folds, families)


def test_validation_rows_are_the_holdout_carve_of_the_base():
    folds, log = synthetic_folds(), []
    nested_folds(spy_families(log), {"u4": folds["u4"]}, valid_fraction=0.1, seed=7)
    carve = random_holdout(folds["u4"].train, test_fraction=0.1, seed=7)  # what other libraries are fed
    selection = [r for r in log if r["fit"] != pairs(folds["u4"].train)]
    assert all(r["fit"] == pairs(carve.train) and r["predict"] == [pairs(carve.test)] for r in selection)


class TrainMean:
    """Predicts the mean training rating."""

    def fit(self, train, n_users, n_items):
        self.mu = float(train["rating"].mean())
        return self

    def predict(self, users, items):
        return np.full(len(users), self.mu)


class Constant:
    """Predicts the same rating for everyone, whatever it was trained on."""

    def __init__(self, value: float):
        self.value = value

    def fit(self, train, n_users, n_items):
        return self

    def predict(self, users, items):
        return np.full(len(users), self.value)


def shifted_folds(seed: int = 0) -> dict[str, Split]:
    """Folds whose bases rate about 4 stars and whose tests about 3: validation and test disagree on purpose."""
    rng = np.random.default_rng(seed)
    folds = {}
    for k in range(1, 6):
        base = pd.DataFrame({"user": rng.integers(0, 20, 200), "item": rng.integers(0, 10, 200)})
        test = pd.DataFrame({"user": rng.integers(0, 20, 50), "item": rng.integers(0, 10, 50)})
        base["rating"] = np.clip(4 + 0.3 * rng.standard_normal(200), 1, 5)
        test["rating"] = np.clip(3 + 0.3 * rng.standard_normal(50), 1, 5)
        folds[f"u{k}"] = Split(base, base.iloc[:0], test, 20, 10)
    return folds


def test_the_headline_is_the_validation_choice_not_the_lowest_test_mean():
    families = {"three stars": grid(Constant, value=[3.0, 2.5]), "train mean": grid(TrainMean)}
    table = nested_folds(families, shifted_folds())
    test_means = table.groupby("family")["test_rmse"].mean()
    assert test_means.idxmin() == "three stars"  # choosing by test means (the old rule) would name it
    chosen = chosen_rows(table)
    assert (chosen["family"] == "train mean").all()  # validation (carved from the 4-star bases) names this one
    headline = summarize(table).loc["chosen on validation"]
    assert headline["RMSE mean"] == pytest.approx(test_means["train mean"])
    assert headline["RMSE mean"] > test_means["three stars"] + 0.5
    assert headline["folds chosen"] == 5
    three = table[table["family"] == "three stars"]
    assert (three["params"].map(lambda p: p["value"]) == 3.0).all()  # 3 beats 2.5 on 4-star validation too


def test_grid_binds_each_combination():
    candidates = grid(lambda rank, reg: (rank, reg), rank=[8, 16], reg=[0.1, 0.2])
    assert [c.make() for c in candidates] == [(8, 0.1), (8, 0.2), (16, 0.1), (16, 0.2)]
    assert [dict(c.params) for c in candidates][-1] == {"rank": 16, "reg": 0.2}
    assert [c.params for c in grid(TrainMean)] == [{}]
    with pytest.raises(ValueError, match="axis 'reg' has no values"):
        grid(TrainMean, reg=[])


def test_selection_takes_the_lowest_validation_rmse_and_the_first_on_ties():
    split = shifted_folds()["u1"]
    selection = select_on_validation(grid(Constant, value=[2.0, 4.0, 4.0, 5.0]), split.train, 20, 10)
    assert selection.candidate.params == {"value": 4.0} and np.argmin(selection.valid_rmses) == 1
    assert selection.valid_rmse == min(selection.valid_rmses)
    with pytest.raises(ValueError, match="no candidates"):
        select_on_validation([], split.train, 20, 10)


def test_predictions_are_clipped_to_the_rating_scale():
    split = shifted_folds()["u1"]
    wild, clipped = fit_and_score(lambda: Constant(9.0), split.train, split.test, 20, 10), split.test["rating"]
    assert wild["rmse"] == pytest.approx(float(np.sqrt(np.mean((5.0 - clipped) ** 2))))


def test_chosen_rows_refuses_a_fold_without_exactly_one_choice():
    table = nested_folds({"mean": grid(TrainMean)}, shifted_folds())
    table.loc[0, "chosen"] = False
    with pytest.raises(ValueError, match="exactly one chosen family"):
        chosen_rows(table)


def test_read_peer_results_means_and_partial_runs(tmp_path):
    path = tmp_path / "peer.jsonl"
    lines = [
        {"model": m, "fold": f"u{k}", "rmse": r + k / 100, "mae": 0.7, "fit_seconds": 1.0}
        for m, r in (("SVD", 0.93), ("KNN", 0.92)) for k in range(1, 6)
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    means = read_peer_results(path)
    assert list(means.index) == ["SVD", "KNN"] and (means["folds"] == 5).all()
    assert means.loc["SVD", "RMSE mean"] == pytest.approx(0.96)
    assert means.loc["KNN", "RMSE std"] == pytest.approx(np.std([0.93, 0.94, 0.95, 0.96, 0.97], ddof=1))
    per_fold = read_peer_results(path, per_fold=True)
    assert list(per_fold.columns) == ["SVD", "KNN"] and per_fold.loc["u3", "KNN"] == pytest.approx(0.95)
    for broken in (lines[:-1], lines + lines[-1:], lines[:-1] + [{**lines[-1], "fold": "u6"}]):
        path.write_text("\n".join(json.dumps(line) for line in broken) + "\n")
        with pytest.raises(ValueError, match="different or repeated folds"):
            read_peer_results(path)
    with pytest.raises(ValueError, match="no peer results"):
        read_peer_results(tmp_path / "missing.jsonl")


def test_nested_selection_on_u2_reads_only_u2_base(ml100k_dir):
    fold = canonical_fold(2, root=ml100k_dir.parent)
    log = []
    spied = lambda reg: Spy(log, "bias", inner=BiasBaseline(reg_user=reg, reg_item=reg))
    families = {"bias": grid(spied, reg=[2.0, 10.0, 25.0])}
    table = nested_folds(families, {"u2": fold}, valid_fraction=0.1, seed=0)
    assert_sealed(log, {"u2": fold}, families)
    reg = table.loc[0, "params"]["reg"]
    direct = BiasBaseline(reg_user=reg, reg_item=reg).fit(fold.train, n_users=fold.n_users, n_items=fold.n_items)
    pred = np.clip(direct.predict(fold.test["user"], fold.test["item"]).numpy(), 1, 5)
    assert table.loc[0, "test_rmse"] == pytest.approx(np.sqrt(np.mean((pred - fold.test["rating"].to_numpy()) ** 2)))
    assert 0.90 < table.loc[0, "test_rmse"] < 1.0  # the bias baseline's usual range on ml-100k


def test_recorded_surprise_results_cover_the_five_folds():
    means = read_peer_results()  # the recorded benchmarks/surprise_folds.py run
    assert list(means.index) == ["SVD", "SVD++", "KNNBaseline", "SVD tuned"] and (means["folds"] == 5).all()
    lines = [json.loads(line) for line in SURPRISE_RESULTS.read_text().splitlines()]
    assert all({"machine", "date", "library", "params", "valid_rmse"} <= set(line) for line in lines)
    assert {line["fold"] for line in lines} == {f"u{k}" for k in range(1, 6)}


def test_recorded_nested_mf_results_name_one_validation_choice_per_fold():
    lines = [json.loads(line) for line in OUR_RESULTS.read_text().splitlines()]
    table = pd.DataFrame(lines).rename(columns={"model": "family", "rmse": "test_rmse", "mae": "test_mae"})
    assert len(chosen_rows(table)) == 5 and (read_peer_results(OUR_RESULTS)["folds"] == 5).all()
    assert all({"machine", "date", "params", "valid_rmse"} <= set(line) for line in lines)
