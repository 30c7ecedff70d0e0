"""Validation sweep behind ``IMPLICIT_ALS_ML100K``: implicit ALS on ML-100K, one JSON line per configuration.

Each configuration is fitted on the temporal leave-one-out training part and scored by NDCG@10 on the
*validation* items (full ranking, training items excluded); the test items are never read. The recorded run
is ``benchmarks/results/implicit_als_validation_sweep_2core_cpu.jsonl``::

    OMP_NUM_THREADS=1 python benchmarks/implicit_als_sweep.py \
        --out benchmarks/results/implicit_als_validation_sweep_2core_cpu.jsonl
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import time
from pathlib import Path

import torch

from recsys_tutorial.data import load_movielens
from recsys_tutorial.evaluation import evaluate_ranking
from recsys_tutorial.models import ImplicitALS
from recsys_tutorial.splits import encode_ids, seen_items, temporal_leave_one_out

GRID = {"rank": (16, 32, 64), "unobserved_weight": (0.3, 1.0, 3.0, 10.0), "reg": (0.0005, 0.002, 0.005, 0.02)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="append JSON lines here (and print them)")
    args = parser.parse_args(argv)
    encoded, _, _ = encode_ids(load_movielens("100k").ratings)
    split = temporal_leave_one_out(encoded)
    exclude = seen_items(split.train, split.n_users, split.n_items)
    machine = f"{os.cpu_count()}-core {platform.machine()}, torch {torch.__version__}"
    for values in itertools.product(*GRID.values()):
        config = dict(zip(GRID, values, strict=True))
        start = time.perf_counter()
        model = ImplicitALS(**config, progress=False).fit(split.train, split.n_users, split.n_items)
        seconds = time.perf_counter() - start
        valid = evaluate_ranking(model, split.valid, exclude)
        line = json.dumps({
            "benchmark": "implicit_als_validation_sweep", "config": config, "valid_ndcg10": round(valid["NDCG@10"], 5),
            "valid_hr10": round(valid["HR@10"], 5), "fit_seconds": round(seconds, 3), "machine": machine,
            "date": dt.date.today().isoformat(),
        })  # fmt: skip
        print(line, flush=True)
        if args.out is not None:
            with args.out.open("a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
