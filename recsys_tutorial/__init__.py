"""recsys_tutorial: the package behind the notebook series on recommender systems.

Laid out like the series: ``data`` (loaders, context, planted synthetic data), ``splits`` and
``sequences`` (protocols), ``metrics``, ``ranking`` and ``evaluation`` (full ranking, seen items
excluded), ``stats`` (intervals on differences), ``models`` (one file per family), ``plotting``,
``results`` (recorded headline numbers) and ``utils`` (seeding, the device).

Submodules are imported on first use (``rt.plotting``, ``rt.data``), so a light process such as the
read-only API never pays for torch, TensorLy or matplotlib.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"
__all__ = ["get_device", "seed_everything", "setup", "use_tensorly", "__version__"]

_FROM_UTILS = {"get_device", "seed_everything", "setup", "use_tensorly"}


def __getattr__(name: str):
    """``rt.setup`` and friends come from ``utils``; ``rt.plotting`` (any submodule) is imported when first used."""
    if name in _FROM_UTILS:
        return getattr(importlib.import_module(".utils", __name__), name)
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
