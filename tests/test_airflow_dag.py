"""The nightly DAG run by Airflow itself: end to end on MovieLens-100K, then stopped by the gate.

Airflow has its own environment (.venv-airflow, `make airflow`; it caps FastAPI below .venv's), so the runs
happen in a subprocess with its Python (tests/airflow_dag_runs.py, Airflow's in-process ``dag.test()``), and
this test reads what they left: the task states, the stage summaries and the store. Without .venv-airflow the
runs are skipped, except under CI, where they must run. ``$RECSYS_TUTORIAL_AIRFLOW_PYTHON`` names another
interpreter with Airflow installed.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from recsys_tutorial.serving import dag as nightly
from recsys_tutorial.serving import pipeline
from recsys_tutorial.serving.store import open_store

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_PYTHON = Path(os.environ.get("RECSYS_TUTORIAL_AIRFLOW_PYTHON") or ROOT / ".venv-airflow" / "bin" / "python")
STAGES = ["ingest", "train", "evaluate", "gate", "top_k", "publish"]


def rows(db) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(
            'SELECT model, context, "user", rank, item, score, generated_at FROM recommendations '
            'ORDER BY model, context, "user", rank'
        ).fetchall()


def models_table(db) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT * FROM models ORDER BY model").fetchall()


@pytest.fixture(scope="module")
def dag_runs(tmp_path_factory, ml100k_dir):
    if not AIRFLOW_PYTHON.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the DAG: {AIRFLOW_PYTHON} is missing (.ci/run makes it with `make airflow`)")
        pytest.skip(f"Airflow's environment {AIRFLOW_PYTHON} is missing: run `make airflow`")
    tmp = tmp_path_factory.mktemp("airflow")
    db, report = tmp / "rec.sqlite", tmp / "report.json"
    env = {
        **os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH")])),
    }  # fmt: skip
    command = [str(AIRFLOW_PYTHON), str(ROOT / "tests" / "airflow_dag_runs.py"), "--home", str(tmp / "home")]
    command += ["--db", str(db), "--runs", str(tmp / "runs"), "--out", str(report)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        pytest.fail(f"the DAG runs failed (exit {done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    result = json.loads(report.read_text())
    print(f"Airflow setup {result['setup_s']:.1f} s, runs {result['first']['seconds']:.1f} s and "
          f"{result['second']['seconds']:.1f} s")  # fmt: skip
    return result, db


def test_dag_publishes_movielens_end_to_end(dag_runs):
    result, db = dag_runs
    first = result["first"]
    assert first["state"] == "success" and first["tasks"] == dict.fromkeys(STAGES, "success")
    assert list(first["stages"]) == STAGES
    published = first["stages"]["publish"]
    assert published["name"] == "nightly" and published["users"] == 943 and published["rows"] == 943 * 5
    served = open_store(db).models()["nightly"]
    assert served["metrics"] == pytest.approx(first["stages"]["evaluate"]["metrics"])
    assert served["generated_at"] == published["generated_at"] and served["k"] == 5


def test_gate_task_fails_and_the_store_keeps_the_lists(dag_runs):
    result, db = dag_runs
    second = result["second"]
    assert second["state"] == "failed"
    assert second["tasks"] == {
        "ingest": "success", "train": "success", "evaluate": "success", "gate": "failed",
        "top_k": "upstream_failed", "publish": "upstream_failed",
    }  # fmt: skip
    decision = second["stages"]["gate"]
    assert not decision["passed"] and decision["served"] == pytest.approx(
        result["first"]["stages"]["evaluate"]["metrics"][pipeline.GATE_METRIC]
    )
    assert decision["new"] < decision["served"] - decision["margin"]
    before = f"{db}.after-first"
    assert rows(db) == rows(before) and len(rows(db)) == 943 * 5  # every list, score and stamp as published
    assert models_table(db) == models_table(before)  # and the metrics stored with them


def test_the_real_dag_has_the_graph_notebooks_show(dag_runs):
    result, _ = dag_runs
    assert result["graph"] == nightly.graph_text()  # read off Airflow's DAG object == drawn from TASKS
    assert result["dot"] == nightly.graph_dot()


# ---------------------------------------------------------------- without Airflow


def test_tasks_call_the_pipeline_stages_in_order():
    assert [getattr(pipeline, stage).__name__ for stage, _ in nightly.TASKS.values()] == [
        f.__name__ for f in pipeline.STAGES
    ]
    assert nightly.PARAMS["gate_margin"][0] == pipeline.DEFAULT_GATE_MARGIN
    assert set(inspect.signature(pipeline.run_pipeline).parameters) >= set(nightly.PARAMS) - {"run_root"}


def test_graph_text_and_dot_need_no_airflow():
    text = nightly.graph_text()
    assert "ingest ──► train ──► evaluate ──► gate ──► top_k ──► publish" in text and "gate_margin=0.01" in text
    assert "gate [shape=diamond];" in nightly.graph_dot() and "  evaluate -> gate;" in nightly.graph_dot()
    if importlib.util.find_spec("airflow") is None:  # the main environment: a message that says where Airflow is
        with pytest.raises(ImportError, match="make airflow"):
            nightly.build_dag()


def test_run_dirs_are_safe_folder_names(tmp_path):
    run_dir = nightly._run_dir({"run_root": str(tmp_path)}, "manual__2024-01-01T03:00:00+00:00")
    assert run_dir == tmp_path / "manual__2024-01-01T03_00_00_00_00"
    with pytest.raises(ValueError, match="unknown DAG parameter"):
        nightly.run_test({"modle": "cp"})
