"""The nightly pipeline as an Apache Airflow DAG: one task per stage; a refused gate fails and keeps the old lists.

::

    ingest ──► train ──► evaluate ──► gate ──► top_k ──► publish

Each task runs one stage of :mod:`recsys_tutorial.serving.pipeline` on the run's own folder
(``<run_root>/<run id>``) and returns the stage's JSON summary, which Airflow keeps as XCom and passes to the
next task. When the new model's validation NDCG@10 falls more than ``gate_margin`` below the served model's,
the gate task fails without retrying: top_k and publish never run, the store keeps the old lists, and a failed
run is what the people on call see. Bad input (an unknown model, a malformed log) fails its task at once too;
other errors (a locked database, a lost connection) are retried.

Airflow lives in its own environment, ``.venv-airflow`` (``make airflow``): it caps FastAPI below the version
``.venv`` serves the API with, so the two cannot share one environment. To schedule the DAG, put a file in your
Airflow's dags folder::

    # Airflow DAG file: the recsys-tutorial nightly job
    from recsys_tutorial.serving.dag import build_dag

    dag = build_dag()

and trigger runs with parameters, e.g. ``airflow dags trigger recsys_nightly --conf '{"model": "implicit-als"}'``.
Without a scheduler, one run in this process with Airflow's own test runner (``dag.test()``)::

    .venv-airflow/bin/python -m recsys_tutorial.serving.dag test --model most-popular --db data/recommendations.sqlite
    python -m recsys_tutorial.serving.dag show          # the graph as text (no Airflow needed); --dot for Graphviz

This module imports neither Airflow nor torch until a DAG is built or a task runs, so parsing the DAG file
stays fast and the graph can be shown from the main environment.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

__all__ = [
    "DAG_ID", "SCHEDULE", "TASKS", "PARAMS", "build_dag", "graph_text", "graph_dot", "prepare_airflow", "run_test",
    "main",
]  # fmt: skip

DAG_ID = "recsys_nightly"
SCHEDULE = "0 3 * * *"  # every night at 03:00 UTC, when few users are online

# task id -> (the pipeline's stage function, what it does); in order, each task feeds the next.
TASKS = {
    "ingest": ("ingest", "load and validate the interactions, encode ids, hold out each user's last item"),
    "train": ("train", "fit with the held-out items as validation, then refit on all interactions"),
    "evaluate": ("evaluate", "validation NDCG@10: full ranking, each user's seen items excluded"),
    "gate": ("gate", "fail, keeping the served lists, if NDCG@10 drops more than gate_margin"),
    "top_k": ("compute_top_k", "every user's top-K unseen items (per time of day for context models)"),
    "publish": ("publish", "item details, histories, then lists + metrics in one transaction"),
}

# name -> (default, JSON-schema type, description): the DAG's params, overridden per run by its configuration.
PARAMS = {
    "data": ("ml-100k", "string", "ml-100k, ml-1m, or the path of an interaction log (CSV, TSV, Parquet, ...)"),
    "loader": ({}, "object", "load_interactions options for a log, e.g. {'user': 'customer', 'sep': ';'}"),
    "model": ("context-popularity", "string", "a model registered in recsys_tutorial.serving.pipeline.MODELS"),
    "name": (None, ["null", "string"], "serve the lists under this name (default: the model's)"),
    "db": (None, ["null", "string"], "SQLite path or postgresql:// URL (default: $RECSYS_TUTORIAL_DB, else data/)"),
    "k": (10, "integer", "items per stored list"),
    # The same default as pipeline.DEFAULT_GATE_MARGIN (a test keeps them equal): importing the pipeline here
    # would import torch whenever Airflow parses the DAG file.
    "gate_margin": (0.01, "number", "refuse to publish when validation NDCG@10 drops more than this"),
    "batch_size": (None, ["null", "integer"], "users scored at once (default: what fits the memory budget)"),
    "seed": (0, "integer", "seeds Python, NumPy and torch before training"),
    "run_root": (None, ["null", "string"], "folder of the run folders (default: data/runs)"),
}


def _run_dir(params: dict, run_id: str) -> Path:
    """``<run_root>/<run id>``, the run id made safe as a folder name (Airflow's contain ':' and '+')."""
    if params.get("run_root"):
        root = Path(params["run_root"])
    else:
        from ..data import data_dir

        root = Path(data_dir()) / "runs"
    return root / re.sub(r"[^A-Za-z0-9._-]", "_", run_id)


def _stage(name: str, *args, **kwargs):
    """Run one pipeline stage in a task; bad input fails the task at once, since retrying cannot fix it."""
    from airflow.sdk.exceptions import AirflowFailException

    from . import pipeline

    try:
        return getattr(pipeline, name)(*args, **kwargs)
    except ValueError as err:
        raise AirflowFailException(f"{name}: {err}") from err


def _gate(run_dir: str, db, name, margin) -> dict:
    """The gate task's work: the decision, or a failure that names both numbers and the margin."""
    from airflow.sdk.exceptions import AirflowFailException

    decision = _stage("gate", run_dir, db, name, margin)
    if not decision["passed"]:
        raise AirflowFailException(f"gate: {decision['reason']}")
    return decision


def build_dag(dag_id: str = DAG_ID, schedule: str | None = SCHEDULE, retries: int = 1):
    """The nightly DAG: ``ingest >> train >> evaluate >> gate >> top_k >> publish``, parameters :data:`PARAMS`.

    ``retries`` applies to failures other than bad input and a refused gate (which fail at once). At most
    one run at a time: two runs would race to refresh the same lists.
    """
    try:
        from airflow.sdk import Param, dag, task
    except ImportError as err:
        raise ImportError(
            "the DAG needs Apache Airflow 3, which has its own environment: run `make airflow`, then use "
            ".venv-airflow/bin/python"
        ) from err

    params = {key: Param(default, type=kind, description=text) for key, (default, kind, text) in PARAMS.items()}

    @dag(
        dag_id=dag_id, schedule=schedule, start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), catchup=False,
        max_active_runs=1, params=params, tags=["recsys-tutorial"], doc_md=__doc__,
        default_args={"retries": retries, "retry_delay": dt.timedelta(minutes=5)},
    )  # fmt: skip
    def nightly():
        @task(task_id="ingest")
        def ingest(params=None, run_id=None) -> dict:
            return _stage("ingest", _run_dir(params, run_id), params["data"], **(params["loader"] or {}))

        @task(task_id="train")
        def train(upstream: dict, params=None) -> dict:
            return _stage("train", upstream["run_dir"], params["model"], params["seed"])

        @task(task_id="evaluate")
        def evaluate(upstream: dict) -> dict:
            return _stage("evaluate", upstream["run_dir"])

        @task(task_id="gate", retries=0)
        def gate(upstream: dict, params=None) -> dict:
            return _gate(upstream["run_dir"], params["db"], params["name"], params["gate_margin"])

        @task(task_id="top_k")
        def top_k(upstream: dict, params=None) -> dict:
            return _stage("compute_top_k", upstream["run_dir"], params["k"], params["batch_size"])

        @task(task_id="publish")
        def publish(upstream: dict, params=None) -> dict:
            return _stage("publish", upstream["run_dir"], params["db"], params["name"])

        publish(top_k(gate(evaluate(train(ingest())))))

    return nightly()


# ---------------------------------------------------------------------------------------------- the graph


def _edges(dag=None) -> list[tuple[str, str]]:
    """(upstream, downstream) task ids: of a built DAG, or the chain :data:`TASKS` describes."""
    if dag is None:
        ids = list(TASKS)
        return list(zip(ids, ids[1:], strict=False))
    order = {task: i for i, task in enumerate(TASKS)}  # the stages' order first, then by name
    edges = [(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids]
    return sorted(edges, key=lambda e: (order.get(e[0], len(order)), e))


def graph_text(dag=None) -> str:
    """The DAG as text: its chain of tasks, what each does and its parameters (``dag``: a built DAG, else TASKS).

    A notebook prints this without Airflow; from ``.venv-airflow``, ``graph_text(build_dag())`` reads the same
    graph off the real DAG object (a test checks that both agree).
    """
    edges = _edges(dag)
    after = dict(edges)
    if len(after) != len(edges) or len(set(after.values())) != len(edges):
        raise ValueError(f"graph_text draws a chain of tasks; this DAG branches: {edges}")
    (first,) = set(after) - set(after.values())
    chain = [first]
    while chain[-1] in after:
        chain.append(after[chain[-1]])
    width = max(map(len, chain))
    lines = [f"DAG {DAG_ID} (schedule {SCHEDULE!r}, one run at a time)", " ──► ".join(chain), ""]
    lines += [f"  {t:<{width}}  {TASKS[t][1] if t in TASKS else ''}".rstrip() for t in chain]
    defaults = ", ".join(f"{key}={default!r}" for key, (default, _, _) in PARAMS.items())
    return "\n".join([*lines, "", f"params: {defaults}"])


def graph_dot(dag=None) -> str:
    """The DAG in Graphviz's DOT language (``dot -Tsvg`` renders it); the gate is drawn as a diamond."""
    lines = [f"digraph {DAG_ID} {{", "  rankdir=LR;", '  node [shape=box, style=rounded, fontname="Helvetica"];']
    lines += ["  gate [shape=diamond];"] + [f"  {a} -> {b};" for a, b in _edges(dag)] + ["}"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- one test run


def prepare_airflow(home: str | Path, retries: int = 0) -> Path:
    """Point Airflow at ``home`` (its metadata database, config, logs) before Airflow is first imported.

    Writes the DAG file ``home/dags/recsys_nightly.py`` (``dag.test()`` syncs the DAG from a dags folder) and
    creates the metadata database once (``airflow db migrate``, a SQLite file in ``home``). Returns ``home``.
    """
    home = Path(home).resolve()
    if "airflow" in sys.modules and os.environ.get("AIRFLOW_HOME") != str(home):
        raise RuntimeError(f"Airflow is already imported with AIRFLOW_HOME={os.environ.get('AIRFLOW_HOME')!r}")
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    (dags / f"{DAG_ID}.py").write_text(
        "# Airflow DAG file: the recsys-tutorial nightly job\n"
        "from recsys_tutorial.serving.dag import build_dag\n\n"
        f"dag = build_dag(retries={int(retries)})\n"
    )
    os.environ.update(
        AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(dags), AIRFLOW__CORE__LOAD_EXAMPLES="False"
    )
    if not (home / "airflow.db").is_file():
        done = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return home


def run_test(conf: dict, home: str | Path | None = None, retries: int = 0) -> dict:
    """One run of the DAG in this process with Airflow's test runner ``dag.test(run_conf=conf)``.

    ``conf`` overrides :data:`PARAMS`; ``home`` is Airflow's home (default ``data/airflow``). Returns the run's
    state, each task's state, the run folder and the summaries its stages wrote (a stage that did not run
    has none).
    """
    unknown = sorted(set(conf) - set(PARAMS))
    if unknown:
        raise ValueError(f"unknown DAG parameter(s) {unknown}: choose from {list(PARAMS)}")
    if home is None:
        from ..data import data_dir

        home = Path(data_dir()) / "airflow"
    prepare_airflow(home, retries)
    run = build_dag(retries=retries).test(run_conf=conf)
    run_dir = _run_dir({key: conf.get(key, default) for key, (default, _, _) in PARAMS.items()}, run.run_id)
    files = {task: run_dir / f"{task}.json" for task in TASKS}
    return {
        "dag_id": DAG_ID, "run_id": run.run_id, "state": _state(run.state), "run_dir": str(run_dir),
        "tasks": {ti.task_id: _state(ti.state) for ti in run.get_task_instances()},
        "stages": {task: json.loads(path.read_text()) for task, path in files.items() if path.is_file()},
    }  # fmt: skip


def _state(state) -> str | None:
    """An Airflow state enum as its plain value ("success", "failed", "upstream_failed")."""
    return None if state is None else str(getattr(state, "value", state))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys_tutorial.serving.dag", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="print the graph (from the real DAG when Airflow is installed)")
    show.add_argument("--dot", action="store_true", help="Graphviz DOT instead of text")
    test = commands.add_parser("test", help="one run with Airflow's dag.test(), in this process")
    test.add_argument("--home", default=None, help="Airflow's home (default: data/airflow)")
    for key, (_, kind, text) in PARAMS.items():
        if key != "loader":
            number = {"integer": int, "number": float}.get(kind if isinstance(kind, str) else kind[-1], str)
            test.add_argument(f"--{key.replace('_', '-')}", dest=key, type=number, default=None, help=text)
    test.add_argument("--loader", default=None, help='load_interactions options as JSON, e.g. \'{"sep": ";"}\'')
    args = parser.parse_args(argv)
    if args.command == "show":
        try:
            dag = build_dag()
        except ImportError:
            dag = None  # the main environment: the same graph from TASKS
        print(graph_dot(dag) if args.dot else graph_text(dag))
        return 0
    conf = {key: getattr(args, key) for key in PARAMS if getattr(args, key) is not None}
    if args.loader:
        conf["loader"] = json.loads(args.loader)
    result = run_test(conf, args.home)
    print(json.dumps(result, indent=2, default=str))
    return 0 if result["state"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
