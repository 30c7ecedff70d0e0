"""Benchmark the sequential recommender: training time per epoch and full-ranking metrics, one JSON line.

ML-100K, temporal leave-one-out, early stopping on the validation item, then HR@10 / NDCG@10 on the
test item under full ranking (train + validation items excluded), as in notebook 04::

    python benchmarks/sasrec_epoch.py                      # the default SASRecConfig (softmax CE)
    python benchmarks/sasrec_epoch.py --loss bce --epochs 200 --seed 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform

import pandas as pd
import torch

import recsys_tutorial as rt
from recsys_tutorial.data import load_movielens
from recsys_tutorial.evaluation import evaluate_ranking
from recsys_tutorial.models.sasrec import SASRec, SASRecConfig
from recsys_tutorial.splits import encode_ids, seen_items, temporal_leave_one_out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field in dataclasses.fields(SASRecConfig):
        default = field.default
        kind = (lambda s: s.lower() in ("1", "true", "yes")) if isinstance(default, bool) else type(default)
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=default)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (CI has 2 cores)")
    args = vars(parser.parse_args(argv))
    torch.set_num_threads(args.pop("threads"))
    config = SASRecConfig(**args)
    device = rt.setup(config.seed)

    encoded, _, _ = encode_ids(load_movielens("100k").ratings)
    split = temporal_leave_one_out(encoded)
    model = SASRec(config, progress=False).fit(split.train, split.n_users, split.n_items, valid=split.valid)
    exclude = seen_items(pd.concat([split.train, split.valid]), split.n_users, split.n_items)
    test = evaluate_ranking(model.score, split.test, exclude)
    history = model.history_
    result = {
        "benchmark": "sasrec_epoch",
        "config": dataclasses.asdict(config),
        "epochs_run": len(history.train_loss),
        "best_epoch": history.best_epoch,
        "train_seconds": round(history.seconds, 2),
        "seconds_per_epoch": round(history.seconds / len(history.train_loss), 3),
        "valid_ndcg10": round(history.best_valid, 4),
        "valid_curve": [round(v, 4) for v in history.valid],
        "test_hr10": round(test["HR@10"], 4),
        "test_ndcg10": round(test["NDCG@10"], 4),
        "parameters": model.n_parameters(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "machine": f"{os.cpu_count()}-core {platform.machine()}, torch {torch.__version__}",
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
