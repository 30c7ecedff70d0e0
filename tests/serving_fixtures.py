"""A tiny recommendation store with known lists, shared by the API and page tests."""

from __future__ import annotations

import pandas as pd

from recsys_tutorial.serving import RecommendationStore

K = 5
USERS = (1, 2, 3)
ITEMS = pd.DataFrame(
    {
        "item_id": range(1, 21),
        "title": [f"Film {i}" for i in range(1, 21)],
        "year": [1990 + i for i in range(1, 21)],
        "genres": [("Drama",) if i % 2 else ("Comedy", "Romance") for i in range(1, 21)],
    }
)
# Known lists: mornings recommend items 1-5, evenings 11-15 (user u's list shifted by u), "any" 6-10.
LISTS = {"morning": 1, "evening": 11}


def context_lists(offset: int = 0) -> pd.DataFrame:
    """Per-context lists of the 'ctx' model; ``offset`` shifts the items (a refreshed model)."""
    rows = [
        (u, context, r, first + offset + (u + r - 1) % K, 1.0 - r / 10)
        for context, first in LISTS.items()
        for u in USERS
        for r in range(1, K + 1)
    ]
    return pd.DataFrame(rows, columns=["user", "context", "rank", "item", "score"])


def any_lists(first: int = 6) -> pd.DataFrame:
    """Context-free lists of the 'pop' model: items first..first+K-1 for everyone."""
    rows = [(u, "any", r, first + r - 1, 1.0 / r) for u in USERS for r in range(1, K + 1)]
    return pd.DataFrame(rows, columns=["user", "context", "rank", "item", "score"])


def make_store(path) -> RecommendationStore:
    store = RecommendationStore(path)
    store.write_items(ITEMS)
    store.refresh("ctx", context_lists(), k=K)
    store.refresh("pop", any_lists(), k=K)
    return store
