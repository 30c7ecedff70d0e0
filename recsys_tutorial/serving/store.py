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
import math
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd

from ..data.context import TIME_OF_DAY

__all__ = [
    "SCHEMA", "NO_CONTEXT", "HISTORY_KEEP", "RecommendationStore", "SQLiteStore", "PostgresStore", "open_store",
    "default_db_path", "is_postgres_url", "redact", "schema", "validate_lists",
]  # fmt: skip

NO_CONTEXT = "any"  # the context name of lists from models that ignore context
HISTORY_KEEP = 100  # most recent interactions kept per user by write_history (and the API's largest n)
MODEL_NAME_MAX = 64  # the API accepts model names up to this length

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
_LIST_COLUMNS = ["user", "context", "rank", "item", "score"]
_HISTORY_COLUMNS = ["user", "item", "timestamp"]


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


# ---------------------------------------------------------------- checks before any write


def _some(labels: Sequence[str], n: int = 5) -> str:
    """'a, b, c' or 'a, b, c, d, e and 7 more'."""
    shown = ", ".join(labels[:n])
    return shown if len(labels) <= n else f"{shown} and {len(labels) - n} more"


def _pairs(frame: pd.DataFrame) -> list[str]:
    """'user 3 at 'morning'' for each (user, context) row of ``frame``."""
    return [f"user {u} at {c!r}" for u, c in zip(frame["user"], frame["context"], strict=True)]


def _check_columns(frame: pd.DataFrame, required: list[str], what: str) -> None:
    missing = [c for c in required if c not in frame]
    if missing:
        raise ValueError(f"{what} lack column(s) {missing}; expected {required}")
    nulls = [c for c in required if c != "score" and frame[c].isna().any()]  # a NaN score has its own message
    if nulls:
        raise ValueError(f"{what} have missing values in column(s) {nulls}: drop or fill those rows first")
    not_int = [c for c in required if c in ("user", "item", "rank") and not pd.api.types.is_integer_dtype(frame[c])]
    if not_int:
        raise ValueError(f"{what} column(s) {not_int} must hold integers (raw ids, ranks): cast with .astype('int64')")


def _check_contexts(contexts: Iterable[str]) -> list[str]:
    """Stored context names, sorted: all from TIME_OF_DAY, or the single NO_CONTEXT."""
    names = sorted(set(contexts))
    unknown = [c for c in names if c not in (*TIME_OF_DAY, NO_CONTEXT)]
    if unknown:
        raise ValueError(
            f"unknown context name(s) {unknown}: lists are stored per time of day {list(TIME_OF_DAY)}, "
            f"or as {NO_CONTEXT!r} for a model that ignores context"
        )
    if NO_CONTEXT in names and len(names) > 1:
        raise ValueError(
            f"lists mix {NO_CONTEXT!r} with times of day {[c for c in names if c != NO_CONTEXT]}: a model stores "
            f"either one list per time of day or one list for all ({NO_CONTEXT!r})"
        )
    return names


def _check_scores(frame: pd.DataFrame) -> None:
    if not pd.api.types.is_numeric_dtype(frame["score"]):
        raise ValueError(f"scores must be numbers, got dtype {frame['score'].dtype}")
    bad = frame[~np.isfinite(frame["score"].to_numpy(dtype=float))].drop_duplicates(["user", "context"])
    if len(bad):
        raise ValueError(
            f"{len(bad)} list(s) hold NaN or infinite scores ({_some(_pairs(bad))}): rank only items with a "
            "finite score (top_k drops items scored -inf; a NaN score means a broken model)"
        )


def _check_ranks(frame: pd.DataFrame, k: int) -> None:
    """Every (user, context) list: exactly k rows, ranks 1..k in order, no item twice."""
    keys = ["user", "context"]
    frame = frame.sort_values([*keys, "rank"], kind="stable")
    size = frame.groupby(keys, sort=False)["rank"].transform("size")
    position = frame.groupby(keys, sort=False).cumcount() + 1  # 1..size within each list
    short = frame[size < k].drop_duplicates(keys)
    if len(short):
        raise ValueError(
            f"{len(short)} list(s) have fewer than k={k} items ({_some(_pairs(short))}): every list must be "
            "complete. Those users have fewer unseen items than k: lower k, or leave them out (and out of "
            "expected_users)"
        )
    wrong = frame[(size > k) | (frame["rank"] != position)].drop_duplicates(keys)
    if len(wrong):
        raise ValueError(
            f"{len(wrong)} list(s) do not rank their items exactly 1..{k} ({_some(_pairs(wrong))}): each list "
            f"needs k={k} rows with ranks 1..{k}, each once (a repeated or missing rank, or k too small)"
        )
    repeated = frame[frame.duplicated([*keys, "item"])].drop_duplicates(keys)
    if len(repeated):
        raise ValueError(
            f"{len(repeated)} list(s) recommend the same item twice ({_some(_pairs(repeated))}): each item may "
            "appear once per list"
        )


def _check_coverage(frame: pd.DataFrame, users: Iterable[int] | None, contexts: Iterable[str] | None) -> None:
    """Every expected (user, context) has a list, and there is no list for anyone else."""
    have = set(zip(frame["user"].tolist(), frame["context"].tolist(), strict=True))
    users = sorted({int(u) for u in users}) if users is not None else sorted({u for u, _ in have})
    contexts = _check_contexts(contexts) if contexts is not None else sorted({c for _, c in have})
    want = {(u, c) for u in users for c in contexts}
    missing = sorted(want - have, key=lambda p: (p[1], p[0]))
    if missing:
        raise ValueError(
            f"{len(missing)} expected list(s) are missing ({_some([f'user {u} at {c!r}' for u, c in missing])}): "
            "serving would answer 404 for them. Compute lists for every expected user and context, or pass "
            "the users and contexts you mean to serve as expected_users and expected_contexts"
        )
    extra = sorted(have - want, key=lambda p: (p[1], p[0]))
    if extra:
        raise ValueError(
            f"{len(extra)} list(s) are for users or contexts that were not expected "
            f"({_some([f'user {u} at {c!r}' for u, c in extra])}): check the id mapping (lists carry raw ids) "
            "or add them to expected_users and expected_contexts"
        )


def validate_lists(
    lists: pd.DataFrame, k: int, expected_users: Iterable[int] | None = None,
    expected_contexts: Iterable[str] | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Check top-K lists before they replace stored ones; return them sorted, or raise a ``ValueError``.

    Parameters
    ----------
    lists : DataFrame
        Columns ``user, context, rank, item, score``, one row per (user, context, rank); raw ids.
    k : int
        The list length: every list must hold exactly ``k`` items ranked ``1..k``.
    expected_users, expected_contexts : optional
        The users (raw ids) and context names that must each have a list. By default, every user and
        context that appears in ``lists``, so the grid users x contexts must still be complete.

    The checks: the columns exist with no missing values; ``k >= 1``; ``lists`` is not empty (an empty
    refresh would delete every list of the model); context names are times of day from
    ``data.context.TIME_OF_DAY`` or, alone, ``NO_CONTEXT``; every score is finite; each (user, context)
    list has exactly ``k`` rows, ranks ``1..k`` and no repeated item; and the lists cover exactly
    ``expected_users x expected_contexts``. Each message names the affected lists and the fix.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a whole number >= 1 (the length of every list), got {k!r}")
    _check_columns(lists, _LIST_COLUMNS, "lists")
    if lists.empty:
        raise ValueError(
            "lists are empty: a refresh would delete every stored list of this model, so it is refused and "
            "the old lists are kept. Check that the top-K step produced rows (users, k, seen items)"
        )
    frame = lists[_LIST_COLUMNS].astype({"context": str}).reset_index(drop=True)
    _check_contexts(frame["context"])
    _check_scores(frame)
    _check_ranks(frame, int(k))
    _check_coverage(frame, expected_users, expected_contexts)
    return frame.sort_values(["user", "context", "rank"], kind="stable").reset_index(drop=True)


def _metrics_json(metrics: Mapping[str, float] | None) -> str:
    """Evaluation metrics as JSON: names -> finite numbers (e.g. {"valid_ndcg10": 0.05})."""
    if metrics is None:
        return "{}"
    if not isinstance(metrics, Mapping):
        raise ValueError(f"metrics must be a mapping name -> number, e.g. {{'valid_ndcg10': 0.05}}; got {metrics!r}")
    clean = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"metric names must be non-empty strings, got {name!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"metric {name!r} must be a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ValueError(f"metric {name!r} is {value}: store only finite metrics (a NaN means a failed evaluation)")
        clean[name] = float(value)
    return json.dumps(clean, sort_keys=True)


def _check_model_name(model: str) -> None:
    if not isinstance(model, str) or not 1 <= len(model) <= MODEL_NAME_MAX:
        raise ValueError(f"model must be a name of 1..{MODEL_NAME_MAX} characters (the API's limit), got {model!r}")


def _history_rows(frame: pd.DataFrame, keep: int) -> list[tuple]:
    """(user, position, item, rated_at) rows: each user's ``keep`` most recent interactions, position 1 = latest."""
    if isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 1:
        raise ValueError(f"keep must be a whole number >= 1 (interactions kept per user), got {keep!r}")
    if "user_id" in frame or "item_id" in frame:
        raise ValueError(
            "history has user_id/item_id columns: pass raw ids as user and item, e.g. "
            "frame[['user_id', 'item_id', 'timestamp']].rename(columns={'user_id': 'user', 'item_id': 'item'})"
        )
    _check_columns(frame, _HISTORY_COLUMNS, "history")
    if frame.empty:
        raise ValueError("history is empty: writing it would delete every stored history, so it is refused")
    ts = frame["timestamp"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise ValueError(
            f"history timestamps must be timezone-aware datetimes (load_movielens gives UTC), got dtype {ts.dtype}: "
            "use pd.to_datetime(..., utc=True) or .dt.tz_localize('UTC')"
        )
    # Latest first; equal timestamps (common: ratings entered in one session) fall back to the item id.
    out = pd.DataFrame({"user": frame["user"], "item": frame["item"], "at": ts.dt.tz_convert("UTC")})
    out = out.sort_values(["user", "at", "item"], ascending=[True, False, True], kind="stable")
    out["position"] = out.groupby("user").cumcount() + 1
    out = out[out["position"] <= keep]
    rated_at = out["at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return list(
        zip(out["user"].tolist(), out["position"].tolist(), out["item"].tolist(), rated_at.tolist(), strict=True)
    )


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
        _check_model_name(model)
        frame = validate_lists(lists, k, expected_users, expected_contexts)
        metrics_json = _metrics_json(metrics)
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
            self._insert_many("models", [(model, int(k), contexts, int(frame["user"].nunique()), stamp, metrics_json)])
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
        rows = _history_rows(history, keep)
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


class SQLiteStore(RecommendationStore):
    """The store in one SQLite file (WAL mode: readers carry on while a refresh writes)."""

    dialect = "sqlite"

    def __init__(self, path: str | Path | None = None, timeout_s: float = 10.0):
        if is_postgres_url(path):
            raise ValueError(f"{redact(path)} is a PostgreSQL URL: open it with open_store(url)")
        self.path = Path(path) if path is not None else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(path, timeout_s)

    @property
    def location(self) -> str:
        return str(self.path)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; writes and snapshots open their own explicitly.
        db = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")  # readers see the last committed state while a refresh runs
        db.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint; WAL keeps it consistent
        return db

    def _create_schema(self) -> None:
        self.db.executescript(SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(models)")}
        if "metrics" not in columns:  # a store written before metrics were kept
            self.db.execute("ALTER TABLE models ADD COLUMN metrics TEXT NOT NULL DEFAULT '{}'")

    @contextlib.contextmanager
    def _write(self, tables: Sequence[str]) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")  # take the write lock now: one writer, readers carry on
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def _begin_snapshot(self) -> Iterator[None]:
        self.db.execute("BEGIN")  # a deferred read transaction: the first SELECT fixes the snapshot
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    def _insert_many(self, table: str, rows: list[tuple]) -> None:
        columns = COLUMNS[table]
        marks = ", ".join("?" * len(columns))
        self.db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


class PostgresStore(RecommendationStore):
    """The store in a PostgreSQL database, reached by a ``postgresql://user:password@host:port/db`` URL.

    Connections run in autocommit mode, so a lone ``SELECT`` holds no transaction open; writes take a
    ``SHARE ROW EXCLUSIVE`` lock on their tables (one writer at a time, readers never blocked) inside one
    transaction, and :meth:`snapshot` opens a ``REPEATABLE READ, READ ONLY`` transaction.
    """

    dialect = "postgresql"
    _SCHEMA_LOCK = 7_215_301  # advisory lock id: processes that create the schema at once take turns

    def __init__(self, url: str, timeout_s: float = 10.0):
        if not is_postgres_url(url):
            raise ValueError(f"expected a postgresql:// URL, got {url!r}")
        try:
            import psycopg  # noqa: F401  (only the PostgreSQL back end needs it)
        except ImportError as err:
            raise ValueError("PostgreSQL needs psycopg 3: pip install 'recsys-tutorial[postgres]'") from err
        self.url = url
        super().__init__(url, timeout_s)

    @property
    def location(self) -> str:
        return redact(self.url)

    @property
    def db(self):
        conn = getattr(self._local, "db", None)
        if conn is not None and (conn.closed or conn.broken):  # the server restarted: reconnect
            self._local.db = None
        return super().db

    def _connect(self):
        import psycopg

        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self.timeout_s)))
        except psycopg.OperationalError as err:
            raise ConnectionError(f"cannot connect to PostgreSQL at {self.location}: {err}".strip()) from err

    def _execute(self, sql: str, params: Sequence = ()):
        # psycopg's placeholder is %s; None (not an empty tuple) when there are no values, as for DDL.
        return self.db.execute(sql.replace("?", "%s"), tuple(params) or None)

    def _create_schema(self) -> None:
        with self.db.transaction():
            self._execute("SELECT pg_advisory_xact_lock(?)", (self._SCHEMA_LOCK,))
            for statement in filter(str.strip, schema("postgresql").split(";")):
                self._execute(statement)
            self._execute("ALTER TABLE models ADD COLUMN IF NOT EXISTS metrics TEXT NOT NULL DEFAULT '{}'")

    @contextlib.contextmanager
    def _write(self, tables: Sequence[str]) -> Iterator[None]:
        from psycopg import IsolationLevel, sql

        conn = self.db
        conn.isolation_level, conn.read_only = IsolationLevel.READ_COMMITTED, False  # sent with the next BEGIN
        with conn.transaction():  # commits at the end, rolls back on any error
            self._execute("SELECT set_config('lock_timeout', ?, true)", (f"{int(self.timeout_s * 1000)}ms",))
            names = sql.SQL(", ").join(map(sql.Identifier, tables))
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(names))
            yield

    @contextlib.contextmanager
    def _begin_snapshot(self) -> Iterator[None]:
        from psycopg import IsolationLevel

        conn = self.db
        # One round trip: psycopg opens with BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY.
        conn.isolation_level, conn.read_only = IsolationLevel.REPEATABLE_READ, True
        with conn.transaction():
            yield

    def _insert_many(self, table: str, rows: list[tuple]) -> None:
        from psycopg import sql

        # COPY streams the rows as data (no SQL text is built from them); names are this module's constants.
        columns = sql.SQL(", ").join(sql.Identifier(c.strip('"')) for c in COLUMNS[table])
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), columns)
        with self.db.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
