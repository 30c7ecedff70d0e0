"""The batch pipeline: its stages through a run directory, the gate, the refit on all interactions, any log's path."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from pipeline_fixtures import (
    RANDOM,
    SPY,
    _SpyPopular,
    register_test_models,
    unregister_test_models,
    write_text_id_log,
)

from recsys_tutorial.models import MostPopular
from recsys_tutorial.serving import pipeline, top_k
from recsys_tutorial.serving.store import open_store

LOG_COLUMNS = {"user": "customer", "item": "product", "timestamp": "event_time"}
LOG_FLAGS = ["--user-col", "customer", "--item-col", "product", "--timestamp-col", "event_time"]


def stored_state(db, name: str) -> tuple[list, dict]:
    """Every stored row of ``name``'s lists, and its entry in the store's models (metrics, stamp)."""
    rows = sqlite3.connect(db).execute(
        'SELECT context, "user", rank, item, score, generated_at FROM recommendations WHERE model = ? '
        'ORDER BY context, "user", rank',
        (name,),
    )
    return rows.fetchall(), open_store(db).models()[name]


@pytest.fixture(scope="module", autouse=True)
def registered_models():
    """The broken and the spy models, in the pipeline's registry while this module runs."""
    register_test_models()
    yield
    unregister_test_models()


@pytest.fixture(scope="module")
def served(tmp_path_factory, ml100k_dir):
    """A store serving most-popular's MovieLens-100K lists, with the validation metrics the pipeline measured."""
    db = tmp_path_factory.mktemp("served") / "rec.sqlite"
    summary = pipeline.run_pipeline("most-popular", db=db, k=5)
    return db, summary


# ---------------------------------------------------------------- MovieLens-100K end to end


def test_pipeline_stores_every_users_unseen_top_k(tmp_path, ml100k_dir):
    db = tmp_path / "rec.sqlite"
    summary = pipeline.run_pipeline("context-popularity", db=db, k=10)
    assert summary["published"] and summary["users"] == 943 and summary["contexts"] == 4
    assert summary["rows"] == 943 * 4 * 10
    stored = pd.read_sql('SELECT "user", context, rank, item FROM recommendations', sqlite3.connect(db))
    assert stored.groupby(["user", "context"])["rank"].apply(list).map(lambda r: r == list(range(1, 11))).all()
    ratings, _, _, _ = pipeline.load_ratings("100k")
    seen = set(zip(ratings["user_id"], ratings["item_id"], strict=True))
    assert not any((u, i) in seen for u, i in zip(stored["user"], stored["item"], strict=True))
    assert (stored.groupby("context")["item"].nunique() > 10).all()  # lists differ between users
    metrics = open_store(db).models()["context-popularity"]["metrics"]
    assert metrics == pytest.approx(summary["metrics"]) and 0 < metrics["valid_ndcg10"] < 1
    assert metrics["valid_users"] == 943  # every ML-100K user has a held-out last item


def test_pipeline_saves_and_loads_a_model(tmp_path, ml100k_dir):
    first = pipeline.run_pipeline("most-popular", db=tmp_path / "a.sqlite", k=5, save=tmp_path / "model.pt")
    second = pipeline.run_pipeline(db=tmp_path / "b.sqlite", k=5, load=tmp_path / "model.pt")
    assert second["model"] == "most-popular" and second["rows"] == first["rows"] == 943 * 5
    assert second["metrics"] == first["metrics"]  # saved with the model, and stored again with its lists
    a, b = (open_store(tmp_path / f"{n}.sqlite").recommendations(1, "most-popular", "any", 5) for n in "ab")
    assert [r["item"] for r in a] == [r["item"] for r in b]


def test_gate_refuses_a_worse_model_and_keeps_the_old_lists(served, tmp_path):
    db, first = served
    before = stored_state(db, "most-popular")
    assert before[1]["metrics"][pipeline.GATE_METRIC] == pytest.approx(first["metrics"][pipeline.GATE_METRIC])
    refused = pipeline.run_pipeline(RANDOM, db=db, k=5, name="most-popular", run_dir=tmp_path / "run")
    assert not refused["published"] and not refused["gate"]["passed"]
    assert refused["gate"]["served"] == pytest.approx(first["metrics"][pipeline.GATE_METRIC])
    assert refused["gate"]["new"] < refused["gate"]["served"] - pipeline.DEFAULT_GATE_MARGIN  # random: ~1/300
    assert "the served lists stay" in refused["gate"]["reason"]
    assert stored_state(db, "most-popular") == before  # same rows, scores, stamp and metrics
    assert not (tmp_path / "run" / "lists.pkl").exists()  # top-K never ran
    with pytest.raises(pipeline.GateRefused, match="the served lists stay"):
        pipeline.publish(tmp_path / "run", db)


def test_gate_margin_decides(served, tmp_path):
    """The same broken model passes once the margin exceeds its drop; a model as good as the served one passes."""
    db, first = served
    served_value = first["metrics"][pipeline.GATE_METRIC]
    run = tmp_path / "run"
    pipeline.ingest(run, "ml-100k")
    pipeline.train(run, RANDOM)
    new_value = pipeline.evaluate(run)["metrics"][pipeline.GATE_METRIC]
    drop = served_value - new_value
    assert not pipeline.gate(run, db, "most-popular", margin=0.9 * drop)["passed"]
    assert pipeline.gate(run, db, "most-popular", margin=1.1 * drop)["passed"]


def test_gate_decision_rule():
    assert pipeline.gate_decision(0.01, None, 0.0)[0]  # nothing served: publish
    assert pipeline.gate_decision(0.040, 0.045, 0.01)[0]  # a drop within the margin
    assert pipeline.gate_decision(0.045, 0.045, 0.0)[0]  # no drop, no margin
    passed, reason = pipeline.gate_decision(0.030, 0.045, 0.01)
    assert not passed and "0.0150 below the served model's 0.0450, more than the margin 0.01" in reason
    assert not pipeline.gate_decision(None, 0.045, 0.01)[0]  # unmeasured model against a measured one
    for bad in (-0.01, float("nan"), float("inf"), "0.01", True):
        with pytest.raises(ValueError, match="gate margin must be"):
            pipeline.gate_decision(0.04, 0.045, bad)


# ---------------------------------------------------------------- stages on a small log with text ids


@pytest.fixture
def log(tmp_path):
    return write_text_id_log(tmp_path / "clicks.csv")


def test_refit_uses_all_interactions(log, tmp_path):
    _SpyPopular.fitted_on.clear()
    run = tmp_path / "run"
    ingested = pipeline.ingest(run, log, **LOG_COLUMNS)
    trained = pipeline.train(run, SPY)
    everything = pd.read_pickle(run / "interactions.pkl")
    valid = pd.read_pickle(run / "valid.pkl")
    fit_part, refit_part = _SpyPopular.fitted_on
    assert len(valid) == ingested["users"] == 12  # each user's last interaction held out
    assert len(fit_part) == len(everything) - len(valid) == trained["fit_rows"]
    assert len(refit_part) == len(everything) == trained["refit_rows"] == 96
    held_out = set(zip(valid["user"], valid["item"], strict=True))
    assert not held_out & set(zip(fit_part["user"], fit_part["item"], strict=True))
    assert held_out <= set(zip(refit_part["user"], refit_part["item"], strict=True))  # the refit sees them
    model = torch.load(run / "model.pt", weights_only=False)
    assert all(i in model.seen_[u] for u, i in held_out)  # so the served lists never recommend them


def test_refit_trains_for_the_epochs_chosen_on_validation(log, tmp_path, monkeypatch):
    from recsys_tutorial.models.cp import CPModel, TensorModelConfig

    tiny = TensorModelConfig(rank=4, loss="bce", epochs=6, lr=0.05, batch_size=32, patience=2, init_std=0.1)
    monkeypatch.setitem(pipeline.MODELS, "cp", lambda: CPModel(tiny, progress=False))
    run = tmp_path / "run"
    pipeline.ingest(run, log, **LOG_COLUMNS)
    trained = pipeline.train(run, "cp")
    chosen = torch.load(run / "model_valid.pt", weights_only=False)
    model = torch.load(run / "model.pt", weights_only=False)
    assert len(chosen.history_.valid) >= 1  # validation NDCG@10 was measured during the fit
    assert trained["epochs"] == chosen.history_.best_epoch + 1 == model.config.epochs
    assert model.history_.epochs == model.config.epochs and not model.history_.valid  # no validation in the refit


def test_evaluate_ranks_each_held_out_item_from_the_history_before_it(log, tmp_path):
    """SASRec folds its validation items into its history after fitting. The evaluate stage ranked them with that
    history: first it refused every target as a seen item, and with the fit part excluded instead, the target sat in
    the model's own input (a leak). The stored number must be the one early stopping measured."""
    from recsys_tutorial.models import SASRec

    pipeline.register_model("tiny-sasrec", lambda: SASRec(dim=8, max_len=8, epochs=3, progress=False))
    try:
        summary = pipeline.run_pipeline(
            "tiny-sasrec", db=tmp_path / "rec.sqlite", k=3, data=log, loader=LOG_COLUMNS, run_dir=tmp_path / "run"
        )
    finally:
        pipeline.MODELS.pop("tiny-sasrec", None)
    chosen = torch.load(tmp_path / "run" / "model_valid.pt", weights_only=False)
    assert summary["published"] and summary["metrics"]["valid_users"] == 12
    assert summary["metrics"]["valid_ndcg10"] == pytest.approx(chosen.history_.best_valid)


def test_data_path_with_text_ids_end_to_end(log, tmp_path, capsys):
    db, run = tmp_path / "rec.sqlite", tmp_path / "run"
    argv = ["--data", str(log), *LOG_FLAGS, "--model", "most-popular", "--db", str(db), "--k", "3"]
    assert pipeline.main([*argv, "--run-dir", str(run)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["published"] and summary["data"] == "clicks" and summary["users"] == 12
    ids = json.loads((run / "ids.json").read_text())
    assert ids["users"]["served"] == ids["items"]["served"] == "index"  # text ids are served as indices
    assert ids["users"]["raw"][:2] == ["u00", "u01"] and ids["items"]["raw"][0].startswith("sku-")
    store = open_store(db)
    assert store.users("most-popular") == list(range(12))
    clicks = pd.read_csv(log, sep=";")
    for user in range(12):
        listed = [ids["items"]["raw"][r["item"]] for r in store.recommendations(user, "most-popular", "any", 3)]
        seen = set(clicks.loc[clicks["customer"] == ids["users"]["raw"][user], "product"])
        assert len(listed) == 3 and not seen & set(listed)
    first = store.recommendations(0, "most-popular", "any", 1)[0]
    assert first["title"] == ids["items"]["raw"][first["item"]]  # the item's own name shows as its title
    assert store.history(0, 1)[0]["title"] in set(clicks.loc[clicks["customer"] == "u00", "product"])
    assert store.models()["most-popular"]["metrics"]["valid_users"] == 12


def test_integer_ids_are_served_as_they_are(log, tmp_path):
    clicks = pd.read_csv(log, sep=";")
    clicks["customer"] = clicks["customer"].str[1:].astype(int) + 1000
    pipeline.run_pipeline("most-popular", db=tmp_path / "rec.sqlite", k=2, data=clicks, loader=LOG_COLUMNS)
    assert open_store(tmp_path / "rec.sqlite").users("most-popular") == list(range(1000, 1012))


# ---------------------------------------------------------------- bad input


def test_bad_arguments_fail_before_any_work(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(ValueError, match=r"unknown model 'nope': choose one of \["):
        pipeline.run_pipeline("nope", db=tmp_path / "rec.sqlite", data=missing)  # the model is checked first
    for kwargs, message in [
        ({"k": 0}, "k must be a whole number >= 1"),
        ({"gate_margin": -1}, "gate margin must be a finite number >= 0"),
        ({"batch_size": 0}, "batch_size must be a whole number >= 1"),
        ({"name": "x" * 65}, "name must be 1..64 characters"),
        ({"dataset": "100k"}, "not both"),
        ({"load": tmp_path / "model.pt"}, "no saved model at"),
    ]:
        with pytest.raises(ValueError, match=message):
            pipeline.run_pipeline("most-popular", db=tmp_path / "rec.sqlite", data=missing, **kwargs)
    with pytest.raises(ValueError, match="is neither a dataset name .* nor a file"):
        pipeline.run_pipeline("most-popular", db=tmp_path / "rec.sqlite", data=missing)
    assert not (tmp_path / "rec.sqlite").exists()  # nothing reached the store


def test_stages_name_the_stage_that_must_run_first(tmp_path, log):
    with pytest.raises(ValueError, match="run the ingest stage on this run directory first"):
        pipeline.train(tmp_path / "empty", "most-popular")
    run = tmp_path / "run"
    pipeline.ingest(run, log, **LOG_COLUMNS)
    with pytest.raises(ValueError, match="run the gate stage"):
        pipeline.publish(run, tmp_path / "rec.sqlite")


def test_context_models_need_real_timestamps(tmp_path, log):
    run = tmp_path / "run"
    pipeline.ingest(run, log, user="customer", item="product")  # no timestamp column: times made up from row order
    with pytest.raises(ValueError, match="has no timestamps .* pass the timestamp column"):
        pipeline.train(run, "context-popularity")


def test_pipeline_command_line(tmp_path, log, capsys):
    out = subprocess.run(
        [sys.executable, "-m", "recsys_tutorial.serving.pipeline", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in ("--model", "--db", "--load", "--data", "--user-col", "--gate-margin", "--name", "--run-dir"):
        assert flag in out
    bad = subprocess.run(
        [sys.executable, "-m", "recsys_tutorial.serving.pipeline", "--model", "nope", "--db", ":memory:"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "unknown model 'nope'" in bad.stderr
    with pytest.raises(SystemExit) as stop:
        pipeline.main(["--data", "ml-100k", "--user-col", "customer", "--k-core", "5"])
    assert stop.value.code == 2 and "--user-col describe the columns of a log" in capsys.readouterr().err


def test_command_exits_3_when_the_gate_refuses(tmp_path, log, capsys):
    db = tmp_path / "rec.sqlite"
    common = ["--data", str(log), *LOG_FLAGS, "--db", str(db), "--k", "3", "--name", "shop"]
    assert pipeline.main([*common, "--model", "most-popular"]) == 0
    capsys.readouterr()
    before = stored_state(db, "shop")
    assert pipeline.main([*common, "--model", RANDOM, "--gate-margin", "0"]) == pipeline.EXIT_REFUSED
    out, err = capsys.readouterr()
    assert json.loads(out)["published"] is False and err.startswith("gate: valid_ndcg10 ")
    assert stored_state(db, "shop") == before


# ---------------------------------------------------------------- trainers (notebook 06's registry)


def test_most_popular_has_no_context():
    model = MostPopular().fit(pd.DataFrame({"user": [0], "item": [0]}), 1, 2)
    with pytest.raises(ValueError, match="does not use context"):
        top_k(model, k=1, contexts=[0])


def test_cp_trainer_excludes_every_rated_item_when_serving(monkeypatch):
    """The CP trainer holds out each user's last interaction for early stopping, yet never recommends it."""
    from recsys_tutorial.data import make_planted_data
    from recsys_tutorial.models.cp import CPModel, TensorModelConfig
    from recsys_tutorial.splits import encode_ids

    tiny = TensorModelConfig(rank=4, loss="bce", epochs=1, batch_size=4096)
    monkeypatch.setitem(pipeline.MODELS, "cp", lambda: CPModel(tiny, progress=False))
    clicks, users, items = encode_ids(make_planted_data().interactions)
    model = pipeline.TRAINERS["cp"](clicks, len(users), len(items))
    assert model.n_contexts == 4
    lists = top_k(model, k=5).lists
    assert lists.merge(clicks[["user", "item"]], on=["user", "item"]).empty  # held-out items are excluded too


def test_trainers_follow_the_registry():
    assert set(pipeline.TRAINERS) == set(pipeline.MODELS) >= {"most-popular", "implicit-als", "cp", RANDOM}
    with pytest.raises(ValueError, match="already registered"):
        pipeline.register_model("cp", lambda: MostPopular())
    fitted = pipeline.TRAINERS[SPY](pd.DataFrame({"user": [0, 1], "item": [1, 0]}), 2, 3)
    assert np.array_equal(fitted.seen_[0], [1])
