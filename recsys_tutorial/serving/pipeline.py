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
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .registry import MODELS, TRAINERS, fit_for_serving, make_model, register_model, serving_split
from .runfiles import (
    load_model,
    load_ratings,
    needed_file,
    read_ids,
    read_json,
    save_model,
    served_map,
    to_store_frame,
)  # fmt: skip
from .stages import (
    DEFAULT_GATE_MARGIN,
    GATE_METRIC,
    STAGES,
    GateRefused,
    check_margin,
    compute_top_k,
    evaluate,
    gate,
    gate_decision,
    ingest,
    item_details,
    publish,
    train,
)  # fmt: skip
from .store import MODEL_NAME_MAX

__all__ = [
    "MODELS", "TRAINERS", "STAGES", "GATE_METRIC", "DEFAULT_GATE_MARGIN", "EXIT_REFUSED", "GateRefused",
    "register_model", "serving_split", "fit_for_serving", "gate_decision", "load_ratings", "to_store_frame",
    "served_map", "item_details",
    "save_model", "load_model", "ingest", "train", "evaluate", "gate", "compute_top_k", "publish", "run_pipeline",
    "main",
]  # fmt: skip

EXIT_REFUSED = 3  # the command's exit status when the gate keeps the old lists


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
        make_model(model)  # unknown names fail here, listing the choices
    elif not Path(load).is_file():
        raise ValueError(f"no saved model at {load}: pass a file written by --save (save_model)")
    if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= MODEL_NAME_MAX):
        raise ValueError(f"name must be 1..{MODEL_NAME_MAX} characters (the API's limit on model names), got {name!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a whole number >= 1 (items per stored list), got {k!r}")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"batch_size must be a whole number >= 1 (users scored at once), got {batch_size!r}")
    check_margin(margin)


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
    users, items = read_ids(run_dir)
    model = torch.load(needed_file(run_dir, "model.pt", "train"), weights_only=False)
    save_model(path, name, model, users, items, read_json(run_dir, "evaluate.json", "evaluate")["metrics"])


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
