"""Plotting helpers: one style for every figure, labelled axes, a title that states the claim."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["use_style", "figure_claim", "axes", "bar", "dots", "line", "heatmap"]

_STYLE = {
    "figure.figsize": (7.0, 3.6),
    "figure.dpi": 110,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "font.size": 10,
}


def use_style() -> None:
    """Apply the series' matplotlib style (called by each notebook's first cell).

    In IPython (a notebook kernel) it also gives every figure output alt text: its claim (see
    :func:`figure_claim`), stored as ``metadata["image/png"]["alt"]`` where the published pages read it.
    Outside IPython (scripts, tests) only the style is applied.
    """
    plt.rcParams.update(_STYLE)
    _register_alt_text()


def figure_claim(fig: plt.Figure) -> str:
    """The claim a figure states: its suptitle, else its axes' titles joined by "; " ("" if it has none)."""
    suptitle = fig.get_suptitle().strip()
    if suptitle:
        return suptitle
    titles = [ax.get_title(loc).strip() for ax in fig.axes for loc in ("left", "center", "right")]
    return "; ".join(t for t in titles if t)


def _figure_alt_text(fig: plt.Figure) -> tuple[dict, dict]:
    """A mime bundle with no data and the figure's claim as the PNG's alt text (IPython merges it in)."""
    claim = figure_claim(fig)
    return {}, ({"image/png": {"alt": claim}} if claim else {})


def _register_alt_text() -> None:
    """Attach :func:`_figure_alt_text` to IPython's display of figures; a no-op without a running IPython.

    It goes through the mime-bundle formatter, which IPython consults before the per-type PNG formatter:
    the inline backend re-registers that one whenever its settings change, and would drop a wrapper.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # IPython is not installed: nothing displays figures as outputs
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    shell.display_formatter.mimebundle_formatter.for_type(plt.Figure, _figure_alt_text)


def axes(title: str, xlabel: str, ylabel: str, ax: plt.Axes | None = None, **subplots) -> plt.Axes:
    """A labelled axes: every figure says what it shows and what the axes measure."""
    if ax is None:
        _, ax = plt.subplots(**subplots)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return ax


def bar(labels: Sequence, values: Sequence[float], title: str, xlabel: str, ylabel: str, ax=None, **kw) -> plt.Axes:
    """A bar chart of ``values`` by ``labels``."""
    ax = axes(title, xlabel, ylabel, ax)
    ax.bar([str(x) for x in labels], values, **kw)
    ax.grid(axis="x", visible=False)
    return ax


def dots(
    labels: Sequence,
    intervals: Sequence,
    title: str,
    xlabel: str,
    ylabel: str,
    ax=None,
    reference: float | None = None,
    reference_label: str | None = None,
    highlight: Sequence = (),
) -> plt.Axes:
    """A dot per label with its interval as an error bar: for near-equal values, instead of bars from zero.

    ``intervals`` holds :class:`~recsys_tutorial.stats.Interval` objects or ``(estimate, low, high)`` tuples.
    ``reference`` draws a dashed horizontal line (0 for differences); labels in ``highlight`` get a second colour.
    When the value axis does not reach 0, its label says the axis is zoomed.
    """
    ax = axes(title, xlabel, ylabel, ax)
    rows = np.array([(i.estimate, i.low, i.high) if hasattr(i, "estimate") else tuple(i) for i in intervals], float)
    x = np.arange(len(rows))
    colours = ["C1" if label in highlight else "C0" for label in labels]
    for xi, (estimate, low, high), colour in zip(x, rows, colours, strict=True):
        ax.errorbar(xi, estimate, yerr=[[estimate - low], [high - estimate]], fmt="o", color=colour, capsize=4)
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--", linewidth=1, label=reference_label)
        if reference_label:
            ax.legend(frameon=False)
    ax.set_xticks(x, [str(label) for label in labels])
    ax.set_xlim(-0.5, len(rows) - 0.5)
    ax.grid(axis="x", visible=False)
    low, high = ax.get_ylim()
    if low > 0 or high < 0:
        ax.set_ylabel(f"{ylabel} (zoomed: axis does not start at 0)")
    return ax


def line(
    x, ys: dict[str, Sequence[float]], title: str, xlabel: str, ylabel: str, ax=None, log: str = "", **kw
) -> plt.Axes:
    """One line per entry of ``ys`` (label -> values), with a legend; ``log`` may be "x", "y" or "xy"."""
    ax = axes(title, xlabel, ylabel, ax)
    for label, y in ys.items():
        ax.plot(x, y, label=label, **kw)
    if "x" in log:
        ax.set_xscale("log")
    if "y" in log:
        ax.set_yscale("log")
    if len(ys) > 1:
        ax.legend(frameon=False)
    return ax


def heatmap(matrix, row_labels: Sequence, col_labels: Sequence, title: str, xlabel: str = "", ylabel: str = "",
            ax=None, fmt: str = ".2f", cmap: str = "viridis") -> plt.Axes:  # fmt: skip
    """A labelled heatmap with each cell's value written in it."""
    matrix = np.asarray(matrix, dtype=float)
    ax = axes(title, xlabel, ylabel, ax)
    image = ax.imshow(matrix, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(col_labels)), [str(c) for c in col_labels], rotation=30, ha="right")
    ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels])
    ax.grid(False)
    threshold = np.nanmean(matrix)
    for (r, c), v in np.ndenumerate(matrix):
        ax.text(c, r, format(v, fmt), ha="center", va="center", fontsize=8,
                color="white" if v < threshold else "black")  # fmt: skip
    ax.figure.colorbar(image, ax=ax, shrink=0.8)
    return ax
