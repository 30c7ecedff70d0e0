"""The recommendation store: precomputed top-K lists in SQLite or PostgreSQL, refreshed atomically.

One interface, two back ends, chosen by :func:`open_store`: a file path opens SQLite (the embedded
default: one file, no server; in WAL mode readers never block the writer nor see its uncommitted rows), a
``postgresql://`` URL opens PostgreSQL (a server that several machines can share). Both keep the same tables
and run the same SQL, written once with ``?`` placeholders.

A refresh checks the new lists first (every list exactly K items ranked 1..K, finite scores, no repeated
item, every expected user and context present) and refuses bad ones with a ``ValueError`` before touching the
database. It then replaces one model's lists, and its evaluation metrics, inside ONE transaction: readers see
the old lists or the new ones, never a mix or a half-written list. Multi-statement reads run in one snapshot
(:meth:`RecommendationStore.snapshot`; REPEATABLE READ on PostgreSQL). Every value reaches the SQL as a
parameter, never by string formatting, so ids and names from a request cannot change a statement; table and
column names come from this module's constants only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from .checks import MODEL_NAME_MAX, NO_CONTEXT, check_model_name, history_rows, metrics_json, validate_lists

__all__ = [
    "SCHEMA", "NO_CONTEXT", "MODEL_NAME_MAX", "HISTORY_KEEP", "RecommendationStore", "open_store",
    "default_db_path", "is_postgres_url", "redact", "schema", "validate_lists",
]  # fmt: skip

HISTORY_KEEP = 100  # most recent interactions kept per user by write_history (and the API's largest n)

# Columns of each table, in insert order. "user" is quoted everywhere: it is a reserved word in PostgreSQL.
COLUMNS = {
    "recommendations": ("model", "context", '"user"', "rank", "item", "score", "generated_at"),
    "models": ("model", "k", "contexts", "n_users", "generated_at", "metrics"),
    "items": ("item", "title", "year", "genres"),
    "history": ('"user"', "position", "item", "rated_at"),
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS recommendations (
    model        TEXT    NOT NULL,
    context      TEXT    NOT NULL,
    "user"       {int}   NOT NULL,
    rank         INTEGER NOT NULL CHECK (rank >= 1),
    item         {int}   NOT NULL,
    score        {real}  NOT NULL,
    generated_at TEXT    NOT NULL,
    PRIMARY KEY (model, context, "user", rank)
){without_rowid};
CREATE INDEX IF NOT EXISTS recommendations_by_user ON recommendations (model, "user");
CREATE TABLE IF NOT EXISTS models (
    model        TEXT PRIMARY KEY,
    k            INTEGER NOT NULL,
    contexts     TEXT    NOT NULL,
    n_users      INTEGER NOT NULL,
    generated_at TEXT    NOT NULL,
    metrics      TEXT    NOT NULL DEFAULT '{{}}'
);
CREATE TABLE IF NOT EXISTS items (
    item   {int} PRIMARY KEY,
    title  TEXT NOT NULL,
    year   INTEGER,
    genres TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    "user"   {int}   NOT NULL,
    position INTEGER NOT NULL CHECK (position >= 1),
    item     {int}   NOT NULL,
    rated_at TEXT    NOT NULL,
    PRIMARY KEY ("user", position)
){without_rowid};
"""

# The only differences between the back ends: 64-bit integers, double-precision floats, SQLite's table layout.
_DIALECTS = {
    "sqlite": {"int": "INTEGER", "real": "REAL", "without_rowid": " WITHOUT ROWID"},
    "postgresql": {"int": "BIGINT", "real": "DOUBLE PRECISION", "without_rowid": ""},
}


def schema(dialect: str = "sqlite") -> str:
    """The ``CREATE`` statements of the store for ``"sqlite"`` or ``"postgresql"``."""
    if dialect not in _DIALECTS:
        raise ValueError(f"unknown SQL dialect {dialect!r}: use one of {sorted(_DIALECTS)}")
    return _SCHEMA.format(**_DIALECTS[dialect])


SCHEMA = schema("sqlite")


def default_db_path() -> Path:
    """``data/recommendations.sqlite`` in the data folder (git-ignored, like MovieLens)."""
    from ..data import data_dir

    return Path(data_dir()) / "recommendations.sqlite"


def is_postgres_url(url_or_path: str | Path | None) -> bool:
    """Whether ``url_or_path`` names a PostgreSQL server (``postgresql://`` or ``postgres://``)."""
    return isinstance(url_or_path, str) and url_or_path.startswith(("postgresql://", "postgres://"))


def redact(url_or_path: str | Path) -> str:
    """The location without its password, fit for logs and summaries."""
    text = str(url_or_path)
    if not is_postgres_url(text):
        return text
    parts = urlsplit(text)
    if parts.password is None:
        return text
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def open_store(url_or_path: str | Path | None = None, **options) -> RecommendationStore:
    """Open the store at a ``postgresql://`` URL or a SQLite path.

    ``None`` reads ``$RECSYS_TUTORIAL_DB`` and falls back to :func:`default_db_path`. ``options`` go to
    the back end's constructor (``timeout_s``). Same as ``RecommendationStore(url_or_path)``.
    """
    if url_or_path is None or str(url_or_path) == "":
        url_or_path = os.environ.get("RECSYS_TUTORIAL_DB") or None
    return RecommendationStore(url_or_path, **options)


# ---------------------------------------------------------------- the store


class RecommendationStore:
    """Top-K lists, their models (with metrics), item details and user histories in one database.

    ``RecommendationStore(url_or_path)`` opens :class:`PostgresStore` for a ``postgresql://`` URL and
    :class:`SQLiteStore` for a path (default ``data/recommendations.sqlite``), as :func:`open_store` does.
    One connection per thread: the API's worker threads each get their own. ``user`` and ``item`` are the
    raw MovieLens ids the outside world uses.
    """

    dialect: str = ""

    def __new__(cls, url_or_path: str | Path | None = None, **options):
        if cls is RecommendationStore:  # pick the back end, as pathlib.Path picks the flavour
            from .backends import PostgresStore, SQLiteStore

            cls = PostgresStore if is_postgres_url(url_or_path) else SQLiteStore
        return super().__new__(cls)

    def __init__(self, url_or_path: str | Path | None = None, timeout_s: float = 10.0):
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._create_schema()

    # Back-end hooks: a connection, a write transaction, a snapshot, a bulk insert, the schema.
    def _connect(self):
        raise NotImplementedError

    def _write(self, tables: Sequence[str]) -> contextlib.AbstractContextManager:
        raise NotImplementedError

    def _begin_snapshot(self) -> contextlib.AbstractContextManager:
        raise NotImplementedError

    def _insert_many(self, table: str, rows: list[tuple]) -> None:
        raise NotImplementedError

    def _create_schema(self) -> None:
        raise NotImplementedError

    def _execute(self, sql: str, params: Sequence = ()):
        """Run one statement written with ``?`` placeholders on this thread's connection; returns the cursor."""
        return self.db.execute(sql, tuple(params))

    @property
    def location(self) -> str:
        """Where the store lives (a path, or a URL without its password)."""
        raise NotImplementedError

    @property
    def db(self):
        """This thread's connection (opened on first use)."""
        if getattr(self._local, "db", None) is None:
            self._local.db = self._connect()
        return self._local.db

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """Rows of one read-only ``SELECT`` written with ``?`` placeholders (for notebooks and tests)."""
        return self._execute(sql, params).fetchall()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Run this thread's reads inside one read transaction: they all see the same committed state.

        Nested calls join the outer snapshot.
        """
        if getattr(self._local, "in_snapshot", False):
            yield
            return
        with self._begin_snapshot():
            self._local.in_snapshot = True
            try:
                yield
            finally:
                self._local.in_snapshot = False

    # ------------------------------------------------------------ writes

    def refresh(
        self, model: str, lists: pd.DataFrame, k: int, *, metrics: Mapping[str, float] | None = None,
        expected_users: Iterable[int] | None = None, expected_contexts: Iterable[str] | None = None,
        generated_at: str | None = None,
    ) -> str:  # fmt: skip
        """Replace every list of ``model`` by ``lists``, and its metrics, in one transaction.

        Parameters
        ----------
        model : str
            The model's name (1..64 characters), as the API and page show it.
        lists : DataFrame
            Columns ``user, context, rank, item, score`` with raw ids; checked by :func:`validate_lists`.
        k : int
            Items per list; every list must hold exactly ``k``.
        metrics : mapping of str to float, optional
            The model's evaluation metrics (e.g. ``{"valid_ndcg10": 0.05}``), stored with the lists and
            returned by :meth:`models`, so a scheduled pipeline can compare a new model with the served one.
        expected_users, expected_contexts : optional
            Users (raw ids) and context names that must each have a list (see :func:`validate_lists`).
        generated_at : str, optional
            The stamp to store (default: now, UTC, ISO 8601).

        Returns
        -------
        str
            The ``generated_at`` stamp written with the rows.

        Bad lists raise ``ValueError`` before anything is written. Then ``DELETE`` of the old rows and
        ``INSERT`` of the new ones run in one transaction: on any error it rolls back and the old lists and
        metrics stay, and readers never see a state in between.
        """
        check_model_name(model)
        frame = validate_lists(lists, k, expected_users, expected_contexts)
        metrics_text = metrics_json(metrics)
        stamp = generated_at or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        n = len(frame)
        rows = list(
            zip([model] * n, frame["context"].tolist(), frame["user"].tolist(), frame["rank"].tolist(),
                frame["item"].tolist(), frame["score"].astype(float).tolist(), [stamp] * n, strict=True)
        )  # fmt: skip
        contexts = ",".join(sorted(frame["context"].unique()))
        with self._write(("recommendations", "models")):
            self._execute("DELETE FROM recommendations WHERE model = ?", (model,))
            self._insert_many("recommendations", rows)
            self._execute("DELETE FROM models WHERE model = ?", (model,))
            self._insert_many("models", [(model, int(k), contexts, int(frame["user"].nunique()), stamp, metrics_text)])
        return stamp

    def write_items(self, items: pd.DataFrame) -> int:
        """Replace the item details (columns item_id, title, year, genres as tuples) in one transaction."""
        if items.empty:
            raise ValueError("items are empty: writing them would delete every stored title, so it is refused")
        rows = [
            (int(r.item_id), str(r.title), None if pd.isna(r.year) else int(r.year), "|".join(r.genres))
            for r in items.itertuples(index=False)
        ]
        with self._write(("items",)):
            self._execute("DELETE FROM items")
            self._insert_many("items", rows)
        return len(rows)

    def write_history(self, history: pd.DataFrame, keep: int = HISTORY_KEEP) -> int:
        """Replace every user's recent history in one transaction; returns the rows stored.

        Parameters
        ----------
        history : DataFrame
            Columns ``user, item`` (raw ids) and ``timestamp`` (timezone-aware), one row per interaction.
        keep : int
            The most recent interactions kept per user (the API serves up to :data:`HISTORY_KEEP`).
        """
        rows = history_rows(history, keep)
        with self._write(("history",)):
            self._execute("DELETE FROM history")
            self._insert_many("history", rows)
        return len(rows)

    # ------------------------------------------------------------ reads

    def recommendations(self, user: int, model: str, context: str, k: int) -> list[dict]:
        """The first ``k`` entries of one stored list, with item details, best first (empty if none)."""
        cursor = self._execute(
            "SELECT r.rank, r.item, r.score, i.title, i.year, i.genres, r.generated_at "
            "FROM recommendations r LEFT JOIN items i ON i.item = r.item "
            'WHERE r.model = ? AND r.context = ? AND r."user" = ? AND r.rank <= ? ORDER BY r.rank',
            (model, context, int(user), int(k)),
        )
        return _with_genres(cursor)

    def history(self, user: int, n: int = 10) -> list[dict]:
        """The user's ``n`` most recent interactions with item details, latest first (empty if none)."""
        cursor = self._execute(
            "SELECT h.position, h.item, i.title, i.year, i.genres, h.rated_at AS timestamp "
            "FROM history h LEFT JOIN items i ON i.item = h.item "
            'WHERE h."user" = ? AND h.position <= ? ORDER BY h.position',
            (int(user), int(n)),
        )
        return _with_genres(cursor)

    def models(self) -> dict[str, dict]:
        """Stored models: name -> {k, contexts (list), n_users, generated_at, metrics (dict)}."""
        rows = self._execute("SELECT model, k, contexts, n_users, generated_at, metrics FROM models ORDER BY model")
        return {
            m: {"k": k, "contexts": c.split(","), "n_users": n, "generated_at": at, "metrics": json.loads(js)}
            for m, k, c, n, at, js in rows.fetchall()
        }

    def users(self, model: str) -> list[int]:
        """Users with a stored list for ``model``, ascending."""
        rows = self._execute('SELECT DISTINCT "user" FROM recommendations WHERE model = ? ORDER BY "user"', (model,))
        return [u for (u,) in rows.fetchall()]

    def has_user(self, user: int, model: str) -> bool:
        row = self._execute('SELECT 1 FROM recommendations WHERE model = ? AND "user" = ? LIMIT 1', (model, int(user)))
        return row.fetchone() is not None

    def item(self, item: int) -> dict | None:
        """Details of one item, or None if unknown."""
        row = self._execute("SELECT item, title, year, genres FROM items WHERE item = ?", (int(item),)).fetchone()
        if row is None:
            return None
        return {"item": row[0], "title": row[1], "year": row[2], "genres": row[3].split("|") if row[3] else []}

    def n_items(self) -> int:
        """Items with stored details."""
        return self._execute("SELECT COUNT(*) FROM items").fetchone()[0]

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        if getattr(self._local, "db", None) is not None:
            self._local.db.close()
            self._local.db = None


def _with_genres(cursor) -> list[dict]:
    """Rows as dicts, the stored 'A|B' genres as a list."""
    names = [c[0] for c in cursor.description]
    out = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for row in out:
        row["genres"] = row["genres"].split("|") if row["genres"] else []
    return out


def __getattr__(name: str):
    """``SQLiteStore`` and ``PostgresStore`` live in :mod:`.backends` (which builds on this module)."""
    if name in ("SQLiteStore", "PostgresStore"):
        from . import backends

        return getattr(backends, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
