"""Benchmark the serving path on MovieLens-100K: batch top-K for all users, then API latency under load.

    python benchmarks/serving.py                                   # SQLite (temporary file), + $RECSYS_TUTORIAL_TEST_PG
    python benchmarks/serving.py --db /tmp/rec.sqlite --db postgresql://user:pw@127.0.0.1:5432/bench
    python benchmarks/serving.py --model most-popular --rate 400 --seconds 3

Prints one JSON line per measurement, each naming the machine: the top-K time, then for every store the
API's latency at ``--rate`` requests per second, idle and while another process refreshes the same model's
lists (as the batch pipeline does beside a serving API). Targets: top-K@10 for all users in <= 2 s on a
2-core CPU; API p99 < 20 ms at 200 req/s on loopback, refresh or not, with no errors. The load is bounded
(``--max-requests``, ``--seconds``) and goes to 127.0.0.1 only; the API runs in its own process. The
1-minute load average is printed with each line: timings taken on a busy machine are inflated.

A PostgreSQL URL is written to: the model's lists, the item details and the histories in that database
are replaced. The default SQLite store is a temporary file.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from recsys_tutorial.serving import top_k
from recsys_tutorial.serving.load import load_test
from recsys_tutorial.serving.pipeline import TRAINERS, load_ratings, to_store_frame
from recsys_tutorial.serving.server import ApiServer
from recsys_tutorial.serving.store import is_postgres_url, open_store, redact
from recsys_tutorial.utils import get_device


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "system": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "device": str(get_device())}  # fmt: skip


def emit(measurement: str, **fields) -> None:
    """One JSON line: the measurement, the machine and the load average right now."""
    line = {"benchmark": "serving", "measurement": measurement, "machine": machine(),
            "load_average_1min": round(os.getloadavg()[0], 2), **fields}  # fmt: skip
    print(json.dumps(line), flush=True)


def bench_top_k(model_name: str, k: int, batch_size: int, repeats: int):
    encoded, users, items, details = load_ratings("100k")
    model = TRAINERS[model_name](encoded, len(users), len(items))
    top_k(model, k=k, batch_size=batch_size)  # warm-up: first-call allocations and kernel selection
    runs = [top_k(model, k=k, batch_size=batch_size) for _ in range(repeats)]
    seconds = [r.seconds for r in runs]
    emit(
        "top_k", model=model_name, k=k, users=len(users), items=len(items),
        lists=int(runs[0].lists.groupby(["user", "context"]).ngroups), batch_size=batch_size,
        top_k_median_s=statistics.median(seconds), top_k_max_s=max(seconds),
        peak_batch_mb=runs[0].peak_batch_bytes / 2**20, device=runs[0].device,
        target_top_k_le_2s=statistics.median(seconds) <= 2.0,
    )  # fmt: skip
    return runs[0], users, items, details, encoded


def refresh_loop(db: str, model: str, lists, k: int, stop, count) -> None:
    """Refresh ``model`` with ``lists`` back to back until ``stop`` is set (its own process, like the pipeline)."""
    store = open_store(db)
    while not stop.is_set():
        store.refresh(model, lists, k=k)
        with count.get_lock():
            count.value += 1
    store.close()


def bench_api(db: str, model: str, lists, k: int, paths: list[str], args) -> None:
    """The bounded open-loop load on one store: idle, then with a refreshing process beside the API."""
    backend = "postgresql" if is_postgres_url(db) else "sqlite"
    with ApiServer(db) as server:
        load_test(server.url, paths, rate=args.rate, duration_s=1.0, max_requests=args.max_requests)  # warm-up
        for refreshing in (False, True):
            spawn = multiprocessing.get_context("spawn")
            stop, count = spawn.Event(), spawn.Value("i", 0)
            writer = spawn.Process(target=refresh_loop, args=(db, model, lists, k, stop, count), daemon=True)
            if refreshing:
                writer.start()
                while count.value == 0 and writer.is_alive():  # the first refresh also imports pandas: wait
                    time.sleep(0.05)
            before = count.value
            result = load_test(server.url, paths, args.rate, duration_s=args.seconds, max_requests=args.max_requests)
            refreshes = count.value - before
            if refreshing:
                stop.set()
                writer.join(timeout=120)
            summary = result.summary()
            emit(
                "api_load", backend=backend, db=redact(db), model=model, refreshing=refreshing,
                refreshes_during_load=refreshes, **summary,
                target_p99_lt_20ms=summary["p99_ms"] < 20.0, target_zero_errors=summary["errors"] == 0,
            )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="context-popularity", choices=sorted(TRAINERS))
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5, help="top-K timings (the median is reported)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (open loop)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measured load")
    parser.add_argument("--max-requests", type=int, default=2000, help="hard cap on requests per load")
    parser.add_argument(
        "--db", action="append", default=None,
        help="a SQLite file or postgresql:// URL; repeat for several (default: a temporary SQLite file, and "
        "$RECSYS_TUTORIAL_TEST_PG when set)",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))

    run, users, items, details, encoded = bench_top_k(args.model, args.k, args.batch_size, args.repeats)
    lists = to_store_frame(run.lists, users, items)
    history = encoded[["user_id", "item_id", "timestamp"]].rename(columns={"user_id": "user", "item_id": "item"})
    with tempfile.TemporaryDirectory() as tmp:
        dbs = args.db or [str(Path(tmp) / "recommendations.sqlite"), os.environ.get("RECSYS_TUTORIAL_TEST_PG")]
        if not all(dbs):
            print("no PostgreSQL URL: pass --db postgresql://... or set $RECSYS_TUTORIAL_TEST_PG", file=sys.stderr)
        for db in filter(None, dbs):
            store = open_store(db)
            store.write_items(details)
            store.write_history(history)
            store.refresh(args.model, lists, k=args.k, expected_users=users.ids.tolist())
            contexts = store.models()[args.model]["contexts"]
            store.close()
            paths = [
                f"/users/{u}/recommendations?model={args.model}&context={contexts[i % len(contexts)]}"
                for i, u in enumerate(users.ids.tolist())
            ]
            bench_api(db, args.model, lists, args.k, paths, args)


if __name__ == "__main__":
    main()
