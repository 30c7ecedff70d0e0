"""How training, evaluation and top-K grow with the catalogue: every model on planted data of several sizes.

Data: :func:`recsys_tutorial.data.catalogue.make_catalogue_data` (Zipf popularity, low-rank tastes, successor
items, time of day), temporal leave-one-out. For each size and model, one subprocess (so that its peak
memory is its own) fits with validation, evaluates the test items under full ranking (train and validation
items excluded) and makes every user's top-K, and prints one JSON line: fit seconds, seconds per epoch
(training + validation), peak resident memory (and the CUDA peak on a GPU), evaluation and top-K seconds
for all users, validation and test NDCG@10. Wall times come with CPU seconds, which a shared machine
inflates less. A final summary line gives, per model, the log-log slope of time against interactions
across sizes (1 = linear growth)::

    python benchmarks/scaling.py                                  # every model, the four default sizes
    python benchmarks/scaling.py --sizes ml100k,large --models sasrec-ce,sasrec-sampled --epochs 3
    python benchmarks/scaling.py --sizes 2000x3000x30000 --out /tmp/scaling.jsonl --device cpu

Sizes are ``USERSxITEMSxINTERACTIONS`` or a name in ``SIZES``. Targets on a quiet 2-core CPU at the
largest size: the transformer with the sampled loss at most 10 s per epoch including validation and 2 GB
peak memory, its validation NDCG@10 within 5% of the full softmax's at the same epochs; evaluation and
top-K of all 30,000 users at most 5 s each. Lines append to ``--out`` as they come.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIZES = {  # (users, items, interactions): MovieLens-100K's size up to a catalogue of 25,000 items
    "ml100k": (1_000, 1_700, 100_000),
    "small": (5_000, 5_000, 150_000),
    "medium": (15_000, 12_000, 225_000),
    "large": (30_000, 25_000, 300_000),
}
MODELS = ("most-popular", "ials", "cp", "tucker", "sasrec-ce", "sasrec-sampled")
RESULTS = Path(__file__).resolve().parent / "results"


def parse_size(text: str) -> tuple[int, int, int]:
    """``"ml100k"`` or ``"1000x1700x100000"`` -> (users, items, interactions)."""
    if text in SIZES:
        return SIZES[text]
    try:
        size = tuple(int(n) for n in text.lower().split("x"))
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) < 1:
        raise SystemExit(f"bad size {text!r}: write USERSxITEMSxINTERACTIONS (e.g. 1000x1700x100000) or {list(SIZES)}")
    return size


def make_model(name: str, args: argparse.Namespace, device):
    """The model ``name`` with the benchmark's epochs (sweeps for implicit ALS) on ``device``."""
    from recsys_tutorial import models as m

    CLICKS_ML100K, IMPLICIT_ALS_ML100K = m.CLICKS_ML100K, m.IMPLICIT_ALS_ML100K

    common = {"device": device, "progress": False}
    sasrec = {"epochs": args.epochs, "max_len": args.max_len, "batch_size": args.batch_size, "seed": args.seed}
    factories = {
        "most-popular": lambda: m.MostPopular(**common),
        "ials": lambda: m.ImplicitALS(IMPLICIT_ALS_ML100K, n_sweeps=args.epochs, seed=args.seed, **common),
        "cp": lambda: m.CPModel(CLICKS_ML100K, epochs=args.epochs, seed=args.seed, **common),
        "tucker": lambda: m.TuckerModel(CLICKS_ML100K, epochs=args.epochs, seed=args.seed, **common),
        "sasrec-ce": lambda: m.SASRec(loss="ce", **sasrec, **common),
        "sasrec-sampled": lambda: m.SASRec(
            loss="sampled",
            n_negatives=args.n_negatives,
            proposal_alpha=args.proposal_alpha,
            logq_correction=not args.no_logq_correction,
            **sasrec,
            **common,
        ),  # fmt: skip
    }
    return factories[name]()


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux), so the peak read later is the model's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """Peak resident memory since the last reset (VmHWM), else since the process started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class Timer:
    """Wall and CPU seconds of a ``with`` block; waits for queued GPU work at both ends."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        _sync(self.device)
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        _sync(self.device)
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def measure(name: str, size: tuple[int, int, int], args: argparse.Namespace) -> dict:
    """Fit, evaluate and top-K one model on one size, in this process; returns its JSON record."""
    import pandas as pd
    import torch

    from recsys_tutorial.data.catalogue import make_catalogue_data
    from recsys_tutorial.evaluation import evaluate_ranking
    from recsys_tutorial.serving.topk import top_k
    from recsys_tutorial.splits import encode_ids, seen_items, temporal_leave_one_out

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with Timer(device) as data_time:
        data = make_catalogue_data(n_users=size[0], n_items=size[1], n_interactions=size[2], seed=args.seed)
        encoded, users, items = encode_ids(data.interactions)
        split = temporal_leave_one_out(encoded)
    exclude = seen_items(pd.concat([split.train, split.valid]), split.n_users, split.n_items)
    model = make_model(name, args, device)
    gc.collect()
    own_peak = _reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sizes = (split.n_users, split.n_items) + ((len(data.contexts),) if model.context_aware else ())
    with Timer(device) as fit:
        model.fit(split.train, *sizes, valid=split.valid)
    history = model.history_
    valid = history.best_valid if history.valid else evaluate_ranking(model, split.valid, model.seen_)["NDCG@10"]
    context = "context_id" if model.uses_context else None
    with Timer(device) as evaluation:
        test = evaluate_ranking(model, split.test, exclude, context=context)["NDCG@10"]
    with Timer(device) as ranking:
        lists = top_k(model, k=10)
    return {
        "benchmark": "scaling", "model": name, "size": list(size), "n_users": split.n_users,
        "n_items": split.n_items, "interactions": len(encoded), "train_interactions": len(split.train),
        "config": dataclasses.asdict(model.config), "epochs_run": history.epochs, "best_epoch": history.best_epoch,
        "fit_seconds": round(fit.wall, 3), "fit_cpu_seconds": round(fit.cpu, 3),
        "seconds_per_epoch": round(fit.wall / max(1, history.epochs), 3),
        "cpu_seconds_per_epoch": round(fit.cpu / max(1, history.epochs), 3),
        "eval_seconds": round(evaluation.wall, 3), "eval_cpu_seconds": round(evaluation.cpu, 3),
        "topk_seconds": round(ranking.wall, 3), "topk_cpu_seconds": round(ranking.cpu, 3),
        "topk_lists": int(lists.lists.groupby(["user", "context"]).ngroups),
        "valid_ndcg10": round(float(valid), 4), "valid_curve": [round(v, 4) for v in history.valid],
        "test_ndcg10": round(float(test), 4),
        "peak_rss_mb": round(_peak_rss_mb(), 1), "peak_rss_scope": "model" if own_peak else "process",
        "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cuda_peak_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None,
        "data_seconds": round(data_time.wall, 3), "parameters": model.n_parameters(), "device": str(device),
        "threads": torch.get_num_threads(), **machine(),
    }  # fmt: skip


def machine() -> dict:
    """Cores, architecture, GPU, torch, date and load: enough to tell recorded runs apart."""
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return {
        "machine": f"{os.cpu_count()}-core {platform.machine()}, {gpu}, torch {torch.__version__}",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def machine_slug() -> str:
    """``2core_cpu`` or the GPU's model (``h100``): the default results file's suffix."""
    import torch

    if torch.cuda.is_available():
        words = [w for w in torch.cuda.get_device_name().lower().split() if any(c.isdigit() for c in w)]
        return words[0] if words else "gpu"
    return f"{os.cpu_count()}core_cpu"


def growth_exponents(records: list[dict], key: str = "seconds_per_epoch") -> dict[str, float | None]:
    """Per model, the least-squares slope of log(``key``) against log(interactions) across sizes.

    A slope of 1 means time grows in proportion to the interactions; None with fewer than two sizes.
    """
    out = {}
    for model in dict.fromkeys(r["model"] for r in records):
        points = [(r["interactions"], r[key]) for r in records if r["model"] == model and r.get(key)]
        if len({x for x, _ in points}) < 2:
            out[model] = None  # valid JSON, unlike NaN
            continue
        x, y = np.log([p[0] for p in points]), np.log([p[1] for p in points])
        out[model] = round(float(np.polyfit(x, y, 1)[0]), 3)
    return out


def _run_one(name: str, size: str, args: argparse.Namespace, passthrough: list[str]) -> dict:
    """One (model, size) measurement in a fresh subprocess; an error becomes a record saying so."""
    command = [sys.executable, __file__, "--one", f"{name}:{size}", *passthrough]
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode:
        tail = done.stderr.strip().splitlines()[-1:] if done.stderr.strip() else [f"exit code {done.returncode}"]
        return {"benchmark": "scaling", "model": name, "size": list(parse_size(size)), "error": tail}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--sizes", default=",".join(SIZES), help=f"comma-separated USERSxITEMSxINTERACTIONS or {list(SIZES)}"
    )
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {list(MODELS)}")
    p.add_argument("--epochs", type=int, default=5, help="epochs (implicit ALS: sweeps) of every iterative model")
    p.add_argument("--out", default=None, help="JSON lines file (default: benchmarks/results/scaling_<machine>.jsonl)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: recsys_tutorial.utils.get_device())")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    p.add_argument("--max-len", type=int, default=50, help="transformer window T (SASRecConfig.max_len)")
    p.add_argument("--batch-size", type=int, default=64, help="transformer windows per step")
    p.add_argument("--n-negatives", type=int, default=1024, help="sampled softmax negatives per batch")
    p.add_argument("--proposal-alpha", type=float, default=0.75, help="sampled softmax proposal (count + 1) ** alpha")
    p.add_argument("--no-logq-correction", action="store_true", help="sampled softmax without the log-Q correction")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=3600, help="seconds per (model, size) before giving up")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: model:size, measured in this process
    args = p.parse_args(argv)
    if args.device is None:
        from recsys_tutorial.utils import get_device

        args.device = str(get_device())
    if args.one:
        name, size = args.one.split(":")
        print(json.dumps(measure(name, parse_size(size), args)), flush=True)
        return 0
    models, sizes = args.models.split(","), args.sizes.split(",")
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}: choose from {list(MODELS)}")
    sizes = sorted(sizes, key=lambda s: parse_size(s)[2])  # smallest first: a slow model shows early
    out = Path(args.out) if args.out else RESULTS / f"scaling_{machine_slug()}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    skip = ("one", "out", "sizes", "models", "no_logq_correction")
    passthrough = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in skip]
    passthrough += ["--no-logq-correction"] if args.no_logq_correction else []
    records = []
    for size in sizes:
        for name in models:
            record = _run_one(name, size, args, passthrough)
            records.append(record)
            _emit(record, out)
    ok = [r for r in records if "error" not in r]
    summary = {
        "benchmark": "scaling_summary", "sizes": [parse_size(s) for s in sizes], "epochs": args.epochs,
        "exponent_seconds_per_epoch": growth_exponents(ok, "seconds_per_epoch"),
        "exponent_cpu_seconds_per_epoch": growth_exponents(ok, "cpu_seconds_per_epoch"),
        "exponent_eval_seconds": growth_exponents(ok, "eval_seconds"),
        "exponent_topk_seconds": growth_exponents(ok, "topk_seconds"), **machine(),
    }  # fmt: skip
    _emit(summary, out)
    return 0


def _emit(record: dict, out: Path) -> None:
    """Print one JSON line and append it to ``out``."""
    line = json.dumps(record)
    print(line, flush=True)
    with out.open("a") as f:
        f.write(line + "\n")


if __name__ == "__main__":
    sys.exit(main())
