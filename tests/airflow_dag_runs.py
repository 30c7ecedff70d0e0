"""Two runs of the nightly DAG with Airflow's in-process test runner, for tests/test_airflow_dag.py.

Run by .venv-airflow's Python (Airflow cannot share .venv): first a good model on MovieLens-100K, which the
gate lets through; then a model that scores at random, served under the same name, which the gate must stop.
A copy of the store is taken between the runs, so the test can check that the second run changed nothing.
Writes a JSON report: each run's result (states, stage summaries), the graph read off the real DAG, timings.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path

from pipeline_fixtures import RANDOM, register_test_models

from recsys_tutorial.serving import dag as nightly


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", required=True, help="Airflow's home (metadata database, logs)")
    parser.add_argument("--db", required=True, help="the recommendation store (SQLite)")
    parser.add_argument("--runs", required=True, help="run_root: the run folders")
    parser.add_argument("--out", required=True, help="the JSON report")
    parser.add_argument("--model", default="most-popular", help="the good model of the first run")
    args = parser.parse_args()
    register_test_models()  # in this process: dag.test() runs every task here
    start = time.perf_counter()
    nightly.prepare_airflow(args.home)
    report = {"setup_s": time.perf_counter() - start}
    conf = {"data": "ml-100k", "name": "nightly", "db": args.db, "run_root": args.runs, "k": 5}
    for key, model in (("first", args.model), ("second", RANDOM)):
        start = time.perf_counter()
        report[key] = nightly.run_test({**conf, "model": model}, args.home)
        report[key]["seconds"] = time.perf_counter() - start
        if key == "first":  # the store as the first run left it, for the test to compare with
            with sqlite3.connect(args.db) as source, sqlite3.connect(f"{args.db}.after-first") as copy:
                source.backup(copy)
    report["graph"] = nightly.graph_text(nightly.build_dag())
    report["dot"] = nightly.graph_dot(nightly.build_dag())
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
