"""From model to product: batch top-K, the SQLite store, the API and page, and the batch pipeline.

``topk`` scores every user (and context) in batches and keeps each user's best unseen items;
``store`` keeps the lists in SQLite and refreshes one model atomically; ``api`` serves them with
FastAPI (and the instructor's page from ``page``); ``pipeline`` is the command a scheduler runs;
``server`` and ``load`` start the API on loopback and measure its latency.
"""

from .store import NO_CONTEXT, RecommendationStore, default_db_path
from .topk import TopKResult, top_k

__all__ = ["NO_CONTEXT", "RecommendationStore", "default_db_path", "TopKResult", "top_k"]
