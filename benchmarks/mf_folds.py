"""Matrix factorization on ml-100k's five canonical folds u1..u5: one JSON line per model.

Each line holds the model, its configuration, the mean, sample standard deviation (ddof=1, as pandas
in notebook 01) and per-fold RMSE and MAE on ``u{k}.test`` after fitting on ``u{k}.base``, and the fit
seconds per fold, so that any other library can be run on the same folds and compared line by line::

    python benchmarks/mf_folds.py                     # every model, all five folds
    python benchmarks/mf_folds.py --models als_sampled --folds 1 2

Hyperparameters come from the package presets, chosen on a validation split carved from u1.base
(see notebook 01), never from the test folds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
import warnings

import numpy as np
import torch

from recsys_tutorial.metrics import mae, rmse
from recsys_tutorial.models import ALSMF, BiasBaseline, BiasedMF
from recsys_tutorial.models.mf import ALS_ML100K, BIASED_MF_ML100K, SAMPLED_ALS_ML100K
from recsys_tutorial.splits import canonical_fold

MODELS = {
    "bias_baseline": lambda: BiasBaseline(),
    "biased_mf_sgd": lambda: BiasedMF(BIASED_MF_ML100K),
    "als": lambda: ALSMF(ALS_ML100K),
    "als_sampled": lambda: ALSMF(SAMPLED_ALS_ML100K),
}


def run(name: str, folds: list[int]) -> dict:
    """Fit ``name`` on each fold's base file and score its test file."""
    rmses, maes, seconds = [], [], []
    for k in folds:
        split = canonical_fold(k)
        model = MODELS[name]()
        start = time.perf_counter()
        if isinstance(model, BiasedMF):
            model.fit(split.train, split.n_users, split.n_items, progress=False)
        else:
            model.fit(split.train, split.n_users, split.n_items)
        seconds.append(time.perf_counter() - start)
        pred, truth = model.predict(split.test["user"], split.test["item"]), split.test["rating"].to_numpy()
        rmses.append(rmse(truth, pred, clip=(1, 5)))
        maes.append(mae(truth, pred, clip=(1, 5)))
    config = dataclasses.asdict(model.config) if hasattr(model, "config") else {}
    return {
        "model": name, "folds": [f"u{k}" for k in folds],
        "rmse_mean": round(float(np.mean(rmses)), 4),
        "rmse_std": round(float(np.std(rmses, ddof=1)), 4) if len(rmses) > 1 else 0.0,
        "rmse_per_fold": [round(x, 4) for x in rmses],
        "mae_mean": round(float(np.mean(maes)), 4), "mae_per_fold": [round(x, 4) for x in maes],
        "fit_seconds_per_fold": [round(x, 2) for x in seconds], "fit_seconds_mean": round(float(np.mean(seconds)), 2),
        "load_average_1min": round(os.getloadavg()[0], 2), "device": str(model.device), "config": config,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--folds", nargs="+", type=int, choices=range(1, 6), default=[1, 2, 3, 4, 5])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the course's 2-core target)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*[Ss]parse.*")  # torch's beta notices for sparse CSR
    for name in args.models:
        print(json.dumps(run(name, args.folds)), flush=True)


if __name__ == "__main__":
    main()
