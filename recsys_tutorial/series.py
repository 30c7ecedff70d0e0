"""The notebook series itself: where it lives, its order, each notebook's title, and running a notebook.

``results`` (recorded metrics, run times) and ``publish`` (reading copy, slides) both build on this module
and never on each other::

    >>> [p.name for p in notebooks()][:2]                 # doctest: +SKIP
    ['00_data_and_evaluation.ipynb', '01_matrix_factorization.ipynb']
    >>> title_and_summary(notebooks()[0])[0]              # doctest: +SKIP
    '00 · Data and evaluation'
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

__all__ = ["ROOT", "NOTEBOOKS", "BUILD", "notebooks", "title_and_summary", "execute"]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
BUILD = ROOT / "build"
# A notebook of the series is named NN_slug.ipynb; NN orders the series.
NOTEBOOK_NAME = re.compile(r"\d\d_[A-Za-z0-9_]+\.ipynb")
# Modules that only render pages: editing them does not change what a notebook computes or prints.
_RENDER_ONLY = {"publish.py"}


def notebooks(directory: Path = NOTEBOOKS) -> list[Path]:
    """Every ``NN_*.ipynb`` in ``directory``, in series order (a new ``07_*.ipynb`` is picked up as it lands)."""
    return sorted(p for p in directory.glob("[0-9][0-9]_*.ipynb") if NOTEBOOK_NAME.fullmatch(p.name))


def title_and_summary(path: Path) -> tuple[str, str]:
    """Title (first ``# `` heading) and summary (first ``> `` line) of a notebook's first cell.

    Falls back to the file's stem and an empty summary, so a draft notebook still gets a page.
    """
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    source = "".join(cells[0]["source"]) if cells else ""
    lines = source.splitlines()
    title = next((ln[2:].strip() for ln in lines if ln.startswith("# ")), Path(path).stem)
    summary = next((ln[2:].strip() for ln in lines if ln.startswith("> ")), "")
    return title, summary


def _package_mtime() -> float:
    """Newest modification time of the package code a notebook runs (render-only modules excluded)."""
    package = Path(__file__).resolve().parent
    return max(p.stat().st_mtime for p in package.rglob("*.py") if p.name not in _RENDER_ONLY)


def _fresh(cached: Path, notebook: Path) -> bool:
    """A cached executed copy is still valid while it is newer than its notebook and the package code."""
    if not cached.is_file():
        return False
    return cached.stat().st_mtime > max(notebook.stat().st_mtime, _package_mtime())


def execute(
    path: Path,
    quick: bool = False,
    results: Path | None = None,
    use_cache: bool = True,
    timeout: int = 1800,
    cache_dir: Path | None = None,
):
    """Run a notebook top to bottom on a fresh kernel in its own folder; keep the executed copy in build/.

    Parameters
    ----------
    path : Path
        The notebook; it is read, never written.
    quick : bool
        Set ``RECSYS_TUTORIAL_QUICK=1`` for the kernel (smaller sizes, same code).
    results : Path, optional
        Folder for the metrics the notebook records (``RECSYS_TUTORIAL_RESULTS``); default a scratch
        folder beside the executed copy, so that executing never rewrites ``notebooks/results``.
    use_cache : bool
        Reuse the executed copy in ``cache_dir`` while it is newer than the notebook and the package code.
    timeout : int
        Seconds allowed per cell.
    cache_dir : Path, optional
        Where executed copies are kept (default ``build/executed`` or ``build/executed-quick``).

    Returns
    -------
    nbformat.NotebookNode
        The executed notebook.

    Raises
    ------
    nbclient.exceptions.CellExecutionError
        A cell raised; nothing is cached then.
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    cached = (cache_dir or BUILD / ("executed-quick" if quick else "executed")) / path.name
    if use_cache and _fresh(cached, path):
        return nbformat.read(cached, as_version=4)
    nb = nbformat.read(path, as_version=4)
    env = {
        "RECSYS_TUTORIAL_QUICK": "1" if quick else "0",
        "RECSYS_TUTORIAL_RESULTS": str(results or cached.parent / "results"),
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the kernel inherits this environment
    try:
        client = NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        )
        client.execute()
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    cached.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, cached)
    return nb
