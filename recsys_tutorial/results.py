"""Headline metrics: recorded by the notebooks, rendered into the README, never typed by hand.

Each notebook creates a :class:`Recorder` and logs its headline numbers; they land in
``notebooks/results/<notebook>.json`` (or ``$RECSYS_TUTORIAL_RESULTS``). ``make results`` executes
every notebook on a fresh kernel, adds its measured wall time, and regenerates the README tables
between the ``<!-- results:... -->`` markers::

    python -m recsys_tutorial.results run      # execute notebooks, record run times, render README
    python -m recsys_tutorial.results run --quick   # the same with QUICK=1: record only the QUICK run times
    python -m recsys_tutorial.results readme   # re-render README from the JSON files only
    python -m recsys_tutorial.results check    # exit 1 if the README is out of date

The same numbers are stamped into each notebook's opening cell, on its ``**Run time**:`` line.
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

__all__ = ["Recorder", "results_dir", "render_readme", "run_notebooks", "stamp_runtime"]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
README = ROOT / "README.md"


def results_dir() -> Path:
    """``$RECSYS_TUTORIAL_RESULTS`` if set (tests use a scratch folder), else ``notebooks/results``."""
    return Path(os.environ.get("RECSYS_TUTORIAL_RESULTS", NOTEBOOKS / "results"))


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
    """Collects one notebook's headline metrics and writes them to its JSON file as they come.

    >>> rec = Recorder("00_data_and_evaluation")                        # doctest: +SKIP
    >>> rec.log("most_popular_ndcg10", 0.0251, "Most-popular NDCG@10")  # doctest: +SKIP
    """

    def __init__(self, notebook: str, directory: str | os.PathLike | None = None):
        if not re.fullmatch(r"\d\d_[a-z0-9_]+", notebook):
            raise ValueError(f"notebook name {notebook!r} should look like '01_matrix_factorization'")
        self.path = Path(directory or results_dir()) / f"{notebook}.json"
        previous = _read_json(self.path)
        self.payload = {
            "notebook": notebook,
            # filled in by `results run` (with and without --quick), kept when the notebook re-logs
            "runtime_s": previous.get("runtime_s"),
            "runtime_quick_s": previous.get("runtime_quick_s"),
            "metrics": {},
        }

    def __repr__(self) -> str:
        committed = NOTEBOOKS / "results"  # the measured run times shipped with the repository
        full, quick = (
            _read_json(committed / f"{self.payload['notebook']}.json").get(k) for k in ("runtime_s", "runtime_quick_s")
        )
        measured = (
            f"last measured run: {_fmt_runtime(full)} (QUICK: {_fmt_runtime(quick)}) on {_describe_machine(committed)}"
            if full
            else "run time not measured yet (make results)"
        )
        return f"Recorder({self.payload['notebook']!r}): {measured}"

    def log(self, key: str, value: float, label: str, fmt: str = ".3f"):
        """Record ``value`` under ``key`` with a human label; returns ``value`` so a cell can show it."""
        import torch

        from .utils import get_device

        self.payload["metrics"][key] = {"label": label, "value": float(value), "fmt": fmt}
        self.payload["device"] = str(get_device())
        self.payload["torch"] = torch.__version__
        _write_json(self.path, self.payload)
        return value


def _notebook_summary(path: Path) -> tuple[str, str]:
    """Title (first ``# `` heading) and summary (first ``> `` line) of a notebook's first markdown cell."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    source = next("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    title = next((ln[2:].strip() for ln in source.splitlines() if ln.startswith("# ")), path.stem)
    summary = next((ln[2:].strip() for ln in source.splitlines() if ln.startswith("> ")), "")
    return title, summary


def _fmt_runtime(seconds) -> str:
    if seconds is None:
        return "not measured yet"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def notebooks_table(directory: Path) -> str:
    rows = ["| Notebook | What it teaches | Run time (CPU) | QUICK run time |", "| --- | --- | --- | --- |"]
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        title, summary = _notebook_summary(path)
        payload = _read_json(directory / f"{path.stem}.json")
        runtimes = " | ".join(_fmt_runtime(payload.get(key)) for key in ("runtime_s", "runtime_quick_s"))
        rows.append(f"| [{title}](notebooks/{path.name}) | {summary} | {runtimes} |")
    return "\n".join(rows)


def metrics_table(directory: Path) -> str:
    rows = ["| Notebook | Metric | Value |", "| --- | --- | ---: |"]
    for path in sorted(directory.glob("[0-9][0-9]_*.json")):
        payload = _read_json(path)
        for m in payload.get("metrics", {}).values():
            rows.append(f"| {payload['notebook']} | {m['label']} | {format(m['value'], m['fmt'])} |")
    note = f"\n\nMeasured on: {_describe_machine(directory)}."
    return "\n".join(rows) + note


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
    """Stamp every notebook's run-time line; return the names of those that were out of date."""
    import nbformat

    machine = ", ".join(_describe_machine(directory).split(", ")[:2])  # "2-core x86_64 CPU, no GPU"
    stale = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        fresh = stamp_runtime(nb.cells[0].source, _read_json(directory / f"{path.stem}.json"), machine)
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


def run_notebooks(paths: list[Path], directory: Path | None = None, quick: bool = False) -> None:
    """Execute each notebook on a fresh kernel and record its wall time (``runtime_quick_s`` with ``quick``).

    A full run records the notebook's metrics too; a QUICK run records only its time, so the headline
    numbers always come from the full lesson.
    """
    from .publish import BUILD, execute

    directory = directory or results_dir()
    for path in paths:
        start = time.perf_counter()
        execute(path, quick=quick, results=BUILD / "quick-results" if quick else directory, use_cache=False)
        elapsed = time.perf_counter() - start
        out = directory / f"{path.stem}.json"
        payload = _read_json(out) or {"notebook": path.stem, "metrics": {}}
        payload["runtime_quick_s" if quick else "runtime_s"] = round(elapsed, 1)
        _write_json(out, payload)
        print(f"{path.name}{' (QUICK)' if quick else ''}: {elapsed:.1f} s", flush=True)
    if not quick:
        _write_json(directory / "machine.json", {"description": _machine(), "date": dt.date.today().isoformat()})


def _describe_machine(directory: Path) -> str:
    return _read_json(directory / "machine.json").get("description", "an unrecorded machine")


def _machine() -> str:
    import torch

    cores = os.cpu_count()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (
        f"{cores}-core {platform.machine()} CPU, {gpu}, Python {platform.python_version()}, torch {torch.__version__}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys_tutorial.results", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["run", "readme", "check"])
    parser.add_argument("notebooks", nargs="*", help="notebooks to run (default: all in notebooks/)")
    parser.add_argument("--quick", action="store_true", help="run with QUICK=1 and record only the run time")
    args = parser.parse_args(argv)
    if args.command == "run":
        paths = [Path(p).resolve() for p in args.notebooks] or sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
        run_notebooks(paths, quick=args.quick)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
