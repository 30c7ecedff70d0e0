"""The batch pipeline a scheduler runs (cron, Airflow): train or load a model -> top-K -> database.

::

    python -m recsys_tutorial.serving.pipeline --model context-popularity --k 10 --db data/recommendations.sqlite
    python -m recsys_tutorial.serving.pipeline --load model.pt   # a model saved earlier with --save

The model is fitted on *all* interactions (serving, unlike evaluation, should use every rating we
have), every user's seen items are excluded, and the model's lists in the store are replaced in one
transaction, so the API never serves a half-refreshed model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data import TIME_OF_DAY, add_context, load_movielens
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
from .store import NO_CONTEXT, RecommendationStore
from .topk import top_k

__all__ = ["TRAINERS", "load_ratings", "to_store_frame", "save_model", "load_model", "run_pipeline", "main"]


def _most_popular(train: pd.DataFrame, n_users: int, n_items: int) -> Recommender:
    return MostPopular().fit(train, n_users, n_items)


def _implicit_als(train: pd.DataFrame, n_users: int, n_items: int) -> Recommender:
    return ImplicitALS(IMPLICIT_ALS_ML100K).fit(train, n_users, n_items)  # notebook 01's MF, its ML-100K preset


def _cp(train: pd.DataFrame, n_users: int, n_items: int) -> Recommender:
    """Notebook 02's context-aware CP, fitted on every interaction for as many epochs as validation chose.

    The epoch count is chosen with each user's last interactions held out (temporal leave-one-out); the
    served model is then refitted on all interactions for that many epochs.
    """
    split = temporal_leave_one_out(train)
    chosen = CPModel(CLICKS_ML100K, progress=False).fit(split.train, n_users, n_items, len(TIME_OF_DAY), split.valid)
    return chosen.refit(train)


def _context_popularity(train: pd.DataFrame, n_users: int, n_items: int) -> Recommender:
    return ContextPopularity().fit(train, n_users, n_items, len(TIME_OF_DAY))


# name -> fit(encoded ratings with context_id, n_users, n_items) -> fitted Recommender.
# Add a model family here to make it available to the pipeline, the API and the page.
TRAINERS: dict[str, Callable[[pd.DataFrame, int, int], Recommender]] = {
    "most-popular": _most_popular,
    "implicit-als": _implicit_als,
    "context-popularity": _context_popularity,
    "cp": _cp,  # the slowest: trains twice (epochs chosen on held-out interactions, then a refit on all)
}


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


def save_model(path: str | Path, name: str, model: Recommender, users: IdMap, items: IdMap) -> None:
    """Save a fitted model with its id maps, so a later run can load it instead of training."""
    torch.save({"name": name, "model": model, "users": users, "items": items}, path)


def load_model(path: str | Path) -> tuple[str, Recommender, IdMap, IdMap]:
    """Load what :func:`save_model` wrote (a pickle: only load files you made yourself)."""
    saved = torch.load(path, weights_only=False)
    return saved["name"], saved["model"], saved["users"], saved["items"]


def run_pipeline(
    model: str = "context-popularity", db: str | Path | None = None, k: int = 10, dataset: str = "100k",
    batch_size: int | None = None, load: str | Path | None = None, save: str | Path | None = None, seed: int = 0,
) -> dict:  # fmt: skip
    """Train (or load) -> top-K for every user and context -> atomic refresh of the store. Returns a summary."""
    seed_everything(seed)
    start = time.perf_counter()
    encoded, users, items, item_details = load_ratings(dataset)
    if load is not None:
        model, fitted, users, items = load_model(load)
    elif model in TRAINERS:
        fitted = TRAINERS[model](encoded, len(users), len(items))
    else:
        raise ValueError(f"unknown model {model!r}: choose one of {sorted(TRAINERS)} or pass load=PATH")
    if save is not None:
        save_model(save, model, fitted, users, items)
    fit_s = time.perf_counter() - start
    result = top_k(fitted, k=k, batch_size=batch_size)
    store = RecommendationStore(db)
    store.write_items(item_details)
    write_start = time.perf_counter()
    stamp = store.refresh(model, to_store_frame(result.lists, users, items), k=k)
    return {
        "model": model, "db": str(store.path), "k": k, "users": int(result.lists["user"].nunique()),
        "rows": len(result.lists), "contexts": int(result.lists["context"].nunique()), "device": result.device,
        "fit_s": round(fit_s, 3), "top_k_s": round(result.seconds, 3),
        "write_s": round(time.perf_counter() - write_start, 3),
        "peak_batch_mb": round(result.peak_batch_bytes / 2**20, 2), "generated_at": stamp,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m recsys_tutorial.serving.pipeline",
        description="Batch pipeline: train or load a model, compute every user's top-K, refresh the SQLite store.",
    )
    parser.add_argument("--model", default="context-popularity", help=f"one of {sorted(TRAINERS)}")
    parser.add_argument("--db", default=None, help="SQLite file (default: data/recommendations.sqlite)")
    parser.add_argument("--k", type=int, default=10, help="list length stored per user and context")
    parser.add_argument("--dataset", default="100k", choices=["100k", "1m"])
    parser.add_argument("--batch-size", type=int, default=None, help="users scored at once (default: fits memory)")
    parser.add_argument("--load", default=None, help="a model saved with --save, instead of training")
    parser.add_argument("--save", default=None, help="save the fitted model here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        summary = run_pipeline(
            args.model, args.db, args.k, args.dataset, args.batch_size, args.load, args.save, args.seed
        )
    except ValueError as err:
        parser.error(str(err))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
