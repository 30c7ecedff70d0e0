"""Publish the series for reading and for class: executed HTML pages with an index, and reveal.js decks.

Both open from local files with no network: nbconvert's own exporters render them (``HTMLExporter`` on
JupyterLab's ``lab`` template, ``SlidesExporter`` on its ``reveal`` template), math is typeset in the browser
by MathJax 2 copied from the ``jupyter-server-mathjax`` package, and the decks run reveal.js copied from the
``sphinx-revealjs`` package; both copies land in ``_static/`` beside the pages, once::

    python -m recsys_tutorial.publish html    [notebooks...]   # build/html/: one page per notebook + index.html
    python -m recsys_tutorial.publish slides  [notebooks...]   # build/slides/: one deck per notebook + index.html

Notebooks are executed on a fresh kernel first (their outputs are never written back to ``notebooks/``);
an executed copy is reused while it is newer than its notebook and the package code. For reading, executed
output is cleaned: progress bars and widget state are dropped, cells tagged ``live-only`` are removed,
folded solution cells stay folded behind "Show solution code", and figures carry their claim as alt text.
In a deck each ``## `` section is one slide and long code cells are folded.
"""

from __future__ import annotations

import argparse
import copy
import html
import importlib.metadata
import importlib.util
import re
import shutil
import sys
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

from .series import BUILD, NOTEBOOKS, execute, notebooks, title_and_summary

__all__ = [
    "SeriesPreprocessor",
    "clean_outputs",
    "page_title",
    "split_sections",
    "render",
    "publish",
    "write_index",
    "copy_static",
]

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = "_static"
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"  # the combined configuration jupyter-server-mathjax ships
# nbconvert 7's reveal template loads <prefix>/dist/reveal.js and its theme from dist/theme/: reveal.js 4 and 5
REVEAL_MAJORS = ("4.", "5.")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# A tqdm bar, as text: " 40%|####      | 4/10 [00:01<00:02, 2.9it/s]" (also its widget's text/plain fallback).
PROGRESS = re.compile(r"\d+%\|.*\||\|\s*\d+(?:\.\d+)?[kMG]?/\S*\s*\[\d+:\d+|\d+(?:\.\d+)?\s*(?:it/s|s/it)\]")


def page_title(nb: nbformat.NotebookNode) -> str:
    """A page's title: the first ``# `` heading of the notebook's first cell (else "Notebook")."""
    first = nb.cells[0].source if nb.cells else ""
    return next((ln[2:].strip() for ln in first.splitlines() if ln.startswith("# ")), "Notebook")


def _keep_stream_line(line: str) -> str | None:
    """What a terminal shows of a stream line (its last carriage-return segment), or None for a progress bar."""
    segments = line.split("\r")
    if any(PROGRESS.search(s) for s in segments):
        return None
    return segments[-1]


def clean_outputs(outputs: list) -> list:
    """Outputs fit for reading (a new list): no progress-bar widgets or text, no empty streams left behind."""
    kept = []
    for out in outputs:
        data = out.get("data", {})
        if WIDGET_MIME in data:
            continue  # a widget (tqdm's bar): frozen state is all it could show
        if out.get("output_type") == "stream":
            lines = [_keep_stream_line(line) for line in out.get("text", "").split("\n")]
            out = nbformat.from_dict({**out, "text": "\n".join(line for line in lines if line is not None)})
            if not out.text.strip() and (None in lines or out.get("name") == "stderr"):
                continue  # nothing but progress bars (or tqdm's closing newline on stderr) was printed
        elif set(data) == {"text/plain"} and PROGRESS.search(data["text/plain"]):
            continue
        kept.append(out)
    return kept


def split_sections(source: str) -> list[str]:
    """Split markdown at each ``## `` heading (outside code fences), so every section can open a slide."""
    parts, current, fenced = [], [], False
    for line in source.splitlines(keepends=True):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if not fenced and line.startswith("## ") and any(ln.strip() for ln in current):
            parts.append("".join(current))
            current = []
        current.append(line)
    parts.append("".join(current))
    return parts


def _with_source(cell: nbformat.NotebookNode, source: str, k: int) -> nbformat.NotebookNode:
    """A copy of ``cell`` holding ``source``, its id suffixed after the first part (ids stay unique)."""
    part = copy.deepcopy(cell)
    part.source = source
    if k and "id" in part:
        part.id = f"{cell.id}-{k}"
    return part


class SeriesPreprocessor(Preprocessor):
    """Prepare an executed notebook of the series for a reading page or a deck.

    Sets the page title from the first ``# `` heading and drops widget state and progress bars. For decks
    (``slides=True``) the first cell and every ``## `` section open a new slide (a markdown cell holding a
    heading part way down is split there); an author's own ``slideshow`` choices stand for other cells.
    """

    slides = Bool(False, help="Mark each '## ' section as a reveal.js slide.").tag(config=True)

    def preprocess(self, nb, resources):
        nb.metadata.pop("widgets", None)
        nb.metadata["title"] = page_title(nb)
        cells = []
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = clean_outputs(cell.get("outputs", []))
            if self.slides and cell.cell_type == "markdown":
                cells.extend(_with_source(cell, part, k) for k, part in enumerate(split_sections(cell.source)))
            else:
                cells.append(cell)
        if self.slides:
            for index, cell in enumerate(cells):
                slideshow = cell.metadata.setdefault("slideshow", nbformat.NotebookNode())
                if index == 0 or (cell.cell_type == "markdown" and cell.source.lstrip().startswith("## ")):
                    slideshow["slide_type"] = "slide"
                else:
                    slideshow.setdefault("slide_type", "-")
        nb.cells = cells
        return nb, resources


def _find_package_dir(package: str, relative: str, install: str) -> Path:
    """A data folder inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{package} is not installed: `pip install {install}` (it ships {relative})")
    folder = Path(next(iter(spec.submodule_search_locations))) / relative
    if not folder.is_dir():
        raise ValueError(f"{folder} is missing: reinstall {install}")
    return folder


def _copy_once(source: Path, target: Path, version: str, ignore=None) -> None:
    """Copy ``source`` to ``target`` unless the same ``version`` is already there (then nothing is touched)."""
    marker = target / ".version"
    if marker.is_file() and marker.read_text(encoding="utf-8") == version:
        return
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial, ignore=ignore)
    (partial / ".version").write_text(version, encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)  # a page never sees a half-copied library


def _reveal_version(reveal: Path) -> str:
    """reveal.js's version from its bundle's banner ("reveal.js 5.2.0"); ValueError if nbconvert cannot use it."""
    banner = (reveal / "dist" / "reveal.js").read_text(encoding="utf-8")[:300]
    match = re.search(r"reveal\.js (\d+\.\d+\.\d+)", banner)
    if not match or not match.group(1).startswith(REVEAL_MAJORS):
        found = match.group(1) if match else "an unknown version"
        raise ValueError(f"{reveal} holds reveal.js {found}; the decks need 4.x or 5.x: pin sphinx-revealjs<4")
    return match.group(1)


def copy_static(out_dir: Path, slides: bool = False) -> dict[str, str]:
    """Copy MathJax (and reveal.js for decks) into ``out_dir/_static``; return their URLs relative to the pages.

    MathJax 2 comes from ``jupyter-server-mathjax``, reveal.js's ``dist/`` and notes plugin from
    ``sphinx-revealjs``; both are maintained PyPI packages, so building needs no npm and viewing no network.
    """
    mathjax = _find_package_dir("jupyter_server_mathjax", "static", "jupyter-server-mathjax")
    version = importlib.metadata.version("jupyter-server-mathjax")
    _copy_once(mathjax, out_dir / STATIC / "mathjax", version)
    urls = {"mathjax_url": f"{STATIC}/mathjax/MathJax.js?config={MATHJAX_CONFIG}"}
    if slides:
        reveal = _find_package_dir("sphinx_revealjs", "_static/revealjs", "sphinx-revealjs")
        skip = shutil.ignore_patterns("*.map", "*.scss", "css", "highlight", "markdown", "math", "search", "zoom")
        _copy_once(reveal, out_dir / STATIC / "reveal.js", _reveal_version(reveal), ignore=skip)
        urls["reveal_url_prefix"] = f"{STATIC}/reveal.js"
        urls["reveal_theme"] = "white"  # its fonts ship beside it; nbconvert's default ("simple") asks Google
    return urls


_NOTEBOOK_LINK = re.compile(r'href="(\d\d_[A-Za-z0-9_]+)\.ipynb(#[^"]*)?"')
_README_LINK = re.compile(r'href="\.\./README\.md(#[^"]*)?"')


def _rewrite_links(page: str) -> str:
    """Links between notebooks point at their pages; the README (the series' front page) at the index."""
    page = _NOTEBOOK_LINK.sub(lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"', page)
    return _README_LINK.sub('href="index.html"', page)


def render(nb: nbformat.NotebookNode, slides: bool = False, nav: dict | None = None, static: dict | None = None) -> str:
    """HTML of an executed notebook: a reading page, or a reveal.js deck with ``slides=True``.

    ``nav`` holds the links the page shows (``index``, and ``prev``/``next`` as ``(href, title)``);
    ``static`` the URLs of MathJax and reveal.js returned by :func:`copy_static`.
    """
    from nbconvert import HTMLExporter, SlidesExporter

    static = static or {}
    exporter_class = SlidesExporter if slides else HTMLExporter
    exporter = exporter_class(
        extra_template_basedirs=[str(TEMPLATES)],
        extra_template_paths=[str(TEMPLATES / "common")],
        template_name="series_deck" if slides else "series_page",
        **static,
    )
    resources = {"series": nav or {"index": "index.html"}}
    body, _ = exporter.from_notebook_node(nbformat.from_dict(nb), resources=resources)
    # reveal's template appends " slides" to the title; a deck is named like its notebook
    title = f"<title>{html.escape(page_title(nb))}</title>"
    body = re.sub(r"<title>.*?</title>", lambda m: title, body, count=1, flags=re.S)
    return _rewrite_links(body)


def write_index(paths: list[Path], out_dir: Path, slides: bool = False) -> Path:
    """An index page linking every published notebook's page with its title and one-line summary."""
    items = []
    for path in paths:
        title, summary = title_and_summary(path)
        items.append(
            f'<li><a href="{path.stem}.html"><strong>{html.escape(title)}</strong></a><br>{html.escape(summary)}</li>'
        )
    body = "\n".join(items)
    kind = "slides" if slides else "reading copy"
    index = out_dir / "index.html"
    index.write_text(
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>recsys-tutorial: the series ({kind})</title>"
        "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.5}li{margin:1em 0}</style>"
        f"</head><body><h1>recsys-tutorial: the series</h1><p>The {kind}, in order.</p>"
        f"<ol>\n{body}\n</ol></body></html>\n",
        encoding="utf-8",
    )
    return index


def _nav(paths: list[Path], i: int) -> dict:
    """The index, previous and next links of the ``i``-th published page."""
    nav: dict = {"index": "index.html"}
    if i > 0:
        nav["prev"] = (f"{paths[i - 1].stem}.html", title_and_summary(paths[i - 1])[0])
    if i + 1 < len(paths):
        nav["next"] = (f"{paths[i + 1].stem}.html", title_and_summary(paths[i + 1])[0])
    return nav


def publish(
    kind: str, paths: list[Path], out_dir: Path, quick: bool = False, cache_dir: Path | None = None
) -> list[Path]:
    """Execute ``paths`` and write one page each into ``out_dir``, plus its ``index.html`` and ``_static/``.

    ``kind`` is ``"html"`` (reading pages) or ``"slides"`` (decks); ``quick`` executes with QUICK=1;
    ``cache_dir`` is where executed copies are kept (default build/executed or build/executed-quick).
    """
    if kind not in ("html", "slides"):
        raise ValueError(f"kind must be 'html' or 'slides', not {kind!r}")
    slides = kind == "slides"
    out_dir.mkdir(parents=True, exist_ok=True)
    static = copy_static(out_dir, slides=slides)
    written = []
    for i, path in enumerate(paths):
        nb = execute(path, quick=quick, cache_dir=cache_dir)
        page = out_dir / f"{path.stem}.html"
        page.write_text(render(nb, slides=slides, nav=_nav(paths, i), static=static), encoding="utf-8")
        written.append(page)
        print(f"wrote {page}", flush=True)
    print(f"wrote {write_index(paths, out_dir, slides=slides)}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys_tutorial.publish", description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=["html", "slides"])
    parser.add_argument("notebooks", nargs="*", help="notebooks to publish (default: the whole series)")
    parser.add_argument("--out", type=Path, help="output folder (default: build/html or build/slides)")
    parser.add_argument("--quick", action="store_true", help="execute with QUICK=1 (smaller sizes, same code)")
    args = parser.parse_args(argv)
    paths = [Path(p).resolve() for p in args.notebooks] or notebooks(NOTEBOOKS)
    publish(args.kind, paths, args.out or BUILD / args.kind, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
