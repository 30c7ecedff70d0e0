"""The reading copy and the decks: built with nbconvert's exporters, opened offline in headless Chromium.

Fast tests render hand-made executed notebooks (no kernel). The browser tests build a two-notebook
synthetic series (with real progress bars, math, figures, folded solutions) that must come out clean,
then the whole series executed with QUICK=1: every page is checked for reader-visible defects, and the
failure message lists all of them, page by page, so a notebook's author can fix them in one pass.
"""

from __future__ import annotations

import ast
import base64
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from recsys_tutorial import publish as pub
from recsys_tutorial import series

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,900",
]  # fmt: skip
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")  # Debian names it one, Ubuntu the other
CHROMEDRIVER = shutil.which("chromedriver")
NO_ALT = "No description has been provided for this image"  # nbconvert's placeholder for a figure without alt


# ---------------------------------------------------------------------------------------------------------
# Fast: the pieces, on hand-made notebooks
# ---------------------------------------------------------------------------------------------------------


def _png() -> str:
    """A real (tiny) PNG, base64-encoded as notebook outputs hold it."""
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _notebook(cells: list) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _executed_lesson() -> nbformat.NotebookNode:
    """An 'executed' notebook holding one of each thing the pages must handle."""
    widget = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    bar = "epochs:  40%|####      | 4/10 [00:01<00:02, 2.9it/s]"
    training = new_code_cell("fit()")
    training.outputs = [
        new_output("display_data", data={pub.WIDGET_MIME: widget, "text/plain": bar}),
        new_output("stream", name="stderr", text=f"\r{bar}\r100%|##########| 10/10 [00:03<00:00, 3.1it/s]\n"),
        new_output("stream", name="stdout", text="best epoch 7\n"),
    ]
    figure = new_code_cell("plot()")
    figure.outputs = [
        new_output(
            "display_data", data={"image/png": _png(), "text/plain": "<Figure>"}, metadata={"image/png": {"alt": "Up"}}
        )
    ]
    solution = new_code_cell("answer = 42\nanswer")
    solution.metadata["jupyter"] = {"source_hidden": True}
    solution.outputs = [new_output("execute_result", data={"text/plain": "42"}, execution_count=3)]
    live = new_code_cell("open_the_dashboard()")
    live.metadata["tags"] = ["live-only"]
    cells = [
        new_markdown_cell("# 00 · A lesson\n> One line.\n\nSee [next](01_next.ipynb#Top) and [README](../README.md)."),
        training,
        new_markdown_cell("Before the section.\n\n## The figure\n\n$$\\frac{a}{b}$$"),
        figure,
        new_markdown_cell("## Exercises"),
        solution,
        live,
    ]
    return _notebook(cells)


def test_clean_outputs_drop_progress_bars_and_widgets_and_keep_the_rest():
    outputs = _executed_lesson().cells[1].outputs
    kept = pub.clean_outputs(outputs)
    assert [(o.output_type, o.get("text")) for o in kept] == [("stream", "best epoch 7\n")]


def test_a_deck_opens_a_slide_at_the_title_and_at_every_section():
    nb, _ = pub.SeriesPreprocessor(slides=True).preprocess(_executed_lesson(), {})
    starts = [c.source.splitlines()[0] for c in nb.cells if c.metadata.slideshow.slide_type == "slide"]
    assert starts == ["# 00 · A lesson", "## The figure", "## Exercises"]
    assert "Before the section.\n\n" in [c.source for c in nb.cells]  # a cell split at its "## " heading
    assert len({c.get("id") for c in nb.cells}) == len(nb.cells)  # split cells keep unique ids
    assert nb.metadata.title == "00 · A lesson" and "widgets" not in nb.metadata


def test_links_between_notebooks_point_at_pages_and_the_readme_at_the_index():
    page = '<a href="02_cp_decomposition.ipynb#Rank">x</a> <a href="../README.md#for-instructors">y</a>'
    assert pub._rewrite_links(page) == '<a href="02_cp_decomposition.html#Rank">x</a> <a href="index.html">y</a>'


def test_series_lists_every_numbered_notebook_in_order(tmp_path):
    for name in ["07_new_lesson.ipynb", "00_intro.ipynb", "scratch.ipynb", "1_bad.ipynb"]:
        (tmp_path / name).write_text('{"cells": [{"cell_type": "markdown", "source": ["# 07 · New\\n", "> Why."]}]}')
    assert [p.name for p in series.notebooks(tmp_path)] == ["00_intro.ipynb", "07_new_lesson.ipynb"]
    assert series.title_and_summary(tmp_path / "07_new_lesson.ipynb") == ("07 · New", "Why.")


def _imported_modules(module: str) -> set[str]:
    tree = ast.parse((ROOT / "recsys_tutorial" / f"{module}.py").read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names |= {f"{node.module or ''}.{a.name}".strip(".") for a in node.names} | {node.module or ""}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def test_publish_and_results_share_series_and_never_import_each_other():
    for module, other in [("publish", "results"), ("results", "publish")]:
        imported = _imported_modules(module)
        assert not any(other in name for name in imported), f"{module}.py imports {other} (an import cycle)"
        assert "series" in imported, f"{module}.py should take the notebooks and their execution from series.py"
    code = "import sys, recsys_tutorial.publish; sys.exit('recsys_tutorial.results' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_figures_get_their_claim_as_alt_text_in_ipython_and_nothing_breaks_without_it():
    import matplotlib.pyplot as plt
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.core.pylabtools import select_figure_formats

    from recsys_tutorial import plotting

    plotting.use_style()  # no IPython running: only the style
    shell = InteractiveShell.instance()
    try:
        select_figure_formats(shell, {"png"})
        plotting.use_style()
        fig, (left, right) = plt.subplots(1, 2)
        left.set_title("Context helps")
        right.set_title("at night")
        data, metadata = shell.display_formatter.format(fig)
        assert "image/png" in data and metadata["image/png"]["alt"] == "Context helps; at night"
        fig.suptitle("CP beats MF on HR@10")
        select_figure_formats(shell, {"png"})  # the inline backend re-registers its formatter: alt text stays
        assert shell.display_formatter.format(fig)[1]["image/png"]["alt"] == "CP beats MF on HR@10"
        plt.close(fig)
    finally:
        InteractiveShell.clear_instance()


def _soup(html: str):
    from bs4 import BeautifulSoup  # nbconvert's own dependency

    return BeautifulSoup(html, "html.parser")


@pytest.mark.parametrize("slides", [False, True], ids=["page", "deck"])
def test_rendered_page_folds_solutions_drops_live_cells_and_labels_figures(tmp_path, slides):
    static = pub.copy_static(tmp_path, slides=slides)
    soup = _soup(pub.render(_executed_lesson(), slides=slides, static=static))
    assert soup.title.string == "00 · A lesson"
    assert [img["alt"] for img in soup.select("img")] == ["Up"]
    solution = soup.select("details.series-fold-solution")
    assert len(solution) == 1 and solution[0].summary.text == "Show solution code"
    assert "answer = 42" in solution[0].text and "42" in solution[0].find_next(class_="jp-OutputArea").text
    text = soup.get_text()
    assert "open_the_dashboard" not in text and "it/s" not in text and "%|" not in text
    assert soup.select_one("a.series-index")["href"] == "index.html"
    hrefs = {a["href"] for a in soup.select("a[href]")}
    assert {"01_next.html#Top", "index.html"} <= hrefs and not any(".ipynb" in h or "README" in h for h in hrefs)
    for tag in soup.select("script[src], link[href]"):  # everything the page loads is a local file beside it
        url = (tag.get("src") or tag["href"]).split("?")[0]
        assert not url.startswith(("http:", "https:", "//")) and (tmp_path / url).is_file(), url
    if slides:
        assert len(soup.select(".reveal .slides > section")) == 3


# ---------------------------------------------------------------------------------------------------------
# In the browser
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CI"):
            pytest.fail("CI must test the pages in Chromium: .ci/run installs chromium and chromium-driver")
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver  # in the dev extra: a missing selenium is an install error, not a skip

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tempfile.mkdtemp()}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    driver.set_script_timeout(120)
    yield driver
    driver.quit()


# Raw TeX that MathJax left as text: $$, a command (\frac, \hat, \!), \( \[ delimiters, or $x$ never typeset.
RAW_TEX = re.compile(r"\$\$|\\[A-Za-z]+|\\[!,;:{}()\[\]]|(?<![\w$])\$(?=[A-Za-z\\{^_])")
PROGRESS_TEXT = re.compile(r"\d+%\||\d(?:it/s|s/it)\]|\?it/s\]")
REPR_TEXT = re.compile(r"^\s*<(?:Axes|matplotlib\.|Figure size)|np\.float\d*\(", re.M)

# Run in the page once MathJax is done: every reader-visible defect as [what, snippet].
PAGE_DEFECTS_JS = r"""
const defects = [];
const skip = "script, style, pre, code, textarea, .MathJax, .MathJax_Display, .MathJax_Preview, "
           + ".MJX_Assistive_MathML, .jp-CodeCell .jp-InputArea, .reveal .controls, .reveal .progress, .slide-number";
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const prose = [];
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  if (node.parentElement && !node.parentElement.closest(skip)) prose.push(node.textContent);
}
defects.push(["prose", prose.join(" ").replace(/\s+/g, " ")]);
for (const el of document.querySelectorAll(".noError, .MathJax_Error, .merror"))
  defects.push(["math MathJax could not parse", el.textContent]);
for (const el of document.querySelectorAll(".MathJax .mtext"))
  if (el.style.color === "red") defects.push(["undefined TeX command", el.textContent]);
for (const el of document.querySelectorAll('script[type^="math/tex"]'))
  if (/&(amp|lt|gt|nbsp);/.test(el.textContent)) defects.push(["HTML entity inside math", el.textContent]);
for (const el of document.querySelectorAll(".jp-OutputArea-output"))
  defects.push(["output", el.innerText || el.textContent]);
for (const el of document.querySelectorAll('.jupyter-widgets, [data-mime-type*="widget"]'))
  defects.push(["widget left in the page", el.outerHTML.slice(0, 80)]);
for (const img of document.images) {
  const alt = (img.getAttribute("alt") || "").trim();
  if (!alt || alt === "No description has been provided for this image")
    defects.push(["figure without alt text", alt || img.src.slice(0, 40)]);
  if (!img.complete || img.naturalWidth === 0) defects.push(["image that does not load", img.src.slice(0, 60)]);
}
for (const a of document.querySelectorAll("a[href]")) defects.push(["href", a.getAttribute("href")]);
for (const el of document.querySelectorAll("script[src], link[href]"))
  defects.push(["href", el.getAttribute("src") || el.getAttribute("href")]);
const frames = Array.from(document.querySelectorAll("iframe[src]"), (f) => f.src);
for (const src of frames)
  if (!src.startsWith("file:")) defects.push(["embedded live page (its server is gone in the reading copy)", src]);
for (const entry of performance.getEntriesByType("resource"))
  if (!/^(file|data|blob):/.test(entry.name) && !frames.some((src) => entry.name.startsWith(src)))
    defects.push(["network request", entry.name]);
return defects;
"""

# Wait for MathJax to finish typesetting; a page without MathJax (the index) has nothing to wait for, and math
# on a page whose MathJax did not load stays raw, which the raw-LaTeX check reports.
MATHJAX_DONE_JS = """
const done = arguments[arguments.length - 1];
if (!window.MathJax || !MathJax.Hub || !MathJax.Hub.Queue) { done(""); return; }
MathJax.Hub.Queue(() => done(""));
"""


def _snippet(text: str, start: int = 0, width: int = 70) -> str:
    return re.sub(r"\s+", " ", text[max(0, start - 25) : start + width]).strip()


def _matches(pattern: re.Pattern, text: str) -> list[str]:
    """A snippet around each match, one per formula or line: matches close to the last reported one are skipped."""
    snippets, last = [], -1000
    for m in pattern.finditer(text):
        if m.start() - last > 60:
            snippets.append(_snippet(text, m.start()))
            last = m.start()
    return snippets


def _dead_link(page: Path, href: str) -> bool:
    if re.match(r"^(?:[a-z]+:|#|//)", href):  # another scheme (checked as a network request) or this page
        return False
    target = href.split("#")[0].split("?")[0]
    return bool(target) and not (page.parent / target).resolve().is_file()


def page_defects(browser, page: Path) -> list[tuple[str, str]]:
    """Every defect a reader would see on ``page``: (what, snippet) pairs, most useful first."""
    browser.get(page.as_uri())
    found = []
    if message := browser.execute_async_script(MATHJAX_DONE_JS):
        found.append(("math not typeset", message))
    for what, text in browser.execute_script(PAGE_DEFECTS_JS):
        if what == "prose":
            found += [("raw LaTeX", snippet) for snippet in _matches(RAW_TEX, text)]
        elif what == "output":
            found += [("frozen progress bar", snippet) for snippet in _matches(PROGRESS_TEXT, text)]
            found += [("object repr in output", snippet) for snippet in _matches(REPR_TEXT, text)]
        elif what == "href":
            found += [("link to a missing file", text)] if _dead_link(page, text) else []
        else:
            found.append((what, _snippet(text)))
    found += [("console error", e["message"][:160]) for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    return found


def report(defects: dict[str, list[tuple[str, str]]]) -> str:
    """One block per page: every defect with a snippet to search for in the notebook."""
    lines = [f"{sum(map(len, defects.values()))} defects on {len(defects)} pages:"]
    for page, items in defects.items():
        lines.append(f"\n{page}:")
        lines += [f"  - {what}: {snippet!r}" for what, snippet in items]
    return "\n".join(lines)


def _check(browser, pages: list[Path], root: Path) -> dict:
    defects = {}
    for page in pages:
        if found := page_defects(browser, page):
            defects[str(page.relative_to(root))] = found
    return defects


def _synthetic_notebooks(folder: Path) -> list[Path]:
    """Two small notebooks, run for real: tqdm bars (widget and text), math, figures, a solution, a live cell."""
    hidden = new_code_cell("answer = 6 * 7\nanswer")
    hidden.metadata["jupyter"] = {"source_hidden": True}
    live = new_code_cell('print("only when teaching live")')
    live.metadata["tags"] = ["live-only"]
    first = [
        new_markdown_cell(
            "# 00 · Alpha\n> A synthetic lesson.\n\nInline $\\hat r_{ui} = \\mu + b_u$, see "
            "[the next one](01_beta.ipynb#Section-one) and [the README](../README.md#for-instructors)."
        ),
        new_code_cell(
            "import sys\nimport matplotlib.pyplot as plt\nfrom tqdm.auto import tqdm\n"
            "from tqdm import tqdm as text_tqdm\nfrom recsys_tutorial import plotting\n\nplotting.use_style()"
        ),
        new_markdown_cell("## Section one\n\n$$\\frac{a}{b} = \\sum_{i=1}^{n} \\mathbb{E}[x_i]$$"),
        new_code_cell(
            "total = 0\nfor i in tqdm(range(3), desc='epochs'):\n    total += i\n"
            "for i in text_tqdm(range(3), file=sys.stderr):\n    total += i\nprint('total', total)"
        ),
        new_code_cell("fig, ax = plt.subplots()\nax.plot([1, 2, 3])\nax.set_title('The line goes up')\nplt.show()"),
        new_markdown_cell("## Section two\n\n$$\\begin{aligned} a &= b \\\\ c &= d \\end{aligned}$$"),
        hidden,
        live,
        new_code_cell("\n".join(f"v{i} = {i}" for i in range(20)) + "\nv19"),
        new_markdown_cell("## Section three"),
        new_code_cell("fig, axs = plt.subplots(1, 2)\nfig.suptitle('Two panels agree')\nplt.show()"),
    ]
    second = [new_markdown_cell("# 01 · Beta\n> The second.\n\nBack to [alpha](00_alpha.ipynb)."), new_code_cell("1")]
    folder.mkdir(parents=True, exist_ok=True)
    for name, cells in [("00_alpha", first), ("01_beta", second)]:
        nbformat.write(_notebook(cells), folder / f"{name}.ipynb")
    return series.notebooks(folder)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    paths = _synthetic_notebooks(root / "notebooks")
    cache = root / "executed"
    pages = pub.publish("html", paths, root / "html", cache_dir=cache)
    decks = pub.publish("slides", paths, root / "slides", cache_dir=cache)
    return root, pages, decks


def test_clean_notebooks_publish_without_a_single_defect(browser, synthetic):
    """Real tqdm bars, math, figures and links come out clean: what the series check finds is the notebooks'."""
    root, pages, decks = synthetic
    indexes = [root / "html" / "index.html", root / "slides" / "index.html"]
    defects = _check(browser, pages + decks + indexes, root)
    assert not defects, report(defects)
    assert browser.title == "recsys-tutorial: the series (slides)"


def test_the_checker_finds_each_kind_of_defect(browser, tmp_path):
    """The checker is not blind: a page with one of each defect yields each of them."""
    bad = new_code_cell("x")
    bad.outputs = [
        new_output("execute_result", data={"text/plain": "<Axes: title={'center': 'x'}>"}, execution_count=1),
        new_output("execute_result", data={"text/plain": "np.float64(0.25)"}, execution_count=1),
        new_output("display_data", data={"image/png": _png(), "text/plain": "<Figure>"}),
    ]
    cells = [
        new_markdown_cell("# 00 · Bad\n> bad\n\n$$a \\mathbbx$$ and $\\frac{a}{b$ and [gone](missing.html)."),
        new_markdown_cell("Raw \\\\hat{r} in prose, and $$\\begin{aligned} a &amp; b \\end{aligned}$$"),
        bad,
    ]
    static = pub.copy_static(tmp_path)
    page = tmp_path / "00_bad.html"
    page.write_text(pub.render(_notebook(cells), static=static), encoding="utf-8")
    found = {what for what, _ in page_defects(browser, page)}
    expected = {
        "raw LaTeX",
        "math MathJax could not parse",
        "undefined TeX command",
        "HTML entity inside math",
        "object repr in output",
        "figure without alt text",
        "link to a missing file",
    }
    assert expected <= found, found


# ---------------------------------------------------------------------------------------------------------
# The whole series, executed with QUICK=1
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def published_series(tmp_path_factory, ml100k_dir):
    """Every notebook executed with QUICK=1 (metrics to a scratch folder), then published as pages and decks.

    Executed copies are kept in build/executed-quick and reused while newer than their notebook and the
    package code, so a second run only re-renders.
    """
    out = tmp_path_factory.mktemp("series")
    paths, failed = [], {}
    for path in series.notebooks():
        try:
            series.execute(path, quick=True, results=out / "results")
            paths.append(path)
        except Exception as err:  # reported with the page defects; the other notebooks are still checked
            failed[path.name] = [("notebook failed to execute", str(err).strip().splitlines()[-1][:160])]
    pages = pub.publish("html", paths, out / "html", quick=True)
    decks = pub.publish("slides", paths, out / "slides", quick=True)
    return out, pages, decks, failed


# Defects in the notebooks themselves, left for their authors: flip to a plain test once they are fixed.
def test_every_page_of_the_series_is_clean(browser, published_series):
    out, pages, decks, failed = published_series
    defects = {**failed, **_check(browser, [*pages, *decks, out / "html" / "index.html"], out)}
    assert not defects, report(defects)


def test_every_page_has_its_notebook_title_and_a_way_back_to_the_index(published_series):
    out, pages, decks, _ = published_series
    index = (out / "html" / "index.html").read_text(encoding="utf-8")
    for page in [*pages, *decks]:
        title, _ = series.title_and_summary(series.NOTEBOOKS / f"{page.stem}.ipynb")
        soup = _soup(page.read_text(encoding="utf-8"))
        assert soup.title.string == title, page
        assert soup.select_one("a.series-index")["href"] == "index.html", page
    assert all(f'href="{page.name}"' in index for page in pages)


def test_a_deck_shows_one_section_at_a_time_moves_with_arrow_keys_and_shows_a_figure(browser, published_series):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _, _, decks, _ = published_series
    deck = decks[0]
    nb = nbformat.read(series.NOTEBOOKS / f"{deck.stem}.ipynb", as_version=4)
    shown = [c for c in nb.cells if c.cell_type == "markdown" and "live-only" not in c.metadata.get("tags", [])]
    sections = sum(len(re.findall(r"^## ", c.source, re.M)) for c in shown)
    browser.get(deck.as_uri())
    slides = browser.find_elements(By.CSS_SELECTOR, ".reveal .slides > section")
    assert len(slides) == sections + 1, "one slide for the title and one per '## ' section"
    assert [s.is_displayed() for s in slides].count(True) == 1
    assert series.title_and_summary(series.NOTEBOOKS / f"{deck.stem}.ipynb")[0] in slides[0].text
    body = browser.find_element(By.TAG_NAME, "body")
    shown_figure = False
    for expected in range(1, len(slides)):
        body.send_keys(Keys.ARROW_RIGHT)
        assert browser.execute_script("return Reveal.getIndices().h") == expected
        assert [s.is_displayed() for s in slides].count(True) == 1
        present = browser.find_element(By.CSS_SELECTOR, ".reveal .slides > section.present")
        shown_figure |= any(
            img.is_displayed() and img.get_property("naturalWidth") > 0
            for img in present.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img")
        )
    body.send_keys(Keys.ARROW_LEFT)
    assert browser.execute_script("return Reveal.getIndices().h") == len(slides) - 2
    assert shown_figure, "no slide displayed a figure"
