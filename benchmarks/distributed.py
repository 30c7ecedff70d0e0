"""Benchmark data-parallel training: seconds per training epoch with 1 vs 2 processes, and the metrics.

Each run is launched with ``torchrun`` (``python -m torch.distributed.run --standalone``): one process, or
two that each train on half of every global minibatch and all-reduce the gradients (gloo on the CPU, NCCL
with one GPU per process), so the time per epoch includes the communication. Both train the same model
on the same planted data with the same global batch and seed, early-stop on the validation item, and are
scored on the test item (temporal leave-one-out, full ranking, seen items excluded). One JSON line per
run, then one summary line per process count::

    python benchmarks/distributed.py --model sasrec --n-users 20000 --n-items 2000 --seeds 0 1 2
    python benchmarks/distributed.py --model cp --n-users 20000 --n-items 2000 --set epochs=10
    python benchmarks/distributed.py --model sasrec --n-users 200 --set epochs=2 --seeds 0   # a quick check
    # the largest size of benchmarks/scaling.py, with the large-catalogue loss:
    python benchmarks/distributed.py --data catalogue --n-users 30000 --n-items 25000 --n-interactions 300000 \
        --set loss=sampled --set epochs=3 --seeds 0 --out benchmarks/results/distributed_2core_cpu.jsonl

On a CPU each process gets ``cores / processes`` threads (``--threads`` overrides), so 1 and 2 processes use
the same cores. Timings are only meaningful on a quiet machine: the 1-minute load average is recorded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recsys_tutorial import distributed
from recsys_tutorial.evaluation import evaluate_ranking
from recsys_tutorial.splits import seen_items, temporal_leave_one_out
from recsys_tutorial.stats import paired_interval, verdict
from recsys_tutorial.training import rank, world_size


def machine() -> str:
    """The hardware a timing comes from."""
    cpu = f"{os.cpu_count()}-core {platform.machine()} ({platform.processor() or platform.system()})"
    gpu = f", {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}{gpu}, torch {torch.__version__}"


def worker(args: argparse.Namespace) -> None:
    """One rank: fit with early stopping, evaluate on the test item, rank 0 prints a JSON line."""
    device = distributed.init()
    torch.set_num_threads(args.threads)
    encoded, _, _, _ = distributed.load_data(args.data, args.n_users, args.n_items, args.data_seed, args.n_interactions)
    split = temporal_leave_one_out(encoded)
    overrides = {**distributed.config_overrides(args.model, args.set), "seed": args.seed}
    model = distributed.build_model(args.model, args.data, overrides, device)
    sizes = (split.n_users, split.n_items) + ((4,) if model.context_aware else ())
    model.fit(split.train, *sizes, valid=split.valid)
    history = model.history_
    if rank() == 0:
        exclude = seen_items(pd.concat([split.train, split.valid]), split.n_users, split.n_items)
        test = evaluate_ranking(model, split.test, exclude, context="context_id")
        print(json.dumps({
            "benchmark": "distributed", "model": args.model, "processes": world_size(), "seed": args.seed,
            "n_users": split.n_users, "n_items": split.n_items, "train_interactions": len(split.train),
            "config": dataclasses.asdict(model.config), "epochs_run": history.epochs,
            "best_epoch": history.best_epoch, "seconds_per_epoch": round(float(np.mean(history.epoch_seconds)), 4),
            "first_epoch_s": round(history.epoch_seconds[0], 4), "fit_s": round(history.seconds, 3),
            f"valid_{history.metric}": round(history.best_valid, 4), "test_ndcg10": round(test["NDCG@10"], 4),
            "test_hr10": round(test["HR@10"], 4), "device": str(device), "threads_per_process": args.threads,
            "machine": machine(), "load_average_1min": round(os.getloadavg()[0], 2),
        }), flush=True)  # fmt: skip
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def run(args: argparse.Namespace, processes: int, seed: int) -> dict:
    """Launch one run on ``processes`` ranks; its JSON line."""
    threads = args.threads or max(1, (os.cpu_count() or 1) // processes)
    data = [
        "--data",
        args.data,
        "--n-users",
        str(args.n_users),
        "--n-items",
        str(args.n_items),
        "--n-interactions",
        str(args.n_interactions),
        "--data-seed",
        str(args.data_seed),
    ]
    overrides = [a for pair in args.set for a in ("--set", pair)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               str(Path(__file__).resolve()), "--worker", "--model", args.model, "--seed", str(seed),
               "--threads", str(threads), *data, *overrides]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(runs: list[dict], processes: list[int]) -> list[dict]:
    """Per process count: mean seconds per epoch, speed-up over the first count, metric difference in seed noise."""
    base = [r for r in runs if r["processes"] == processes[0]]
    out = []
    for n in processes:
        mine = [r for r in runs if r["processes"] == n]
        line = {
            "benchmark": "distributed_summary", "model": mine[0]["model"], "processes": n, "seeds": len(mine),
            "seconds_per_epoch": round(float(np.mean([r["seconds_per_epoch"] for r in mine])), 4),
            "test_ndcg10_mean": round(float(np.mean([r["test_ndcg10"] for r in mine])), 4),
        }  # fmt: skip
        line["speedup"] = round(np.mean([r["seconds_per_epoch"] for r in base]) / line["seconds_per_epoch"], 3)
        if n != processes[0] and len(mine) >= 2:
            diff = paired_interval([r["test_ndcg10"] for r in mine], [r["test_ndcg10"] for r in base])
            line["ndcg10_difference"] = verdict(diff, f"{n} processes", f"{processes[0]}", what="test NDCG@10")
        out.append(line)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=distributed.MODELS, default="sasrec")
    parser.add_argument(
        "--data",
        choices=["planted", "catalogue"],
        default="planted",
        help="planted (each user 40 clicks) or catalogue (large, sparse, long-tailed)",
    )
    parser.add_argument("--n-users", type=int, default=20000)
    parser.add_argument("--n-items", type=int, default=2000)
    parser.add_argument("--n-interactions", type=int, default=0, help="catalogue draws (default: 10 per user)")
    parser.add_argument("--out", type=Path, default=None, help="also append the JSON lines to this file")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (paired by seed)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="config override")
    parser.add_argument("--threads", type=int, default=0, help="per process (default: cores / processes)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    runs = []
    for seed in args.seeds:
        for n in args.processes:
            runs.append(run(args, n, seed))
            emit(runs[-1], args.out)
    for line in summary(runs, args.processes):
        emit(line, args.out)


def emit(line: dict, out: Path | None) -> None:
    """Print one JSON line (and append it to ``out``)."""
    text = json.dumps(line)
    print(text, flush=True)
    if out is not None:
        with out.open("a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
