"""The pipeline's six stages, each a function of a run directory (see :mod:`recsys_tutorial.serving.pipeline`).

Each stage reads the files the stages before it wrote, writes its own, and returns a small JSON summary:
what a scheduler logs, and what Airflow passes between tasks (:mod:`recsys_tutorial.serving.dag`).
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data import TIME_OF_DAY, add_context, load_dataset
from ..evaluation import evaluate_ranking
from ..splits import IdMap, encode_ids
from ..utils import seed_everything
from .registry import fit_model, make_model, serving_split
from .runfiles import (
    atomic_write,
    ids_payload,
    load_saved,
    needed_file,
    read_frame,
    read_ids,
    read_json,
    served_map,
    to_store_frame,
    write_json,
)  # fmt: skip
from .store import NO_CONTEXT, open_store
from .topk import top_k

__all__ = [
    "GATE_METRIC", "DEFAULT_GATE_MARGIN", "CUTOFF", "CONTEXT", "GateRefused", "item_details", "ingest", "train",
    "evaluate", "check_margin", "gate_decision", "gate", "compute_top_k", "publish", "STAGES",
]  # fmt: skip


GATE_METRIC = "valid_ndcg10"  # the store's metric the gate compares: validation NDCG@10
# Absolute NDCG@10. On MovieLens-100K one validation item per user puts the standard error of NDCG@10 near
# 0.005 (943 users, per-user values mostly 0), so two standard errors: noise passes, a broken model does not.
DEFAULT_GATE_MARGIN = 0.01
CUTOFF = 10  # the metrics' K, fixed so that numbers stored on different nights compare
CONTEXT = "context_id"  # the column of time-of-day ids (data.add_context) that context-aware models read


class GateRefused(RuntimeError):
    """The gate kept the served lists; ``summary`` is the gate's decision (numbers, margin, reason)."""

    def __init__(self, summary: dict):
        super().__init__(summary["reason"])
        self.summary = summary


def _frame_files(run_dir: Path, frames: Mapping[str, pd.DataFrame]) -> None:
    for name, frame in frames.items():
        atomic_write(run_dir / name, frame.to_pickle)


def item_details(dataset, items: IdMap) -> pd.DataFrame:
    """Item details for the store (``item_id, title, year, genres``) of a :class:`~recsys_tutorial.data.Dataset`.

    MovieLens's own titles and genres; for any other log (``dataset.items`` is None), each item's raw id as its
    title, no year and no genres, keyed by the served id (:func:`~.runfiles.served_map`).
    """
    if dataset.items is not None and {"item_id", "title", "year", "genres"} <= set(dataset.items.columns):
        return dataset.items[["item_id", "title", "year", "genres"]]
    served = served_map(items).ids
    return pd.DataFrame(
        {"item_id": served, "title": [str(i) for i in items.ids], "year": None, "genres": [()] * len(items)}
    )


def ingest(run_dir: str | Path, data: str | os.PathLike | pd.DataFrame = "ml-100k", **options) -> dict:
    """Stage 1: load and validate the interactions, add time-of-day context, encode ids, hold out the last items.

    Parameters
    ----------
    run_dir : path
        The run's folder (created): the later stages read what this one writes there.
    data : {"ml-100k", "ml-1m"}, path or DataFrame
        A MovieLens name, or an interaction log for :func:`~recsys_tutorial.data.load_interactions`.
    **options
        Options of :func:`~recsys_tutorial.data.load_interactions` (``user=``, ``item=``, ``timestamp=``,
        ``rating=``, ``sep=``, ``duplicates=``, ``short_users=``, ``k_core=`` ...): a bad log stops here with
        the loader's ``ValueError``, which names the rows or column and the fix.

    Writes ``interactions.pkl`` (every interaction, encoded), ``fit.pkl`` and ``valid.pkl``
    (:func:`serving_split`), ``ids.json`` (the id maps: raw id of each index, and which ids the store serves:
    the raw ids, or the indices for text ids) and ``items.pkl`` (item details for the store). Returns the
    summary also written to ``ingest.json``.
    """
    start, run_dir = time.perf_counter(), Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(data, **options)
    encoded, users, items = encode_ids(add_context(dataset.ratings))
    encoded = encoded[["user_id", "item_id", "rating", "timestamp", "user", "item", CONTEXT]]
    fit_part, valid = serving_split(encoded)
    if valid.empty:
        raise ValueError(
            f"no user of {dataset.name} has three or more distinct items, so none has a last item to validate on, "
            "and the gate needs a validation NDCG@10: log more interactions per user"
        )
    _frame_files(run_dir, {"interactions.pkl": encoded, "fit.pkl": fit_part, "valid.pkl": valid})
    _frame_files(run_dir, {"items.pkl": item_details(dataset, items)})
    ids = write_json(run_dir, "ids.json", ids_payload(users, items))
    report = dataset.report
    return write_json(run_dir, "ingest.json", {
        "stage": "ingest", "run_dir": str(run_dir), "data": dataset.name, "rows": len(encoded),
        "users": len(users), "items": len(items), "fit_rows": len(fit_part), "valid_rows": len(valid),
        "served_ids": {key: ids[key]["served"] for key in ids},
        "synthetic_timestamps": bool(getattr(report, "synthetic_timestamps", False)),
        "report": str(report).splitlines() if report is not None else [],
        "seconds": round(time.perf_counter() - start, 3),
    })  # fmt: skip


def train(
    run_dir: str | Path, model: str = "context-popularity", seed: int = 0, load: str | Path | None = None
) -> dict:
    """Stage 2: fit with each user's held-out last item as validation, then refit on all interactions.

    The validation fit (``model_valid.pt``) is what :func:`evaluate` measures; models that stop early choose
    their epoch count on it. :meth:`~recsys_tutorial.models.base.Recommender.refit` then trains a fresh model
    of the same configuration on every interaction, for that many epochs (``model.pt``, what is served).
    With ``load``, a model saved by :func:`save_model` is served instead (its saved metrics go to the gate).
    """
    run_dir = Path(run_dir)
    info = read_json(run_dir, "ingest.json", "ingest")
    if load is not None:
        return _adopt(run_dir, load)
    fresh = make_model(model)
    if fresh.context_aware and info["synthetic_timestamps"]:
        raise ValueError(
            f"model {model!r} ranks by time of day, but {info['data']} has no timestamps (the loader made them up "
            "from row order): pass the timestamp column (--timestamp-col) or a model without context, e.g. "
            "implicit-als"
        )
    fit_part, valid = read_frame(run_dir, "fit.pkl", "ingest"), read_frame(run_dir, "valid.pkl", "ingest")
    everything = read_frame(run_dir, "interactions.pkl", "ingest")
    seed_everything(seed)
    start = time.perf_counter()
    chosen = fit_model(fresh, fit_part, info["users"], info["items"], valid)
    fit_s, start = time.perf_counter() - start, time.perf_counter()
    served = chosen.refit(everything)
    refit_s = time.perf_counter() - start
    for name, fitted in (("model_valid.pt", chosen), ("model.pt", served)):
        atomic_write(run_dir / name, functools.partial(torch.save, fitted))
    return write_json(run_dir, "train.json", {
        "stage": "train", "run_dir": str(run_dir), "model": model, "device": str(served.device),
        "fit_rows": len(fit_part), "valid_rows": len(valid), "refit_rows": len(everything),
        "epochs": chosen.history_.best_epoch + 1 if fresh.epochs_field else None,
        "fit_s": round(fit_s, 3), "refit_s": round(refit_s, 3),
    })  # fmt: skip


def _adopt(run_dir: Path, load: str | Path) -> dict:
    """``train`` for a saved model: serve it with its own id maps; its saved metrics stand in for evaluation."""
    saved = load_saved(load)
    atomic_write(run_dir / "model.pt", functools.partial(torch.save, saved["model"]))
    write_json(run_dir, "ids.json", ids_payload(saved["users"], saved["items"]))
    return write_json(run_dir, "train.json", {
        "stage": "train", "run_dir": str(run_dir), "model": saved["name"], "device": str(saved["model"].device),
        "loaded_from": str(load), "saved_metrics": saved.get("metrics", {}), "fit_s": 0.0, "refit_s": 0.0,
    })  # fmt: skip


def _metric_key(name: str) -> str:
    """The store's name of an evaluation metric: "NDCG@10" -> "valid_ndcg10"."""
    return "valid_" + name.lower().replace("@", "")


def evaluate(run_dir: str | Path) -> dict:
    """Stage 3: the validation fit's HR@10, NDCG@10, Recall@10 and MRR on each user's held-out last item.

    The series' protocol: every item is ranked, the user's training items are excluded, and context-aware
    models are given the held-out interaction's time of day. The numbers (``valid_ndcg10``, ...) are stored
    with the lists, so that the next run's :func:`gate` can compare against them.
    """
    run_dir, start = Path(run_dir), time.perf_counter()
    trained = read_json(run_dir, "train.json", "train")
    if "loaded_from" in trained:
        metrics, source = trained["saved_metrics"], f"saved with the model in {trained['loaded_from']}"
    else:
        chosen = torch.load(needed_file(run_dir, "model_valid.pt", "train"), weights_only=False)
        valid = read_frame(run_dir, "valid.pkl", "ingest")
        # A sequence model folds its validation items into its history after fitting (SASRec does, so that a test
        # ranking reads them): rank each held-out item from the history before it, as early stopping did.
        getattr(chosen, "set_history", chosen.set_seen)(read_frame(run_dir, "fit.pkl", "ingest"))
        measured = evaluate_ranking(chosen, valid, chosen.seen_, k=CUTOFF, context=CONTEXT)
        metrics = {_metric_key(name): value for name, value in measured.items()} | {"valid_users": len(valid)}
        source = "each user's last new interaction held out; full ranking, training items excluded"
    return write_json(run_dir, "evaluate.json", {
        "stage": "evaluate", "run_dir": str(run_dir), "model": trained["model"], "metrics": metrics,
        "source": source, "seconds": round(time.perf_counter() - start, 3),
    })  # fmt: skip


def check_margin(margin) -> float:
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.integer, np.floating)):
        raise ValueError(f"the gate margin must be a number >= 0 (in NDCG@10), got {margin!r}")
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(
            f"the gate margin must be a finite number >= 0 (in NDCG@10), got {margin}: 0 refuses any drop, "
            f"{DEFAULT_GATE_MARGIN} (the default) lets noise pass, 1 publishes whatever the new model scores"
        )
    return float(margin)


def gate_decision(new: float | None, served: float | None, margin: float) -> tuple[bool, str]:
    r"""Publish or keep the served lists: refuse when :math:`\text{new} < \text{served} - \text{margin}`.

    ``new`` and ``served`` are validation NDCG@10 (``None`` when unknown). With nothing served (or served
    without the metric) there is nothing to compare, and the new model is published; a new model without
    the metric is refused whenever the served one has it. Returns (publish?, the reason in words).
    """
    margin = check_margin(margin)
    if served is None:
        return True, f"no {GATE_METRIC} is stored for the served lists: nothing to compare, so publish"
    if new is None:
        return False, (
            f"the new model has no {GATE_METRIC} (a model saved without metrics?) while the served lists score "
            f"{served:.4f}: the served lists stay. Retrain it with the pipeline, which measures it"
        )
    drop = served - new
    if drop > margin:
        return False, (
            f"{GATE_METRIC} {new:.4f} is {drop:.4f} below the served model's {served:.4f}, more than the margin "
            f"{margin:g}: the served lists stay. Check the data and the model; to replace them anyway, rerun "
            "with a larger gate margin"
        )
    return True, f"{GATE_METRIC} {new:.4f} against the served {served:.4f} (margin {margin:g}): publish"


def gate(
    run_dir: str | Path, db: str | Path | None = None, name: str | None = None, margin: float = DEFAULT_GATE_MARGIN
) -> dict:
    """Stage 4: compare the new validation NDCG@10 with the served model's, read from the store's metrics.

    ``name`` is what the lists are served as (default: the model's name); ``db`` a SQLite path or a
    ``postgresql://`` URL (default ``$RECSYS_TUTORIAL_DB``, else ``data/recommendations.sqlite``). Returns
    (and writes to ``gate.json``) the decision, ``passed`` true or false, with both numbers and the reason:
    the caller stops on a refusal (:func:`run_pipeline` skips the last stages, the Airflow task fails), and
    :func:`publish` refuses to run after one.
    """
    run_dir = Path(run_dir)
    evaluated = read_json(run_dir, "evaluate.json", "evaluate")
    name = name or evaluated["model"]
    store = open_store(db)
    try:
        served = store.models().get(name, {})
        location = store.location
    finally:
        store.close()
    served_value = served.get("metrics", {}).get(GATE_METRIC)
    passed, reason = gate_decision(evaluated["metrics"].get(GATE_METRIC), served_value, margin)
    return write_json(run_dir, "gate.json", {
        "stage": "gate", "run_dir": str(run_dir), "passed": passed, "name": name, "metric": GATE_METRIC,
        "new": evaluated["metrics"].get(GATE_METRIC), "served": served_value, "margin": check_margin(margin),
        "served_generated_at": served.get("generated_at"), "db": location, "reason": reason,
    })  # fmt: skip


def compute_top_k(run_dir: str | Path, k: int = 10, batch_size: int | None = None) -> dict:
    """Stage 5: every user's top-``k`` unseen items (per time of day for context-aware models), as stored ids.

    A user with fewer than ``k`` unseen items would get a short list, which the store refuses; such users get
    no list (the API answers 404 for them) and are counted in the summary. Writes ``lists.pkl``.
    """
    run_dir = Path(run_dir)
    model = torch.load(needed_file(run_dir, "model.pt", "train"), weights_only=False)
    users, items = read_ids(run_dir)
    result = top_k(model, k=k, batch_size=batch_size)
    lists = to_store_frame(result.lists, served_map(users), served_map(items))
    contexts = list(TIME_OF_DAY) if model.uses_context else [NO_CONTEXT]
    rows_per_user = lists.groupby("user")["rank"].size()
    complete = rows_per_user.index[rows_per_user == k * len(contexts)]
    without = np.setdiff1d(served_map(users).ids, complete.to_numpy())
    if len(without) == len(users):
        raise ValueError(f"no user has {k} unseen items for every context: lower k (the catalogue has {len(items)})")
    lists = lists[lists["user"].isin(complete)].reset_index(drop=True)
    _frame_files(run_dir, {"lists.pkl": lists})
    return write_json(run_dir, "top_k.json", {
        "stage": "top_k", "run_dir": str(run_dir), "k": k, "users": len(complete), "rows": len(lists),
        "contexts": len(contexts), "context_names": contexts, "users_without_list": without.tolist(),
        "device": result.device, "top_k_s": round(result.seconds, 3),
        "peak_batch_mb": round(result.peak_batch_bytes / 2**20, 2),
    })  # fmt: skip


def _history(run_dir: Path) -> pd.DataFrame:
    """Every interaction as stored ids (``user, item, timestamp``), for the store's recent-history table."""
    frame = read_frame(run_dir, "interactions.pkl", "ingest")
    users, items = read_ids(run_dir)
    raw_users = frame["user_id"].to_numpy().astype(users.ids.dtype)
    raw_items = frame["item_id"].to_numpy().astype(items.ids.dtype)
    known = np.isin(raw_users, users.ids) & np.isin(raw_items, items.ids)  # a loaded model may not know new ids
    return pd.DataFrame({
        "user": served_map(users).ids[users.to_index(raw_users[known])],
        "item": served_map(items).ids[items.to_index(raw_items[known])],
        "timestamp": frame["timestamp"].to_numpy()[known],
    })  # fmt: skip


def publish(run_dir: str | Path, db: str | Path | None = None, name: str | None = None) -> dict:
    """Stage 6: write item details and recent histories, then replace the lists and metrics in one transaction.

    Runs only after a passed :func:`gate` for the same ``name`` (else :class:`GateRefused`). The store
    checks the lists before writing (every expected user and context has exactly ``k`` items) and, on any
    error, keeps the old lists.
    """
    run_dir = Path(run_dir)
    decision = read_json(run_dir, "gate.json", "gate")
    if not decision["passed"]:
        raise GateRefused(decision)
    name = name or decision["name"]
    if name != decision["name"]:
        raise ValueError(f"the gate compared with the lists served as {decision['name']!r}, not {name!r}: rerun it")
    ranked = read_json(run_dir, "top_k.json", "top_k")
    lists = read_frame(run_dir, "lists.pkl", "top_k")
    metrics = read_json(run_dir, "evaluate.json", "evaluate")["metrics"]
    users, _ = read_ids(run_dir)
    expected = np.setdiff1d(served_map(users).ids, ranked["users_without_list"])
    store, start = open_store(db), time.perf_counter()
    try:
        n_items = store.write_items(read_frame(run_dir, "items.pkl", "ingest"))
        n_history = store.write_history(_history(run_dir))
        stamp = store.refresh(
            name, lists, ranked["k"], metrics=metrics, expected_users=expected.tolist(),
            expected_contexts=ranked["context_names"],
        )  # fmt: skip
        location = store.location
    finally:
        store.close()
    return write_json(run_dir, "publish.json", {
        "stage": "publish", "run_dir": str(run_dir), "name": name, "db": location, "rows": len(lists),
        "users": len(expected), "items_written": n_items, "history_rows": n_history, "generated_at": stamp,
        "write_s": round(time.perf_counter() - start, 3),
    })  # fmt: skip


STAGES = (ingest, train, evaluate, gate, compute_top_k, publish)  # in order; the DAG has one task per stage
