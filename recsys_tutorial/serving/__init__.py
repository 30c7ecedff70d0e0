"""From model to product: batch top-K, the recommendation store, the API and page, and the batch pipeline.

``topk`` scores every user (and context) in batches and keeps each user's best unseen items;
``store`` keeps the lists in a database and refreshes one model atomically; ``api`` serves them with
FastAPI (and the instructor's page from ``page``); ``pipeline`` is the command a scheduler runs;
``server`` and ``load`` start the API on loopback and measure its latency.

Names are imported on first use: the API process imports ``store`` and never ``topk`` (torch).
"""

from __future__ import annotations

import importlib

__all__ = ["NO_CONTEXT", "RecommendationStore", "default_db_path", "TopKResult", "top_k"]

_HOME = {"NO_CONTEXT": "store", "RecommendationStore": "store", "default_db_path": "store",
         "TopKResult": "topk", "top_k": "topk"}  # fmt: skip


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
