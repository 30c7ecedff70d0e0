"""scikit-surprise on ml-100k's five canonical folds under our nested protocol: one JSON line per fold and model.

Four models: ``SVD``, ``SVD++`` and ``KNNBaseline`` with the library's default hyperparameters, and ``SVD tuned``,
whose ``n_factors``, ``reg_all``, ``lr_all`` and ``n_epochs`` are chosen per fold on the validation share that
our protocol carves from ``u{k}.base`` (``recsys_tutorial.splits.random_holdout``, 10%, seed 0: the same rows),
then refitted on all of ``u{k}.base``. Every model goes through ``recsys_tutorial.tuning.nested_folds``
behind a small adapter, so the carve, the refit, the scoring (RMSE and MAE of predictions clipped to 1..5) and
the per-fold validation choice are the same code as for our models; models with defaults have one candidate
(their validation RMSE is reported too). The recorded file was written by::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/surprise_folds.py \\
        --out benchmarks/results/surprise_folds_2core_cpu.jsonl

Surprise is single-threaded Cython; SVD++ takes the longest. Read the five-fold means back with
``recsys_tutorial.tuning.read_peer_results(path)``. Fit seconds depend on how busy the machine is.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import surprise

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers of the sibling benchmark
from mf_folds import machine, table_lines, write_jsonl  # noqa: E402

from recsys_tutorial.tuning import grid, nested_folds, summarize  # noqa: E402

SEED = 0  # the carve's seed (as benchmarks/mf_folds.py) and Surprise's random_state for SGD initialisation
VALID_FRACTION = 0.1
SVD_GRID = {  # around Surprise's defaults (100 factors, reg 0.02, lr 0.005, 20 epochs), widened towards more shrinkage
    "n_factors": [50, 100, 200],
    "reg_all": [0.02, 0.05, 0.1, 0.15],
    "lr_all": [0.005, 0.01],
    "n_epochs": [20, 50, 100],
}


class SurpriseModel:
    """A Surprise algorithm behind ``fit(train, n_users=..., n_items=...)`` and ``predict(users, items)``.

    Encoded ``user`` and ``item`` indices serve as Surprise's raw ids; a pair it cannot score (an id absent
    from the training frame) gets Surprise's own fallback, as in ``algo.test``.
    """

    def __init__(self, algo_class, **params):
        self.algo = algo_class(**params)

    def fit(self, train: pd.DataFrame, n_users: int, n_items: int) -> SurpriseModel:
        reader = surprise.Reader(rating_scale=(1, 5))
        data = surprise.Dataset.load_from_df(train[["user", "item", "rating"]], reader)
        self.algo.fit(data.build_full_trainset())
        return self

    def predict(self, users, items) -> np.ndarray:
        pairs = zip(np.asarray(users).tolist(), np.asarray(items).tolist(), strict=True)
        return np.array([self.algo.predict(u, i).est for u, i in pairs])


def families(models: list[str]) -> dict:
    """Candidates per model: one (the defaults) for three, the ``SVD_GRID`` combinations for ``SVD tuned``."""
    all_families = {
        "SVD": grid(lambda: SurpriseModel(surprise.SVD, random_state=SEED)),
        "SVD++": grid(lambda: SurpriseModel(surprise.SVDpp, random_state=SEED)),
        "KNNBaseline": grid(lambda: SurpriseModel(surprise.KNNBaseline, verbose=False)),
        "SVD tuned": grid(lambda **p: SurpriseModel(surprise.SVD, random_state=SEED, **p), **SVD_GRID),
    }
    return {name: all_families[name] for name in models}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    names = ["SVD", "SVD++", "KNNBaseline", "SVD tuned"]
    parser.add_argument("--models", nargs="+", choices=names, default=names)
    parser.add_argument("--folds", nargs="+", type=int, choices=range(1, 6), default=[1, 2, 3, 4, 5])
    parser.add_argument("--out", type=Path, help="JSON-lines file to write (default: stdout only)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    table = nested_folds(families(args.models), args.folds, valid_fraction=VALID_FRACTION, seed=SEED)
    seconds = time.perf_counter() - start
    extra = {
        "benchmark": "surprise_folds", "library": f"scikit-surprise {surprise.__version__}",
        "valid_fraction": VALID_FRACTION, "seed": SEED, **machine(),
    }  # fmt: skip
    lines = table_lines(table, extra)
    for line in lines:
        print(json.dumps(line))
    if args.out:
        write_jsonl(lines, args.out)
    print(summarize(table).round(4).to_string())
    print(f"Surprise, nested protocol: {seconds:.1f} s in all on this machine")
    return table


if __name__ == "__main__":
    main()
