"""The two back ends of the recommendation store: SQLite (the embedded default) and PostgreSQL (a server).

Each implements the store's hooks (a connection per thread, a write transaction, a snapshot, a bulk insert,
the schema); everything else, including every SQL statement, lives in :mod:`.store`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from .store import COLUMNS, SCHEMA, RecommendationStore, default_db_path, is_postgres_url, redact, schema

__all__ = ["SQLiteStore", "PostgresStore"]


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
