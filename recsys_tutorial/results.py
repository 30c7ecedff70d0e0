"""Headline metrics: recorded by the notebooks, rendered into the README, never typed by hand.

Each notebook creates a :class:`Recorder` and logs its headline numbers. They go to a hidden partial file
(``notebooks/results/.<notebook>.json.partial``, or under ``$RECSYS_TUTORIAL_RESULTS``), which ``make results``
promotes to ``<notebook>.json`` only once the whole notebook has executed without error, adding its wall
time, the machine it ran on and the date. A notebook that fails half way leaves the committed file as it was.
Running a notebook by hand (JupyterLab, nbmake) therefore never changes the committed numbers::

    python -m recsys_tutorial.results run      # execute notebooks, promote their metrics, render README
    python -m recsys_tutorial.results run --quick   # the same with QUICK=1: record only the QUICK run times
    python -m recsys_tutorial.results readme   # re-render README from the JSON files only
    python -m recsys_tutorial.results check    # exit 1 if the README is out of date

Each notebook's numbers carry their own machine, so re-running one notebook elsewhere relabels only it.
The run times are also stamped into each notebook's opening cell, on its ``**Run time**:`` line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

from .series import BUILD, NOTEBOOKS, ROOT, execute, notebooks, title_and_summary

__all__ = [
    "Recorder",
    "results_dir",
    "partial_path",
    "promote",
    "render_readme",
    "run_notebooks",
    "stamp_runtime",
    "describe_machine",
]

README = ROOT / "README.md"
UNRECORDED = "an unrecorded machine"


def results_dir() -> Path:
    """``$RECSYS_TUTORIAL_RESULTS`` if set (tests use a scratch folder), else ``notebooks/results``."""
    return Path(os.environ.get("RECSYS_TUTORIAL_RESULTS", NOTEBOOKS / "results"))


def partial_path(directory: Path, notebook: str) -> Path:
    """The hidden file a running notebook logs to (git-ignored: ``notebooks/results/.*.json*``)."""
    return Path(directory) / f".{notebook}.json.partial"


def _write_json(path: Path, payload: dict) -> None:
    """Write atomically: a temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # never leave a half-written temporary file behind
        raise


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


class Recorder:
    """Collects one notebook's headline metrics in its partial file, written atomically after each log.

    The partial file becomes the notebook's results only through :func:`promote`, which ``make results``
    calls once the notebook has run to the end.

    >>> rec = Recorder("00_data_and_evaluation")                        # doctest: +SKIP
    >>> rec.log("most_popular_ndcg10", 0.0251, "Most-popular NDCG@10")  # doctest: +SKIP
    """

    def __init__(self, notebook: str, directory: str | os.PathLike | None = None):
        if not re.fullmatch(r"\d\d_[a-z0-9_]+", notebook):
            raise ValueError(f"notebook name {notebook!r} should look like '01_matrix_factorization'")
        self.path = partial_path(Path(directory or results_dir()), notebook)
        self.payload = {"notebook": notebook, "metrics": {}}

    def __repr__(self) -> str:
        committed = _read_json(NOTEBOOKS / "results" / f"{self.payload['notebook']}.json")
        full, quick = (committed.get(k) for k in ("runtime_s", "runtime_quick_s"))
        if not full:
            return f"Recorder({self.payload['notebook']!r}): run time not measured yet (make results)"
        when = f" on {committed['date']}" if committed.get("date") else ""
        machine = committed.get("machine", UNRECORDED)
        measured = f"last measured run: {_fmt_runtime(full)} (QUICK: {_fmt_runtime(quick)}) on {machine}{when}"
        return f"Recorder({self.payload['notebook']!r}): {measured}"

    def log(self, key: str, value: float, label: str, fmt: str = ".3f"):
        """Record ``value`` under ``key`` with a human label; returns ``value`` so a cell can show it."""
        from .utils import get_device

        self.payload["metrics"][key] = {"label": label, "value": float(value), "fmt": fmt}
        self.payload["device"] = str(get_device())
        _write_json(self.path, self.payload)
        return value


def describe_machine() -> str:
    """One line naming this machine: cores and architecture, GPU, Python and torch versions."""
    import torch

    cores = os.cpu_count()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (
        f"{cores}-core {platform.machine()} CPU, {gpu}, Python {platform.python_version()}, torch {torch.__version__}"
    )


def promote(
    notebook: str,
    directory: Path,
    runtime_s: float,
    quick: bool = False,
    source: Path | None = None,
    machine: str | None = None,
    date: str | None = None,
) -> Path:
    """Turn a notebook's completed run into its results file ``<directory>/<notebook>.json``.

    A full run replaces the metrics with those in the partial file (in ``source``, default ``directory``)
    and records ``runtime_s``, the machine and the date; the QUICK run time already recorded is kept.
    A QUICK run (``quick=True``) changes ``runtime_quick_s`` only: its metrics come from smaller sizes and
    are never the lesson's numbers. The partial file is removed either way.
    """
    out = Path(directory) / f"{notebook}.json"
    partial = partial_path(Path(source or directory), notebook)
    previous = _read_json(out)
    if quick:
        payload = previous or {"notebook": notebook, "metrics": {}}
        payload["runtime_quick_s"] = round(runtime_s, 1)
    else:
        logged = _read_json(partial)
        payload = {
            "notebook": notebook,
            "runtime_s": round(runtime_s, 1),
            "runtime_quick_s": previous.get("runtime_quick_s"),
            "machine": machine or describe_machine(),
            "date": date or dt.date.today().isoformat(),
            "device": logged.get("device"),
            "metrics": logged.get("metrics", {}),
        }
    _write_json(out, payload)
    partial.unlink(missing_ok=True)
    return out


def _fmt_runtime(seconds) -> str:
    if seconds is None:
        return "not measured yet"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def notebooks_table(directory: Path) -> str:
    rows = ["| Notebook | What it teaches | Run time | QUICK run time |", "| --- | --- | --- | --- |"]
    for path in notebooks():
        title, summary = title_and_summary(path)
        payload = _read_json(directory / f"{path.stem}.json")
        runtimes = " | ".join(_fmt_runtime(payload.get(key)) for key in ("runtime_s", "runtime_quick_s"))
        rows.append(f"| [{title}](notebooks/{path.name}) | {summary} | {runtimes} |")
    return "\n".join(rows)


def _measured_on(payload: dict) -> str:
    """ "2-core x86_64 CPU, no GPU, Python 3.11.7, torch 2.13.0+cpu, on 2026-11-22" for one results file."""
    machine = payload.get("machine", UNRECORDED)
    return f"{machine}, on {payload['date']}" if payload.get("date") else machine


def metrics_table(directory: Path) -> str:
    """Every recorded metric, each row keyed (A, B, ...) to the machine and date its notebook was run on."""
    payloads = [_read_json(p) for p in sorted(directory.glob("[0-9][0-9]_*.json"))]
    keys: dict[str, str] = {}  # "machine, on date" -> "A"
    for payload in payloads:
        keys.setdefault(_measured_on(payload), chr(ord("A") + len(keys)))
    rows = ["| Notebook | Metric | Value | Measured on |", "| --- | --- | ---: | :---: |"]
    for payload in payloads:
        key = keys[_measured_on(payload)]
        for m in payload.get("metrics", {}).values():
            rows.append(f"| {payload['notebook']} | {m['label']} | {format(m['value'], m['fmt'])} | {key} |")
    legend = []
    for measured, key in keys.items():
        names = ", ".join(p["notebook"][:2] for p in payloads if _measured_on(p) == measured)
        legend.append(f"- **{key}** (notebooks {names}): {measured}.")
    return "\n".join(rows) + "\n\nMeasured on:\n\n" + "\n".join(legend)


RUNTIME_LINE = re.compile(r"^\*\*Run time\*\*:.*$", re.M)


def runtime_line(payload: dict, machine: str) -> str:
    """The opening cell's run-time line, from a notebook's recorded results."""
    full, quick = (payload.get(k) for k in ("runtime_s", "runtime_quick_s"))
    if full is None:
        return "**Run time**: not measured yet (`make results` measures it)."
    quick_part = f", {_fmt_runtime(quick)} with `QUICK`" if quick is not None else ""
    return f"**Run time**: {_fmt_runtime(full)} in full{quick_part}, measured by `make results` on a {machine}."


def stamp_runtime(source: str, payload: dict, machine: str) -> str:
    """Return the opening cell ``source`` with its ``**Run time**:`` line set from ``payload``."""
    if not RUNTIME_LINE.search(source):
        raise ValueError("the notebook's first cell lacks a line starting with '**Run time**:'; add one")
    return RUNTIME_LINE.sub(lambda m: runtime_line(payload, machine), source, count=1)


def _stamp_notebooks(directory: Path, write: bool) -> list[str]:
    """Stamp every notebook's run-time line from its own results file; return those that were out of date."""
    import nbformat

    stale = []
    for path in notebooks():
        nb = nbformat.read(path, as_version=4)
        payload = _read_json(directory / f"{path.stem}.json")
        machine = ", ".join(payload.get("machine", UNRECORDED).split(", ")[:2])  # "2-core x86_64 CPU, no GPU"
        fresh = stamp_runtime(nb.cells[0].source, payload, machine)
        if fresh != nb.cells[0].source:
            stale.append(path.name)
            if write:
                nb.cells[0].source = fresh
                nbformat.write(nb, path)
    return stale


def render_readme(text: str, directory: Path | None = None) -> str:
    """Return ``text`` with the blocks between ``<!-- results:NAME -->`` markers regenerated."""
    directory = directory or results_dir()
    blocks = {"notebooks": notebooks_table(directory), "metrics": metrics_table(directory)}
    for name, body in blocks.items():
        pattern = re.compile(rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"README lacks the <!-- results:{name} --> ... <!-- /results:{name} --> markers")
        text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text)
    return text


def run_notebooks(paths: list[Path], directory: Path | None = None, quick: bool = False) -> list[str]:
    """Execute each notebook on a fresh kernel; promote its results only if every cell ran without error.

    A full run records the notebook's metrics, wall time, machine and date; a QUICK run records only its
    wall time (``runtime_quick_s``), so the headline numbers always come from the full lesson. A failing
    notebook keeps its committed results file, loses its partial file, and the others still run.

    Returns
    -------
    list of str
        The names of the notebooks that failed, each with the first line of its error.
    """
    directory = Path(directory or results_dir())
    scratch = BUILD / "quick-results" if quick else directory  # where the kernel's Recorder logs
    machine = describe_machine()
    failed = []
    for path in paths:
        partial = partial_path(scratch, path.stem)
        partial.unlink(missing_ok=True)  # a stale partial from an interactive session must not be promoted
        start = time.perf_counter()
        try:
            execute(path, quick=quick, results=scratch, use_cache=False)
        except Exception as err:  # a cell raised, timed out, or the kernel died
            partial.unlink(missing_ok=True)
            failed.append(f"{path.name}: {_reason(err)}")
            print(f"{path.name}{' (QUICK)' if quick else ''}: FAILED, results kept as they were", flush=True)
            continue
        elapsed = time.perf_counter() - start
        promote(path.stem, directory, elapsed, quick=quick, source=scratch, machine=machine)
        print(f"{path.name}{' (QUICK)' if quick else ''}: {elapsed:.1f} s", flush=True)
    return failed


def _reason(err: Exception) -> str:
    """One line saying why a notebook failed: the cell's exception (nbclient keeps its name and value)."""
    if getattr(err, "ename", None):
        return f"{err.ename}: {err.evalue}"
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys_tutorial.results", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["run", "readme", "check"])
    parser.add_argument("notebooks", nargs="*", help="notebooks to run (default: all in notebooks/)")
    parser.add_argument("--quick", action="store_true", help="run with QUICK=1 and record only the run time")
    args = parser.parse_args(argv)
    failed = []
    if args.command == "run":
        paths = [Path(p).resolve() for p in args.notebooks] or notebooks()
        failed = run_notebooks(paths, quick=args.quick)
    current = README.read_text(encoding="utf-8")
    fresh = render_readme(current)
    if args.command == "check":
        stale = _stamp_notebooks(results_dir(), write=False)
        if fresh != current or stale:
            out_of_date = ["README.md"] * (fresh != current) + stale
            print(f"{', '.join(out_of_date)} out of date: run `make readme` (or `make results` to re-measure)")
            return 1
        print("README.md and the notebooks' run-time lines match the recorded results")
        return 0
    README.write_text(fresh, encoding="utf-8")
    print(f"rendered {README}")
    for name in _stamp_notebooks(results_dir(), write=True):
        print(f"stamped the run time of {name}")
    if failed:
        print(f"{len(failed)} notebook(s) failed; their results were not changed:", file=sys.stderr)
        for line in failed:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
