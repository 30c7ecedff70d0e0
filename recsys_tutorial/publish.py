"""Publish the series for reading and for class: executed HTML copies with an index, and slide decks.

Both work offline: nbconvert renders with JupyterLab's look through a template that loads nothing from
the network, math is pre-rendered to inline SVG by matplotlib's mathtext, and figures are embedded::

    python -m recsys_tutorial.publish html    [notebooks...]   # build/html/: one page per notebook + index.html
    python -m recsys_tutorial.publish slides  [notebooks...]   # build/slides/: one deck per notebook

Notebooks are executed on a fresh kernel first (their outputs are never written back to ``notebooks/``);
an executed copy is reused while it is newer than its notebook.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import os
import re
import sys
from pathlib import Path

import nbformat

from .results import NOTEBOOKS, ROOT, _notebook_summary

__all__ = ["execute", "render", "publish", "write_index"]

TEMPLATES = Path(__file__).resolve().parent / "templates"
BUILD = ROOT / "build"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# $$display$$ first, then $inline$ (not a lone "$" in prose, e.g. "$5").
_MATH = re.compile(r"\$\$(.+?)\$\$|(?<![\\$\w])\$(?!\s)([^$\n]+?)(?<!\s)\$(?!\w)", re.S)


def execute(
    path: Path, quick: bool = False, results: Path | None = None, use_cache: bool = True, timeout: int = 1800
) -> nbformat.NotebookNode:
    """Run a notebook top to bottom on a fresh kernel in ``notebooks/``, keeping the executed copy in build/.

    ``quick`` sets ``RECSYS_TUTORIAL_QUICK=1`` for the kernel. Metrics the notebook records go to
    ``results`` (default: a scratch folder in build/, so publishing never rewrites notebooks/results).
    A cached executed copy newer than the notebook is reused when ``use_cache``.
    """
    from nbclient import NotebookClient

    cached = BUILD / ("executed-quick" if quick else "executed") / path.name
    if use_cache and cached.is_file() and cached.stat().st_mtime > path.stat().st_mtime:
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


def _math_svg(tex: str, display: bool) -> str:
    """Inline SVG of a TeX fragment via matplotlib's mathtext; the escaped source if mathtext cannot parse it."""
    from matplotlib import mathtext

    buffer = io.BytesIO()
    try:
        mathtext.math_to_image(f"${tex.strip()}$", buffer, format="svg", dpi=100, prop=None)
    except (ValueError, RuntimeError):
        return f"<code>{html.escape(tex)}</code>"
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    img = f'<img class="math" alt="{html.escape(tex, quote=True)}" src="data:image/svg+xml;base64,{data}"/>'
    return f'<div style="text-align:center">{img}</div>' if display else img


def _offline(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Copy of ``nb`` ready for offline HTML: math pre-rendered, progress-bar widgets reduced to their text."""
    nb = nbformat.from_dict(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = _MATH.sub(lambda m: _math_svg(m.group(1) or m.group(2), bool(m.group(1))), cell.source)
        elif cell.cell_type == "code":
            for out in cell.get("outputs", []):
                if WIDGET_MIME in out.get("data", {}):
                    out["data"] = {"text/plain": out["data"].get("text/plain", "")}
    return nb


def render(nb: nbformat.NotebookNode, slides: bool = False) -> str:
    """HTML of an executed notebook (a reading page, or a slide deck with ``slides=True``)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        extra_template_basedirs=[str(TEMPLATES)], template_name="offline_slides" if slides else "offline"
    )
    body, _ = exporter.from_notebook_node(_offline(nb))
    return body


def write_index(pages: list[Path], out_dir: Path) -> Path:
    """An index page linking every notebook page with its title and one-line summary."""
    items = []
    for page in pages:
        title, summary = _notebook_summary(NOTEBOOKS / f"{page.stem}.ipynb")
        items.append(
            f'<li><a href="{page.name}"><strong>{html.escape(title)}</strong></a><br>{html.escape(summary)}</li>'
        )
    body = "\n".join(items)
    index = out_dir / "index.html"
    index.write_text(
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>recsys-tutorial</title>"
        "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.5}li{margin:1em 0}</style>"
        f"</head><body><h1>recsys-tutorial: the series</h1><ol>\n{body}\n</ol></body></html>\n",
        encoding="utf-8",
    )
    return index


def publish(kind: str, paths: list[Path], out_dir: Path, quick: bool = False) -> list[Path]:
    """Execute ``paths`` and write one HTML file each into ``out_dir`` (plus an index for reading copies)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        page = out_dir / f"{path.stem}.html"
        page.write_text(render(execute(path, quick=quick), slides=kind == "slides"), encoding="utf-8")
        written.append(page)
        print(f"wrote {page}", flush=True)
    if kind == "html":
        print(f"wrote {write_index(written, out_dir)}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys_tutorial.publish", description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=["html", "slides"])
    parser.add_argument("notebooks", nargs="*", help="notebooks to publish (default: the whole series)")
    parser.add_argument("--out", type=Path, help="output folder (default: build/html or build/slides)")
    parser.add_argument("--quick", action="store_true", help="execute with QUICK=1 (smaller sizes, same code)")
    args = parser.parse_args(argv)
    paths = [Path(p).resolve() for p in args.notebooks] or sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    publish(args.kind, paths, args.out or BUILD / args.kind, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
