"""A tiny recommendation store with known lists, shared by the API and page tests, on both back ends.

PostgreSQL comes from ``$RECSYS_TUTORIAL_TEST_PG`` (a URL whose role may create databases), which
``eval "$(.ci/start-postgres)"`` exports; each test module gets a fresh database, dropped afterwards. Without
the variable or the server, the PostgreSQL cases skip with the reason, except under CI (``$CI`` set), where
they fail: CI must exercise both back ends.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pandas as pd
import pytest

from recsys_tutorial.serving import RecommendationStore
from recsys_tutorial.serving.store import open_store

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
METRICS = {"ctx": {"valid_ndcg10": 0.05, "valid_hr10": 0.1}, "pop": {"valid_ndcg10": 0.03}}
# Known histories (items 16-20, never recommended): user -> items in the order they were rated.
RATED = {1: [16, 17, 18], 2: [19, 20], 3: [20, 16]}
BACKENDS = ("sqlite", "postgresql")
PG_ENV = "RECSYS_TUTORIAL_TEST_PG"


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


def history_frame() -> pd.DataFrame:
    """RATED as interactions one hour apart (raw ids, UTC timestamps), rows shuffled."""
    start = pd.Timestamp("1998-03-01 18:00", tz="UTC")
    rows = [(u, item, start + pd.Timedelta(hours=i)) for u, items in RATED.items() for i, item in enumerate(items)]
    return pd.DataFrame(rows, columns=["user", "item", "timestamp"]).sample(frac=1.0, random_state=0)


def make_store(db) -> RecommendationStore:
    """The known store at ``db`` (a SQLite path or a postgresql:// URL)."""
    store = open_store(db)
    store.write_items(ITEMS)
    store.write_history(history_frame())
    store.refresh("ctx", context_lists(), k=K, metrics=METRICS["ctx"])
    store.refresh("pop", any_lists(), k=K, metrics=METRICS["pop"])
    return store


def refresh_loop(db: str, stop, count, interval_s: float = 0.05) -> None:
    """Refresh 'pop' every ``interval_s`` until ``stop`` is set, counting in ``count``; then restore it.

    Meant for its own process (``multiprocessing``, spawn), as the batch pipeline runs beside the API: its
    pandas work then takes no time from the load generator's threads.
    """
    store = open_store(db)
    while not stop.is_set():
        store.refresh("pop", any_lists(first=14 if count.value % 2 == 0 else 6), k=K, metrics=METRICS["pop"])
        with count.get_lock():
            count.value += 1
        stop.wait(interval_s)
    store.refresh("pop", any_lists(first=6), k=K, metrics=METRICS["pop"])  # leave the known lists
    store.close()


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"CI must test the PostgreSQL store, but {reason}: run .ci/start-postgres first")
    pytest.skip(reason)


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty database on the test server (its URL), dropped on exit."""
    base = os.environ.get(PG_ENV)
    if not base:
        _unavailable(f'${PG_ENV} is not set (eval "$(.ci/start-postgres)" exports it)')
    import psycopg

    name = f"recsys_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(base, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        _unavailable(f"PostgreSQL at ${PG_ENV} does not answer ({str(err).strip()})")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # a generated name: identifiers cannot be parameters
        try:
            yield urlunsplit(urlsplit(base)._replace(path=f"/{name}"))
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # also ends leftover connections


@contextlib.contextmanager
def fresh_db(backend: str, folder: Path) -> Iterator[str | Path]:
    """An empty store location: a SQLite file in ``folder``, or a new PostgreSQL database."""
    if backend == "sqlite":
        yield folder / "rec.sqlite"
    else:
        with postgres_database() as url:
            yield url
