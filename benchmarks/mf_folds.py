"""Our rating models on ml-100k's five canonical folds under the nested protocol: one JSON line per fold and model.

For each fold k, every hyperparameter is chosen on a 10% validation share carved from ``u{k}.base`` alone
(``recsys_tutorial.splits.random_holdout``, seed 0); each family's choice is refitted on all of ``u{k}.base``
and scored once on ``u{k}.test`` (``recsys_tutorial.tuning.nested_folds``). Each line holds the fold, the
model, its chosen hyperparameters, validation RMSE, test RMSE and MAE (predictions clipped to 1..5), fit
seconds, whether the model was the fold's validation choice among ours, the machine and the date. The
recorded file was written by::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/mf_folds.py --threads 1 \\
        --out benchmarks/results/mf_folds_nested_2core_cpu.jsonl

Other options: ``--grid notebook`` runs the smaller grid proposed for notebook 01 (to time it);
``--models als bias_baseline --folds 1 2`` runs a subset. Fit seconds depend on how busy the machine is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import inspect
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
import torch

from recsys_tutorial.models import ALSMF, BiasBaseline, BiasedMF
from recsys_tutorial.models.mf import ALS_ML100K, BIASED_MF_ML100K, SAMPLED_ALS_ML100K
from recsys_tutorial.tuning import grid, nested_folds, summarize

SEED = 0
VALID_FRACTION = 0.1
NAMES = {  # JSON name -> the label notebook 01 prints
    "bias_baseline": "bias baseline", "als": "ALS", "als_sampled": "ALS, averaged draws",
    "biased_mf_sgd": "biased MF (SGD)",
}  # fmt: skip


def quiet_biased_mf(**params) -> BiasedMF:
    """BiasedMF from the ML-100K preset without a progress bar per fit (wherever this version takes ``progress``)."""
    if "progress" in inspect.signature(BiasedMF.__init__).parameters:
        return BiasedMF(BIASED_MF_ML100K, progress=False, **params)
    model = BiasedMF(BIASED_MF_ML100K, **params)
    model.fit = functools.partial(model.fit, progress=False)
    return model


def families(which: str = "full") -> dict:
    """Candidate grids per model: ``full`` for this benchmark, ``notebook`` for notebook 01's time budget."""
    if which == "notebook":  # ALS fits take about 0.5 s on 2 CPU cores: 3 + 3 candidates and 2 refits per fold
        return {
            "bias_baseline": grid(BiasBaseline, reg_user=[2.5, 5.0, 10.0], reg_item=[1.0, 2.5, 5.0, 10.0]),
            "als": grid(lambda **p: ALSMF(ALS_ML100K, **p), reg=[0.1, 0.15, 0.25]),
            "als_sampled": grid(lambda **p: ALSMF(SAMPLED_ALS_ML100K, **p), reg=[2.5, 5.0, 10.0]),
        }
    return {
        "bias_baseline": grid(BiasBaseline, reg_user=[1.0, 2.5, 5.0, 10.0, 20.0], reg_item=[1.0, 2.5, 5.0, 10.0, 20.0]),
        "als": grid(lambda **p: ALSMF(ALS_ML100K, **p), rank=[16, 32, 64], reg=[0.1, 0.15, 0.25]),
        "als_sampled": grid(lambda **p: ALSMF(SAMPLED_ALS_ML100K, **p), rank=[8, 16], reg=[2.5, 5.0, 10.0]),
        "biased_mf_sgd": grid(quiet_biased_mf, rank=[32, 64], reg=[0.05, 0.1, 0.2]),
    }


def machine() -> dict:
    """What a recorded line needs to be told apart from another machine's: cores, arch, GPU, versions, date."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return {
        "machine": f"{os.cpu_count()}-core {platform.machine()}, {gpu}, torch {torch.__version__}",
        "python": platform.python_version(), "torch_threads": torch.get_num_threads(),
        "date": dt.date.today().isoformat(), "load_average_1min": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def table_lines(table: pd.DataFrame, extra: dict) -> list[dict]:
    """One JSON-ready dict per row of a :func:`recsys_tutorial.tuning.nested_folds` table, plus ``extra``."""
    lines = []
    for row in table.to_dict("records"):
        for key in ("valid_rmse", "test_rmse", "test_mae"):
            row[key] = round(row[key], 5)
        for key in ("fit_seconds", "search_seconds"):
            row[key] = round(row[key], 2)
        row["rmse"], row["mae"] = row.pop("test_rmse"), row.pop("test_mae")  # the fields read_peer_results reads
        lines.append({"model": row.pop("family"), **row, **extra})
    return lines


def write_jsonl(lines: list[dict], path: Path) -> None:
    """Write ``lines`` atomically (a temporary file in the same folder, then a rename): never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", choices=["full", "notebook"], default="full")
    parser.add_argument("--models", nargs="+", choices=list(NAMES), help="default: every model of the grid")
    parser.add_argument("--folds", nargs="+", type=int, choices=range(1, 6), default=[1, 2, 3, 4, 5])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the course's 2-core target)")
    parser.add_argument("--out", type=Path, help="JSON-lines file to write (default: stdout only)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*[Ss]parse.*")  # torch's beta notices for sparse CSR
    chosen = {name: c for name, c in families(args.grid).items() if not args.models or name in args.models}
    start = time.perf_counter()
    table = nested_folds(chosen, args.folds, valid_fraction=VALID_FRACTION, seed=SEED)
    seconds = time.perf_counter() - start
    extra = {"benchmark": "mf_folds_nested", "grid": args.grid, "valid_fraction": VALID_FRACTION, "seed": SEED}
    lines = table_lines(table, {**extra, **machine()})
    for line in lines:
        print(json.dumps(line))
    if args.out:
        write_jsonl(lines, args.out)
    print(summarize(table.assign(family=table["family"].map(NAMES))).round(4).to_string())
    print(f"nested protocol: {seconds:.1f} s in all on this machine")
    return table


if __name__ == "__main__":
    main()
