"""Validation sweep of the transformer's hyperparameters: one ``sasrec_epoch.py`` JSON line per run.

Selection uses the validation NDCG@10 (``valid_ndcg10``) averaged over seeds, never the test columns.
Runs go in parallel subprocesses (one torch thread each), so per-run seconds are not timings to report;
time a chosen configuration alone with ``benchmarks/sasrec_epoch.py``. The recorded sweep behind the
defaults of ``SASRecConfig`` is ``benchmarks/results/sasrec_validation_sweep_h100.jsonl``::

    python benchmarks/sasrec_sweep.py --out sweep.jsonl --parallel 8
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

GRID = {"dim": (32, 64), "max_len": (50, 100, 200), "dropout": (0.2, 0.5), "lr": (5e-3, 2e-3)}
FIXED = {"patience": 5, "epochs": 40}
SEEDS = (0, 1, 2)
EPOCH_SCRIPT = Path(__file__).with_name("sasrec_epoch.py")


def run_one(config: dict, out: Path) -> None:
    args = [sys.executable, str(EPOCH_SCRIPT), "--threads", "1"]
    for key, value in config.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(args, capture_output=True, text=True)
    line = (
        done.stdout.strip().splitlines()[-1]
        if done.returncode == 0
        else json.dumps({"config": config, "error": done.stderr[-500:]})
    )
    with out.open("a") as f:  # one short line per run: appends from threads do not interleave
        f.write(line + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args(argv)
    configs = [
        {**dict(zip(GRID, values, strict=True)), **FIXED, "seed": seed}
        for values in itertools.product(*GRID.values())
        for seed in SEEDS
    ]
    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(lambda c: run_one(c, args.out), configs))


if __name__ == "__main__":
    main()
