"""The recommendation store: precomputed top-K lists in SQLite, refreshed atomically.

SQLite is the embedded default: one file, no server, and in WAL mode readers never block the writer
nor see its uncommitted rows. A refresh replaces one model's lists inside ONE transaction, so the API
serves either the old lists or the new ones, never a mix or a half-written list. Every statement
takes its values as parameters (``?``), never by string formatting, so ids and names from a request
cannot change the SQL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

__all__ = ["SCHEMA", "NO_CONTEXT", "RecommendationStore", "default_db_path"]

NO_CONTEXT = "any"  # the context name of lists from models that ignore context

SCHEMA = """
CREATE TABLE IF NOT EXISTS recommendations (
    model        TEXT    NOT NULL,
    context      TEXT    NOT NULL,
    user         INTEGER NOT NULL,
    rank         INTEGER NOT NULL CHECK (rank >= 1),
    item         INTEGER NOT NULL,
    score        REAL    NOT NULL,
    generated_at TEXT    NOT NULL,
    PRIMARY KEY (model, context, user, rank)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS recommendations_by_user ON recommendations (model, user);
CREATE TABLE IF NOT EXISTS models (
    model        TEXT PRIMARY KEY,
    k            INTEGER NOT NULL,
    contexts     TEXT    NOT NULL,
    n_users      INTEGER NOT NULL,
    generated_at TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    item   INTEGER PRIMARY KEY,
    title  TEXT NOT NULL,
    year   INTEGER,
    genres TEXT NOT NULL
);
"""

_LIST_COLUMNS = ["user", "context", "rank", "item", "score"]


def default_db_path() -> Path:
    """``data/recommendations.sqlite`` in the data folder (git-ignored, like MovieLens)."""
    from ..data import data_dir

    return Path(data_dir()) / "recommendations.sqlite"


class RecommendationStore:
    """Top-K lists, their models and item details in one SQLite file.

    One connection per thread (SQLite connections must not cross threads); the API's worker threads
    each get their own. ``user`` and ``item`` are the raw MovieLens ids the outside world uses.
    """

    def __init__(self, path: str | Path | None = None, timeout_s: float = 10.0):
        self.path = Path(path) if path is not None else default_db_path()
        self.timeout_s = timeout_s
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; refresh() opens its own explicitly.
        db = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")  # readers see the last committed state while a refresh runs
        db.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint; WAL keeps it consistent
        return db

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection."""
        if getattr(self._local, "db", None) is None:
            self._local.db = self._connect()
        return self._local.db

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Run this thread's reads inside one read transaction: they all see the same committed state."""
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    def refresh(self, model: str, lists: pd.DataFrame, k: int, generated_at: str | None = None) -> str:
        """Replace every list of ``model`` by ``lists`` (columns user, context, rank, item, score) atomically.

        Runs ``DELETE`` of the old lists and ``INSERT`` of the new ones in one transaction: on any
        error (a duplicate rank, a missing score) it rolls back and the old lists stay. Returns the
        ``generated_at`` stamp (UTC, ISO 8601) written with the rows.
        """
        missing = [c for c in _LIST_COLUMNS if c not in lists]
        if missing:
            raise ValueError(f"lists lack column(s) {missing}; expected {_LIST_COLUMNS}")
        if not model or not isinstance(model, str):
            raise ValueError(f"model must be a non-empty name, got {model!r}")
        stamp = generated_at or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        rows = zip(
            [model] * len(lists),
            lists["context"].astype(str),
            lists["user"].astype(int).tolist(),
            lists["rank"].astype(int).tolist(),
            lists["item"].astype(int).tolist(),
            lists["score"].astype(float).tolist(),
            [stamp] * len(lists),
            strict=True,
        )
        contexts = ",".join(sorted(lists["context"].astype(str).unique()))
        db = self.db
        db.execute("BEGIN IMMEDIATE")  # take the write lock now: one writer, readers carry on
        try:
            db.execute("DELETE FROM recommendations WHERE model = ?", (model,))
            db.executemany("INSERT INTO recommendations VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute(
                "INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?, ?)",
                (model, int(k), contexts, int(lists["user"].nunique()), stamp),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return stamp

    def write_items(self, items: pd.DataFrame) -> int:
        """Store item details (columns item_id, title, year, genres as tuples); returns the row count."""
        rows = [
            (int(r.item_id), str(r.title), None if pd.isna(r.year) else int(r.year), "|".join(r.genres))
            for r in items.itertuples(index=False)
        ]
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM items")
            db.executemany("INSERT INTO items VALUES (?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(rows)

    def recommendations(self, user: int, model: str, context: str, k: int) -> list[dict]:
        """The first ``k`` entries of one stored list, with item details, best first (empty if none)."""
        cursor = self.db.execute(
            "SELECT r.rank, r.item, r.score, i.title, i.year, i.genres, r.generated_at "
            "FROM recommendations r LEFT JOIN items i ON i.item = r.item "
            "WHERE r.model = ? AND r.context = ? AND r.user = ? AND r.rank <= ? ORDER BY r.rank",
            (model, context, int(user), int(k)),
        )
        names = [c[0] for c in cursor.description]
        out = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        for row in out:
            row["genres"] = row["genres"].split("|") if row["genres"] else []
        return out

    def models(self) -> dict[str, dict]:
        """Stored models: name -> {k, contexts (list), n_users, generated_at}."""
        rows = self.db.execute("SELECT model, k, contexts, n_users, generated_at FROM models ORDER BY model")
        return {
            m: {"k": k, "contexts": c.split(","), "n_users": n, "generated_at": at}
            for m, k, c, n, at in rows.fetchall()
        }

    def users(self, model: str) -> list[int]:
        """Users with a stored list for ``model``, ascending."""
        rows = self.db.execute("SELECT DISTINCT user FROM recommendations WHERE model = ? ORDER BY user", (model,))
        return [u for (u,) in rows.fetchall()]

    def has_user(self, user: int, model: str) -> bool:
        row = self.db.execute("SELECT 1 FROM recommendations WHERE model = ? AND user = ? LIMIT 1", (model, int(user)))
        return row.fetchone() is not None

    def item(self, item: int) -> dict | None:
        """Details of one item, or None if unknown."""
        row = self.db.execute("SELECT item, title, year, genres FROM items WHERE item = ?", (int(item),)).fetchone()
        if row is None:
            return None
        return {"item": row[0], "title": row[1], "year": row[2], "genres": row[3].split("|") if row[3] else []}

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        if getattr(self._local, "db", None) is not None:
            self._local.db.close()
            self._local.db = None
