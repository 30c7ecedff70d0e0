"""The nightly batch job: data ingestion -> training -> evaluation -> gate -> top-K -> database (-> API).

::

    python -m recsys_tutorial.serving.pipeline --model context-popularity --k 10 --db data/recommendations.sqlite
    python -m recsys_tutorial.serving.pipeline --data logs/clicks.csv --user-col customer --item-col sku \\
        --timestamp-col event_time --model implicit-als --db postgresql://recsys@dbhost/recsys --gate-margin 0.005

Six stages, each a function of a *run directory*: it reads the files the stages before it wrote there,
writes its own, and returns a small JSON summary (what a scheduler logs; what Airflow passes between
tasks as XCom, see :mod:`recsys_tutorial.serving.dag`):

1. :func:`ingest` loads and validates the interactions (a MovieLens name, or any log through
   :func:`~recsys_tutorial.data.load_interactions`), adds time-of-day context, encodes ids, saves the id maps
   and holds out each user's last new interaction.
2. :func:`train` fits the model with those held-out items as validation (epochs chosen on them where the model
   stops early), then refits it on *all* interactions: serving should use every interaction we have.
3. :func:`evaluate` measures the validation fit on the held-out items: NDCG@10 under the series' full-ranking
   protocol (every item ranked, each user's seen items excluded).
4. :func:`gate` refuses to publish when that NDCG@10 falls below the served model's by more than a margin;
   the served number comes from the store's per-model metrics, and the old lists stay.
5. :func:`compute_top_k` ranks every user's unseen items (per time of day for context-aware models).
6. :func:`publish` writes item details, recent histories, then the lists with their metrics, replacing the
   model's lists in one transaction, so the API never serves a half-refreshed model.

:func:`run_pipeline` runs them in one process (the embedded default: no scheduler, a SQLite file). A refused
gate ends the command with exit status 3 and leaves the store as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data import TIME_OF_DAY, add_context, load_dataset, load_movielens
from ..evaluation import evaluate_ranking
from ..models import (
    CLICKS_ML100K,
    IMPLICIT_ALS_ML100K,
    ContextPopularity,
    CPModel,
    ImplicitALS,
    MostPopular,
    Recommender,
)
from ..splits import IdMap, encode_ids, temporal_leave_one_out
from ..utils import seed_everything
from .store import MODEL_NAME_MAX, NO_CONTEXT, open_store
from .topk import top_k

__all__ = [
    "MODELS", "TRAINERS", "STAGES", "GATE_METRIC", "DEFAULT_GATE_MARGIN", "GateRefused", "register_model",
    "serving_split", "fit_for_serving", "gate_decision", "load_ratings", "to_store_frame", "served_map",
    "item_details", "save_model",
    "load_model", "ingest", "train", "evaluate", "gate", "compute_top_k", "publish", "run_pipeline", "main",
]  # fmt: skip

GATE_METRIC = "valid_ndcg10"  # the store's metric the gate compares: validation NDCG@10
# Absolute NDCG@10. On MovieLens-100K one validation item per user puts the standard error of NDCG@10 near
# 0.005 (943 users, per-user values mostly 0), so two standard errors: noise passes, a broken model does not.
DEFAULT_GATE_MARGIN = 0.01
CUTOFF = 10  # the metrics' K, fixed so that numbers stored on different nights compare
CONTEXT = "context_id"  # the column of time-of-day ids (data.add_context) that context-aware models read
EXIT_REFUSED = 3  # the command's exit status when the gate keeps the old lists

# name -> a fresh, unfitted model. Add a family with register_model() to make it available to the pipeline,
# the Airflow DAG, the API and the page.
MODELS: dict[str, Callable[[], Recommender]] = {
    "most-popular": lambda: MostPopular(progress=False),
    "implicit-als": lambda: ImplicitALS(IMPLICIT_ALS_ML100K, progress=False),  # notebook 01's MF, ML-100K preset
    "context-popularity": lambda: ContextPopularity(progress=False),
    "cp": lambda: CPModel(CLICKS_ML100K, progress=False),  # notebook 02's CP; the slowest (gradient descent)
}


def register_model(name: str, make: Callable[[], Recommender], replace: bool = False) -> None:
    """Make ``make()`` (a fresh, unfitted model) available to the pipeline as ``--model name``."""
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"a model name must be a non-empty string without surrounding spaces, got {name!r}")
    if not callable(make):
        raise ValueError(f"make must be a callable that returns a fresh model, got {make!r}")
    if name in MODELS and not replace:
        raise ValueError(f"model {name!r} is already registered: pass replace=True to swap it")
    MODELS[name] = make


class GateRefused(RuntimeError):
    """The gate kept the served lists; ``summary`` is the gate's decision (numbers, margin, reason)."""

    def __init__(self, summary: dict):
        super().__init__(summary["reason"])
        self.summary = summary


# ---------------------------------------------------------------------------------------------- models


def _make_model(name: str) -> Recommender:
    """A fresh model of a registered family; unknown names raise a ``ValueError`` listing the choices."""
    if name not in MODELS:
        raise ValueError(
            f"unknown model {name!r}: choose one of {sorted(MODELS)}, add yours with register_model(), or serve a "
            "saved one with --load PATH"
        )
    model = MODELS[name]()
    if not isinstance(model, Recommender):
        raise ValueError(f"MODELS[{name!r}]() returned {type(model).__name__}, not a Recommender")
    return model


def _fit(model: Recommender, train: pd.DataFrame, n_users: int, n_items: int, valid=None) -> Recommender:
    """``model.fit`` with the sizes its family takes (context-aware models: the four times of day)."""
    sizes = (n_users, n_items) + ((len(TIME_OF_DAY),) if model.context_aware else ())
    return model.fit(train, *sizes, valid=valid)


def serving_split(interactions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, valid): each user's last *new* interaction held out as ``valid``, everything before it in ``train``.

    :func:`~recsys_tutorial.splits.temporal_leave_one_out` holds out the last two; a served model has no test
    set, so its validation item is the last one and its second-to-last goes back to training. Repeats are
    dropped first (the held-out item is new to its user); users with fewer than three interactions stay in
    ``train`` only.
    """
    split = temporal_leave_one_out(interactions)
    return pd.concat([split.train, split.valid], ignore_index=True), split.test


def fit_for_serving(name: str, interactions: pd.DataFrame, n_users: int, n_items: int) -> Recommender:
    """A registered model fitted for serving on all ``interactions`` (encoded, with ``context_id``).

    A model that stops early (``epochs_field``) is fitted with each user's last interaction as validation, then
    refitted on everything for the epochs that were best (:meth:`Recommender.refit`); the others have nothing
    to choose, and one fit on everything gives the same model.
    """
    model = _make_model(name)
    if model.epochs_field is None:
        return _fit(model, interactions, n_users, n_items)
    fit_part, valid = serving_split(interactions)
    return _fit(model, fit_part, n_users, n_items, valid).refit(interactions)


class _Trainers(Mapping):
    """name -> ``fit(interactions, n_users, n_items)`` returning a model fitted for serving; a view of MODELS."""

    def __getitem__(self, name: str) -> Callable[[pd.DataFrame, int, int], Recommender]:
        if name not in MODELS:
            raise KeyError(name)
        return functools.partial(fit_for_serving, name)

    def __iter__(self) -> Iterator[str]:
        return iter(MODELS)

    def __len__(self) -> int:
        return len(MODELS)


TRAINERS = _Trainers()


# ---------------------------------------------------------------------------------------------- ids and files


def load_ratings(dataset: str = "100k") -> tuple[pd.DataFrame, IdMap, IdMap, pd.DataFrame]:
    """MovieLens ratings with context features and contiguous ids: (encoded, user map, item map, items)."""
    ml = load_movielens(dataset)
    encoded, users, items = encode_ids(add_context(ml.ratings))
    return encoded, users, items, ml.items


def to_store_frame(lists: pd.DataFrame, users: IdMap, items: IdMap, contexts=TIME_OF_DAY) -> pd.DataFrame:
    """Top-K lists in indices (context -1 = none) -> raw ids and context names, as the store keeps them."""
    names = np.array([*contexts, NO_CONTEXT])  # index -1 picks NO_CONTEXT
    return pd.DataFrame(
        {
            "user": users.to_raw(lists["user"].to_numpy()),
            "context": names[lists["context"].to_numpy()],
            "rank": lists["rank"].to_numpy(),
            "item": items.to_raw(lists["item"].to_numpy()),
            "score": lists["score"].to_numpy(),
        }
    )


def _served_kind(ids: np.ndarray) -> str:
    """ "raw" when raw ids are integers the API accepts (0..2**62), else "index" (text ids: served as 0..n-1)."""
    ids = np.asarray(ids)
    if np.issubdtype(ids.dtype, np.integer) and (len(ids) == 0 or (ids.min() >= 0 and ids.max() <= 2**62)):
        return "raw"
    return "index"


def served_map(ids: IdMap) -> IdMap:
    """The ids the store and the API use: the raw ids, or the indices 0..n-1 for text ids (see ids.json).

    The store keeps integer ids (the API's path parameters are integers), so a log with text ids such as
    ``"u03"`` is served by index: ``ids.ids[index]`` is the raw id of what the API calls ``index``.
    """
    return ids if _served_kind(ids.ids) == "raw" else IdMap(ids.name, np.arange(len(ids)))


def _ids_payload(users: IdMap, items: IdMap) -> dict:
    """ids.json: each raw id at its index, and whether the store serves raw ids or indices."""
    return {m.name + "s": {"served": _served_kind(m.ids), "raw": m.ids.tolist()} for m in (users, items)}


def _read_ids(run_dir: Path) -> tuple[IdMap, IdMap]:
    payload = _read_json(run_dir, "ids.json", "ingest")
    return tuple(IdMap(name, np.asarray(payload[name + "s"]["raw"])) for name in ("user", "item"))


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_json(run_dir: Path, name: str, payload: dict) -> dict:
    _atomic(run_dir / name, lambda p: p.write_text(json.dumps(payload, indent=2, default=str) + "\n"))
    return payload


def _needed(run_dir: Path, name: str, stage: str) -> Path:
    """The path of a file an earlier stage writes; a clear ``ValueError`` when that stage has not run."""
    path = Path(run_dir) / name
    if not path.is_file():
        raise ValueError(f"{path} is missing: run the {stage} stage on this run directory first")
    return path


def _read_json(run_dir: Path, name: str, stage: str) -> dict:
    return json.loads(_needed(run_dir, name, stage).read_text())


def _read_frame(run_dir: Path, name: str, stage: str) -> pd.DataFrame:
    return pd.read_pickle(_needed(run_dir, name, stage))  # our own files: written by this module's stages


def save_model(
    path: str | Path, name: str, model: Recommender, users: IdMap, items: IdMap, metrics: dict | None = None
) -> None:
    """Save a fitted model with its id maps (and validation metrics), so a later run can load it instead."""
    payload = {"name": name, "model": model, "users": users, "items": items, "metrics": metrics or {}}
    _atomic(Path(path), lambda p: torch.save(payload, p))


def _load_saved(path: str | Path) -> dict:
    """What :func:`save_model` wrote (a pickle: only load files you made yourself)."""
    if not Path(path).is_file():
        raise ValueError(f"no saved model at {path}: pass a file written by --save (save_model)")
    return torch.load(path, weights_only=False)


def load_model(path: str | Path) -> tuple[str, Recommender, IdMap, IdMap]:
    """Load what :func:`save_model` wrote (a pickle: only load files you made yourself)."""
    saved = _load_saved(path)
    return saved["name"], saved["model"], saved["users"], saved["items"]


# ---------------------------------------------------------------------------------------------- stages


def _frame_files(run_dir: Path, frames: Mapping[str, pd.DataFrame]) -> None:
    for name, frame in frames.items():
        _atomic(run_dir / name, frame.to_pickle)


def item_details(dataset, items: IdMap) -> pd.DataFrame:
    """Item details for the store (``item_id, title, year, genres``) of a :class:`~recsys_tutorial.data.Dataset`.

    MovieLens's own titles and genres; for any other log (``dataset.items`` is None), each item's raw id as its
    title, no year and no genres, keyed by the served id (:func:`served_map`).
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
    ids = _write_json(run_dir, "ids.json", _ids_payload(users, items))
    report = dataset.report
    return _write_json(run_dir, "ingest.json", {
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
    info = _read_json(run_dir, "ingest.json", "ingest")
    if load is not None:
        return _adopt(run_dir, load)
    fresh = _make_model(model)
    if fresh.context_aware and info["synthetic_timestamps"]:
        raise ValueError(
            f"model {model!r} ranks by time of day, but {info['data']} has no timestamps (the loader made them up "
            "from row order): pass the timestamp column (--timestamp-col) or a model without context, e.g. "
            "implicit-als"
        )
    fit_part, valid = _read_frame(run_dir, "fit.pkl", "ingest"), _read_frame(run_dir, "valid.pkl", "ingest")
    everything = _read_frame(run_dir, "interactions.pkl", "ingest")
    seed_everything(seed)
    start = time.perf_counter()
    chosen = _fit(fresh, fit_part, info["users"], info["items"], valid)
    fit_s, start = time.perf_counter() - start, time.perf_counter()
    served = chosen.refit(everything)
    refit_s = time.perf_counter() - start
    for name, fitted in (("model_valid.pt", chosen), ("model.pt", served)):
        _atomic(run_dir / name, functools.partial(torch.save, fitted))
    return _write_json(run_dir, "train.json", {
        "stage": "train", "run_dir": str(run_dir), "model": model, "device": str(served.device),
        "fit_rows": len(fit_part), "valid_rows": len(valid), "refit_rows": len(everything),
        "epochs": chosen.history_.best_epoch + 1 if fresh.epochs_field else None,
        "fit_s": round(fit_s, 3), "refit_s": round(refit_s, 3),
    })  # fmt: skip


def _adopt(run_dir: Path, load: str | Path) -> dict:
    """``train`` for a saved model: serve it with its own id maps; its saved metrics stand in for evaluation."""
    saved = _load_saved(load)
    _atomic(run_dir / "model.pt", functools.partial(torch.save, saved["model"]))
    _write_json(run_dir, "ids.json", _ids_payload(saved["users"], saved["items"]))
    return _write_json(run_dir, "train.json", {
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
    trained = _read_json(run_dir, "train.json", "train")
    if "loaded_from" in trained:
        metrics, source = trained["saved_metrics"], f"saved with the model in {trained['loaded_from']}"
    else:
        chosen = torch.load(_needed(run_dir, "model_valid.pt", "train"), weights_only=False)
        valid = _read_frame(run_dir, "valid.pkl", "ingest")
        # A sequence model folds its validation items into its history after fitting (SASRec does, so that a test
        # ranking reads them): rank each held-out item from the history before it, as early stopping did.
        getattr(chosen, "set_history", chosen.set_seen)(_read_frame(run_dir, "fit.pkl", "ingest"))
        measured = evaluate_ranking(chosen, valid, chosen.seen_, k=CUTOFF, context=CONTEXT)
        metrics = {_metric_key(name): value for name, value in measured.items()} | {"valid_users": len(valid)}
        source = "each user's last new interaction held out; full ranking, training items excluded"
    return _write_json(run_dir, "evaluate.json", {
        "stage": "evaluate", "run_dir": str(run_dir), "model": trained["model"], "metrics": metrics,
        "source": source, "seconds": round(time.perf_counter() - start, 3),
    })  # fmt: skip


def _check_margin(margin) -> float:
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
    margin = _check_margin(margin)
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
    evaluated = _read_json(run_dir, "evaluate.json", "evaluate")
    name = name or evaluated["model"]
    store = open_store(db)
    try:
        served = store.models().get(name, {})
        location = store.location
    finally:
        store.close()
    served_value = served.get("metrics", {}).get(GATE_METRIC)
    passed, reason = gate_decision(evaluated["metrics"].get(GATE_METRIC), served_value, margin)
    return _write_json(run_dir, "gate.json", {
        "stage": "gate", "run_dir": str(run_dir), "passed": passed, "name": name, "metric": GATE_METRIC,
        "new": evaluated["metrics"].get(GATE_METRIC), "served": served_value, "margin": _check_margin(margin),
        "served_generated_at": served.get("generated_at"), "db": location, "reason": reason,
    })  # fmt: skip


def compute_top_k(run_dir: str | Path, k: int = 10, batch_size: int | None = None) -> dict:
    """Stage 5: every user's top-``k`` unseen items (per time of day for context-aware models), as stored ids.

    A user with fewer than ``k`` unseen items would get a short list, which the store refuses; such users get
    no list (the API answers 404 for them) and are counted in the summary. Writes ``lists.pkl``.
    """
    run_dir = Path(run_dir)
    model = torch.load(_needed(run_dir, "model.pt", "train"), weights_only=False)
    users, items = _read_ids(run_dir)
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
    return _write_json(run_dir, "top_k.json", {
        "stage": "top_k", "run_dir": str(run_dir), "k": k, "users": len(complete), "rows": len(lists),
        "contexts": len(contexts), "context_names": contexts, "users_without_list": without.tolist(),
        "device": result.device, "top_k_s": round(result.seconds, 3),
        "peak_batch_mb": round(result.peak_batch_bytes / 2**20, 2),
    })  # fmt: skip


def _history(run_dir: Path) -> pd.DataFrame:
    """Every interaction as stored ids (``user, item, timestamp``), for the store's recent-history table."""
    frame = _read_frame(run_dir, "interactions.pkl", "ingest")
    users, items = _read_ids(run_dir)
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
    decision = _read_json(run_dir, "gate.json", "gate")
    if not decision["passed"]:
        raise GateRefused(decision)
    name = name or decision["name"]
    if name != decision["name"]:
        raise ValueError(f"the gate compared with the lists served as {decision['name']!r}, not {name!r}: rerun it")
    ranked = _read_json(run_dir, "top_k.json", "top_k")
    lists = _read_frame(run_dir, "lists.pkl", "top_k")
    metrics = _read_json(run_dir, "evaluate.json", "evaluate")["metrics"]
    users, _ = _read_ids(run_dir)
    expected = np.setdiff1d(served_map(users).ids, ranked["users_without_list"])
    store, start = open_store(db), time.perf_counter()
    try:
        n_items = store.write_items(_read_frame(run_dir, "items.pkl", "ingest"))
        n_history = store.write_history(_history(run_dir))
        stamp = store.refresh(
            name, lists, ranked["k"], metrics=metrics, expected_users=expected.tolist(),
            expected_contexts=ranked["context_names"],
        )  # fmt: skip
        location = store.location
    finally:
        store.close()
    return _write_json(run_dir, "publish.json", {
        "stage": "publish", "run_dir": str(run_dir), "name": name, "db": location, "rows": len(lists),
        "users": len(expected), "items_written": n_items, "history_rows": n_history, "generated_at": stamp,
        "write_s": round(time.perf_counter() - start, 3),
    })  # fmt: skip


STAGES = (ingest, train, evaluate, gate, compute_top_k, publish)  # in order; the DAG has one task per stage


# ---------------------------------------------------------------------------------------------- one process


MOVIELENS_NAMES = {"100k": "ml-100k", "1m": "ml-1m"}


def _data_source(data, dataset: str | None):
    """``data`` (a MovieLens name, a path or a DataFrame), or the older ``dataset`` ("100k", "1m")."""
    if dataset is not None and data is not None:
        raise ValueError(f"pass either data={data!r} or dataset={dataset!r} (the older spelling), not both")
    if dataset is not None:
        if dataset not in MOVIELENS_NAMES:
            raise ValueError(f"dataset must be one of {sorted(MOVIELENS_NAMES)}, got {dataset!r}")
        return MOVIELENS_NAMES[dataset]
    return "ml-100k" if data is None else data


def _check_run(model: str, load, name: str | None, k, batch_size, margin) -> None:
    """Fail on bad arguments before any data is read or model trained."""
    if load is None:
        _make_model(model)  # unknown names fail here, listing the choices
    elif not Path(load).is_file():
        raise ValueError(f"no saved model at {load}: pass a file written by --save (save_model)")
    if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= MODEL_NAME_MAX):
        raise ValueError(f"name must be 1..{MODEL_NAME_MAX} characters (the API's limit on model names), got {name!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a whole number >= 1 (items per stored list), got {k!r}")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"batch_size must be a whole number >= 1 (users scored at once), got {batch_size!r}")
    _check_margin(margin)


@contextlib.contextmanager
def _run_directory(run_dir: str | Path | None) -> Iterator[Path]:
    """The given folder (kept), or a temporary one removed at the end."""
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        yield Path(run_dir)
        return
    with tempfile.TemporaryDirectory(prefix="recsys-run-") as tmp:
        yield Path(tmp)


def _save_from_run(run_dir: Path, path: str | Path, name: str) -> None:
    """--save: the served model with its id maps and validation metrics."""
    users, items = _read_ids(run_dir)
    model = torch.load(_needed(run_dir, "model.pt", "train"), weights_only=False)
    save_model(path, name, model, users, items, _read_json(run_dir, "evaluate.json", "evaluate")["metrics"])


def run_pipeline(
    model: str = "context-popularity", db: str | Path | None = None, k: int = 10, dataset: str | None = None,
    batch_size: int | None = None, load: str | Path | None = None, save: str | Path | None = None, seed: int = 0,
    *, data: str | os.PathLike | pd.DataFrame | None = None, loader: Mapping | None = None, name: str | None = None,
    gate_margin: float = DEFAULT_GATE_MARGIN, run_dir: str | Path | None = None,
) -> dict:  # fmt: skip
    """Every stage in one process: ingest -> train -> evaluate -> gate -> top-K -> publish. Returns a summary.

    Parameters
    ----------
    model : str
        A registered model (:data:`MODELS`), trained on ``data``; or ``load`` a saved one instead.
    db : path or URL, optional
        The store: a SQLite path or a ``postgresql://`` URL (default ``$RECSYS_TUTORIAL_DB``, else
        ``data/recommendations.sqlite``).
    k, batch_size
        Items per stored list; users scored at once (default: what fits the memory budget).
    dataset : {"100k", "1m"}, optional
        The older spelling of ``data="ml-100k"`` / ``"ml-1m"``.
    load, save : path, optional
        Serve a model saved earlier instead of training; save the served model (with its metrics).
    seed : int
        Seeds Python, NumPy and torch before training.
    data : {"ml-100k", "ml-1m"}, path or DataFrame, optional
        The interactions (default MovieLens-100K); ``loader`` holds
        :func:`~recsys_tutorial.data.load_interactions` options for a log (``{"user": "customer", ...}``).
    name : str, optional
        What the lists are served as (default: the model's name); the gate compares with the lists served
        under this name.
    gate_margin : float
        Refuse to publish when validation NDCG@10 falls more than this below the served model's.
    run_dir : path, optional
        Keep every stage's files there (default: a temporary folder, removed at the end).

    Returns
    -------
    dict
        ``published`` and the ``gate``'s decision, the validation ``metrics``, and for a published run
        ``users``, ``rows``, ``contexts``, ``device``, ``generated_at`` and the time of each step.
    """
    data = _data_source(data, dataset)
    _check_run(model, load, name, k, batch_size, gate_margin)
    with _run_directory(run_dir) as where:
        ingested = ingest(where, data, **dict(loader or {}))
        trained = train(where, model, seed, load=load)
        evaluated = evaluate(where)
        if save is not None:
            _save_from_run(where, save, trained["model"])
        decision = gate(where, db, name, gate_margin)
        summary = {
            "model": trained["model"], "name": decision["name"], "data": ingested["data"], "db": decision["db"],
            "k": k, "metrics": evaluated["metrics"], "gate": decision, "published": decision["passed"],
            "fit_s": round(trained["fit_s"] + trained["refit_s"], 3),
        }  # fmt: skip
        if not decision["passed"]:
            return summary
        ranked = compute_top_k(where, k, batch_size)
        published = publish(where, db, name)
    keys = ("users", "rows", "contexts", "device", "top_k_s", "peak_batch_mb")
    return summary | {key: ranked[key] for key in keys} | {
        "users_without_list": len(ranked["users_without_list"]), "write_s": published["write_s"],
        "generated_at": published["generated_at"], "run_dir": str(run_dir) if run_dir is not None else None,
    }  # fmt: skip


# load_interactions options that read a log's columns -> their flags (MovieLens's columns are fixed).
FLAGS = {
    "user": "--user-col", "item": "--item-col", "timestamp": "--timestamp-col", "rating": "--rating-col",
    "format": "--format", "sep": "--sep", "names": "--names", "tz": "--tz", "timestamp_unit": "--timestamp-unit",
}  # fmt: skip


def _loader_options(args: argparse.Namespace) -> dict:
    """The load_interactions options given on the command line (only those given)."""
    given = {
        "user": args.user_col, "item": args.item_col, "timestamp": args.timestamp_col, "rating": args.rating_col,
        "format": args.format, "sep": args.sep, "names": args.names.split(",") if args.names else None,
        "tz": args.tz, "timestamp_unit": args.timestamp_unit, "duplicates": args.duplicates,
        "short_users": args.short_users, "k_core": args.k_core,
    }  # fmt: skip
    return {key: value for key, value in given.items() if value is not None}


def _parser() -> argparse.ArgumentParser:
    from ..data.interactions import FORMATS

    parser = argparse.ArgumentParser(
        prog="python -m recsys_tutorial.serving.pipeline",
        description="The nightly job: load data, train, evaluate, gate, compute every user's top-K, refresh the "
        "store. Exit status 3 when the gate keeps the served lists.",
    )
    data = parser.add_argument_group("data (any option of recsys_tutorial.data.load_interactions)")
    data.add_argument("--data", default=None, help="ml-100k (default), ml-1m, or an interaction log (CSV, TSV, ...)")
    data.add_argument("--dataset", default=None, choices=sorted(MOVIELENS_NAMES), help="older spelling of --data")
    for column in ("user", "item", "timestamp", "rating"):
        data.add_argument(f"--{column}-col", default=None, help=f"the log's {column} column")
    data.add_argument("--format", default=None, choices=FORMATS, help="default: from the file name")
    data.add_argument("--sep", default=None, help="separator of a delimited log (default: sniffed)")
    data.add_argument("--names", default=None, help="comma-separated column names of a log without a header")
    data.add_argument("--tz", default=None, help="time zone of naive timestamps (default UTC)")
    data.add_argument("--timestamp-unit", default=None, choices=["s", "ms", "us", "ns"])
    data.add_argument("--duplicates", default=None, choices=["error", "drop", "keep"])
    data.add_argument("--short-users", default=None, choices=["error", "drop", "keep"])
    data.add_argument("--k-core", type=int, default=None, help="keep only the k-core of the log")
    run = parser.add_argument_group("model and store")
    run.add_argument("--model", default="context-popularity", help=f"one of {sorted(MODELS)}")
    run.add_argument("--name", default=None, help="serve the lists under this name (default: the model's)")
    run.add_argument(
        "--db", default=None, help="SQLite file or postgresql:// URL (default: data/recommendations.sqlite)"
    )
    run.add_argument("--k", type=int, default=10, help="list length stored per user and context")
    run.add_argument("--batch-size", type=int, default=None, help="users scored at once (default: fits memory)")
    run.add_argument(
        "--gate-margin", type=float, default=DEFAULT_GATE_MARGIN,
        help="refuse to publish when validation NDCG@10 falls more than this below the served model's",
    )  # fmt: skip
    run.add_argument("--load", default=None, help="a model saved with --save, instead of training")
    run.add_argument("--save", default=None, help="save the fitted model (with its metrics) here")
    run.add_argument("--run-dir", default=None, help="keep every stage's files in this folder")
    run.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    loader = _loader_options(args)
    reading = [FLAGS[key] for key in loader if key in FLAGS]  # MovieLens takes the cleaning options only
    if reading and (args.data in (None, *MOVIELENS_NAMES.values()) or args.dataset):
        parser.error(
            f"{', '.join(reading)} describe the columns of a log: pass its path with --data (MovieLens's are fixed)"
        )
    try:
        summary = run_pipeline(
            args.model, args.db, args.k, args.dataset, args.batch_size, args.load, args.save, args.seed,
            data=args.data, loader=loader, name=args.name, gate_margin=args.gate_margin, run_dir=args.run_dir,
        )  # fmt: skip
    except (ValueError, ConnectionError) as err:
        parser.error(str(err))
    print(json.dumps(summary, indent=2, default=str))
    if not summary["published"]:
        print(f"gate: {summary['gate']['reason']}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


if __name__ == "__main__":
    sys.exit(main())
