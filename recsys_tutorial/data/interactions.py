"""Any interaction log as the typed frame the series runs on: CSV, TSV, Parquet, a DataFrame or "user item" lines.

:func:`load_interactions` returns the frame :func:`~recsys_tutorial.data.load_movielens` returns
(``user_id, item_id, rating, timestamp``), so ``splits.encode_ids``, ``temporal_leave_one_out``,
``data.add_context`` and every model take a learner's own data unchanged. Input that would break
the series later (misnamed columns, null ids, unreadable times, duplicate rows, users too short for
the temporal split) stops here with a ``ValueError`` that names the rows or column and the fix.
What the loader did is kept on the frame (``frame.attrs["report"]``). :func:`load_dataset` is the
one entry point for notebooks: a MovieLens name or a path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .dataset import Dataset
from .movielens import MovieLens, load_movielens
from .readers import (
    COMPRESSED_SUFFIXES,
    FORMATS,
    TIME_UNITS,
    check_choice,
    describe_rows,
    read_log,
    typed_frame,
)  # fmt: skip

__all__ = [
    "FORMATS", "MIN_SPLIT_INTERACTIONS", "KCoreReport", "LoadReport", "k_core_filter", "load_dataset",
    "load_interactions",
]  # fmt: skip
POLICIES = ("error", "drop", "keep")
MOVIELENS = {"ml-100k": "100k", "ml-1m": "1m"}

# temporal_leave_one_out holds out each user's last interaction (test) and the one before (validation),
# and needs at least one more to train on; shorter users stay in training and are never evaluated.
MIN_SPLIT_INTERACTIONS = 3


@dataclass(frozen=True)
class KCoreReport:
    """What :func:`k_core_filter` removed; ``iterations`` counts the passes that removed at least one row."""

    k: int
    iterations: int
    users_removed: int
    items_removed: int
    rows_removed: int

    def __str__(self) -> str:
        return (
            f"{self.k}-core: removed {self.users_removed:,} users, {self.items_removed:,} items and "
            f"{self.rows_removed:,} rows in {self.iterations} iteration(s)"
        )


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_interactions` read, made up and removed; ``str(report)`` is the verbose printout."""

    source: str
    format: str
    rows_read: int
    timestamps: str  # the column they came from, or how they were synthesised
    ratings: str  # the column they came from, or "implicit"
    synthetic_timestamps: bool
    duplicates: int  # rows that repeat an earlier row
    duplicates_dropped: int
    k_core: KCoreReport | None
    short_users: int  # users with fewer than MIN_SPLIT_INTERACTIONS interactions (after the k-core)
    short_users_dropped: int
    rows: int
    users: int
    items: int

    def __str__(self) -> str:
        lines = [
            f"read {self.rows_read:,} rows from {self.source}"
            + (f" ({self.format})" if self.source != self.format else ""),
            f"timestamps: {self.timestamps}",
            f"ratings: {self.ratings}",
            f"duplicates: {self.duplicates:,} found, {self.duplicates_dropped:,} dropped",
        ]
        if self.k_core is not None:
            lines.append(str(self.k_core))
        lines.append(
            f"users with fewer than {MIN_SPLIT_INTERACTIONS} interactions: {self.short_users:,} found, "
            f"{self.short_users_dropped:,} dropped"
        )
        lines.append(f"result: {self.rows:,} rows, {self.users:,} users, {self.items:,} items")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------- cleaning


def _deduplicate(frame: pd.DataFrame, policy: str, timed: bool) -> tuple[pd.DataFrame, int, int]:
    """Find rows that repeat an earlier (user, item[, timestamp]); raise, drop them or keep them per ``policy``."""
    key = ["user_id", "item_id"] + (["timestamp"] if timed else [])
    repeat = frame.duplicated(key, keep="first")
    found = int(repeat.sum())
    if found and policy == "error":
        groups = int(frame.loc[repeat, key].drop_duplicates().shape[0])
        what = (
            "user, item and timestamp"
            if timed
            else "user and item (without timestamps a repeat cannot be told from a double record)"
        )
        raise ValueError(
            f"{found:,} duplicate row(s) repeat the {what} of an earlier row, in {groups:,} group(s), at "
            f"{describe_rows(repeat)}. Pass duplicates='drop' to keep the first row of each group, or "
            "duplicates='keep' to keep them all (e.g. repeated purchases)"
        )
    if policy == "drop":
        return frame[~repeat], found, found
    return frame, found, 0


def k_core_filter(frame: pd.DataFrame, k: int) -> tuple[pd.DataFrame, KCoreReport]:
    r"""Keep the largest sub-log in which every user and every item has at least ``k`` interactions.

    Each pass counts interactions per user, :math:`n_u`, and per item, :math:`n_i`, on what is left
    and removes every row whose user has :math:`n_u < k` or whose item has :math:`n_i < k`; removing
    an item can push a user below ``k``, so passes repeat until nothing changes. The result is the
    (k, k)-core of the user-item graph [1]_, the "5-core" that sequential-recommendation papers use [2]_.

    Parameters
    ----------
    frame : DataFrame
        Interactions with ``user_id`` and ``item_id`` (one row counts one interaction).
    k : int
        Minimum number of interactions per user and per item, at least 1.

    Returns
    -------
    frame : DataFrame
        The surviving rows, in their original order and with their original index.
    report : KCoreReport
        Users, items and rows removed, and the number of passes that removed something.

    References
    ----------
    .. [1] S. B. Seidman, "Network structure and minimum degree", Social Networks 5(3), 1983.
    .. [2] W.-C. Kang and J. McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k_core={k!r} must be a positive integer (papers use 5), or None for no filter")
    kept, iterations = frame, 0
    while True:
        per_user = kept.groupby("user_id", sort=False)["user_id"].transform("size")
        per_item = kept.groupby("item_id", sort=False)["item_id"].transform("size")
        enough = (per_user >= k) & (per_item >= k)
        if enough.all():
            break
        kept, iterations = kept[enough], iterations + 1
    report = KCoreReport(
        k=int(k),
        iterations=iterations,
        users_removed=frame["user_id"].nunique() - kept["user_id"].nunique(),
        items_removed=frame["item_id"].nunique() - kept["item_id"].nunique(),
        rows_removed=len(frame) - len(kept),
    )
    return kept, report


def _short_users(frame: pd.DataFrame, policy: str) -> tuple[pd.DataFrame, int, int]:
    """Users with fewer than MIN_SPLIT_INTERACTIONS rows: raise, drop them or keep them per ``policy``."""
    sizes = frame.groupby("user_id", sort=False)["user_id"].transform("size")
    short = sizes < MIN_SPLIT_INTERACTIONS
    per_user = frame.loc[short].groupby("user_id", sort=False).size()
    found = len(per_user)
    if found and policy == "error":
        counts = per_user.value_counts().sort_index()
        how_many = ", ".join(f"{n:,} with {size}" for size, n in counts.items())
        examples = per_user.index[:5].tolist()
        raise ValueError(
            f"{found:,} user(s) have fewer than {MIN_SPLIT_INTERACTIONS} interactions ({how_many}; e.g. {examples}): "
            "temporal_leave_one_out holds out each user's last two for test and validation, so they cannot be "
            f"evaluated. Pass short_users='drop' to remove them ({int(short.sum()):,} rows), short_users='keep' to "
            f"keep them in training only, or k_core={MIN_SPLIT_INTERACTIONS} (or more)"
        )
    if policy == "drop":
        return frame[~short], found, found
    return frame, found, 0


def _require_rows(frame: pd.DataFrame, after: str) -> None:
    if frame.empty:
        raise ValueError(f"no interactions left {after}: loosen that option (or check the source)")


# --------------------------------------------------------------------------------------------- entry points


def _roles(given: dict, fmt: str | None, names) -> dict:
    """Column of each role: the arguments (ids default to user_id, item_id), or positions 0, 1 for user-item lines."""
    if fmt != "user-item":
        return {**given, "user": given["user"] or "user_id", "item": given["item"] or "item_id"}
    if any(v is not None for v in given.values()) or names is not None:
        raise ValueError(
            "format='user-item' lines hold only a user and an item, in time order: drop the column arguments "
            "(user=, item=, timestamp=, rating=, context=, names=), or use format='csv' for other layouts"
        )
    return {"user": 0, "item": 1, "timestamp": None, "rating": None, "context": None}


def load_interactions(
    source: str | os.PathLike | pd.DataFrame,
    *,
    user=None,
    item=None,
    timestamp=None,
    rating=None,
    context=None,
    format: str | None = None,
    sep: str | None = None,
    names: Sequence[str] | None = None,
    tz: str | None = None,
    timestamp_unit: str = "s",
    duplicates: str = "error",
    short_users: str = "error",
    k_core: int | None = None,
    verbose: bool = False,
) -> pd.DataFrame:
    """Load an interaction log as the typed frame of :func:`~recsys_tutorial.data.load_movielens`.

    Parameters
    ----------
    source : path or DataFrame
        A delimited table (``.csv``, ``.tsv``, any other name; ``.gz``, ``.bz2``, ``.xz`` compressed too),
        a Parquet file (``.parquet``, ``.pq``; needs pyarrow: ``pip install 'recsys-tutorial[parquet]'``),
        a pandas DataFrame, or, with ``format="user-item"``, the plain ``user item`` lines that
        sequential-recommendation papers publish (whitespace separated, no header, file order is time order).
    user, item : column name, default ``"user_id"``, ``"item_id"``
        Columns holding the ids. Ids of any type: integers (and text spelling integers, such as ``"42"``)
        become int64, anything else stays text (``"007"`` stays ``"007"``).
    timestamp : column name, optional
        UNIX times (numbers in ``timestamp_unit``), ISO 8601 text, anything ``pandas.to_datetime``
        parses, or a datetime column. Times without a zone are read as wall-clock times in ``tz``
        (UTC when ``tz`` is None); the result is UTC. Without a timestamp column, row ``i`` gets the
        synthetic time 2000-01-01 00:00:00 UTC + ``i`` seconds: strictly increasing in row order, so
        ``temporal_leave_one_out`` holds out each user's last *rows*. Such times are made up:
        ``add_context`` runs on them, but its time of day and weekday are meaningless (the first
        21,600 rows all fall at "night" on a weekend); give a real timestamp or a ``context`` column
        instead. ``frame.attrs["report"].synthetic_timestamps`` says which case a frame is.
    rating : column name, optional
        Numeric ratings, kept as float32. Without one the log is implicit feedback: every
        interaction has rating 1.0 (rating-prediction models then have nothing to learn).
    context : column name, optional
        Kept as raw values in a ``context`` column. Models want contiguous ids; encode with
        ``frame["context_id"], contexts = pd.factorize(frame["context"], sort=True)`` and pass
        ``n_contexts=len(contexts)`` (``context_id`` is the column context-aware models read).
    format : {"csv", "tsv", "parquet", "user-item"}, optional
        Taken from the file name when None (``.parquet``/``.pq``, ``.tsv``, else a delimited table).
        ``"user-item"`` is never guessed.
    sep : str, optional
        Separator of a delimited table; sniffed from the first lines when None.
    names : list of str, optional
        Column names for a delimited file without a header row.
    tz : str, optional
        Time zone of naive times (e.g. ``"Europe/Paris"``).
    timestamp_unit : {"s", "ms", "us", "ns"}
        Unit of numeric timestamps.
    duplicates : {"error", "drop", "keep"}
        Rows repeating the user, item and timestamp of an earlier row (the user and item when there
        is no timestamp column): raise (default, with counts and rows), keep the first of each group,
        or keep all.
    short_users : {"error", "drop", "keep"}
        Users with fewer than 3 interactions, too few for ``temporal_leave_one_out``: raise
        (default, with counts), drop them, or keep them (they stay in training only). Checked after
        the k-core.
    k_core : int, optional
        Keep only the k-core (:func:`k_core_filter`), applied after duplicates are handled.
    verbose : bool
        Print the report.

    Returns
    -------
    DataFrame
        ``user_id, item_id, rating, timestamp`` (+ ``context``) in source row order with a fresh
        RangeIndex; ``frame.attrs["report"]`` is a :class:`LoadReport` of what was read and removed.

    Raises
    ------
    ValueError
        Naming the problem, the rows (0-based data rows, header not counted) or column, and the fix:
        missing columns (with the closest names), null ids, unreadable timestamps, non-numeric
        ratings, duplicates, short users, an empty source or an empty result.
    """
    for argument, value in (("duplicates", duplicates), ("short_users", short_users)):
        check_choice(argument, value, POLICIES)
    check_choice("timestamp_unit", timestamp_unit, TIME_UNITS)
    given = {"user": user, "item": item, "timestamp": timestamp, "rating": rating, "context": context}
    roles = _roles(given, format, names)
    raw, fmt, label = read_log(source, format, sep, names, roles)
    if raw.empty:
        raise ValueError(f"{label} has no rows: there are no interactions to load")
    frame = typed_frame(raw, roles, tz, timestamp_unit)
    frame, n_duplicates, n_dropped = _deduplicate(frame, duplicates, timed=timestamp is not None)
    core = None
    if k_core is not None:
        frame, core = k_core_filter(frame, k_core)
        _require_rows(frame, f"after the {k_core}-core filter ({core})")
    frame, n_short, n_short_dropped = _short_users(frame, short_users)
    _require_rows(frame, f"after dropping {n_short:,} users with fewer than {MIN_SPLIT_INTERACTIONS} interactions")
    frame = frame.reset_index(drop=True)
    frame.attrs["report"] = LoadReport(
        source=label, format=fmt, rows_read=len(raw),
        timestamps=f"column {roles['timestamp']!r} (UTC)" if timestamp is not None
        else "none in the source: synthesised from row order (one second apart), so context from them is meaningless",
        ratings=f"column {rating!r}" if rating is not None else "none in the source: implicit feedback, all 1.0",
        synthetic_timestamps=timestamp is None, duplicates=n_duplicates, duplicates_dropped=n_dropped,
        k_core=core, short_users=n_short, short_users_dropped=n_short_dropped,
        rows=len(frame), users=int(frame["user_id"].nunique()), items=int(frame["item_id"].nunique()),
    )  # fmt: skip
    if verbose:
        print(frame.attrs["report"])
    return frame


# Options that name or read columns: fixed for MovieLens, whose files the package reads itself.
_READING_OPTIONS = ("user", "item", "timestamp", "rating", "context", "format", "sep", "names", "tz", "timestamp_unit")


def load_dataset(
    data: str | os.PathLike | pd.DataFrame,
    *,
    name: str | None = None,
    root: str | os.PathLike | None = None,
    download: bool = True,
    **options,
) -> Dataset:
    """The one entry point for notebooks: ``DATA = "ml-100k"`` (or ``"ml-1m"``, or a path) then ``load_dataset(DATA)``.

    Parameters
    ----------
    data : {"ml-100k", "ml-1m"}, path or DataFrame
        A MovieLens name (downloaded and verified by :func:`~recsys_tutorial.data.load_movielens`), or
        an interaction log for :func:`load_interactions`.
    name : str, optional
        The dataset's name; defaults to the MovieLens name or the file name without its extensions.
    root, download
        Where MovieLens is cached and whether it may be fetched (MovieLens only).
    **options
        Keyword options of :func:`load_interactions`. For MovieLens only the cleaning options apply
        (``duplicates``, ``short_users``, ``k_core``, ``verbose``); its columns are fixed.

    Returns
    -------
    Dataset
        ``name``, ``ratings`` (the typed frame, with its report in ``ratings.attrs["report"]``), and
        ``items``/``users`` for MovieLens (a :class:`~recsys_tutorial.data.MovieLens`), else ``None``.
    """
    if isinstance(data, str) and data in MOVIELENS:
        fixed = sorted(set(options) & set(_READING_OPTIONS))
        if fixed:
            raise ValueError(f"{data} has fixed columns: drop {fixed} (only duplicates, short_users, k_core, verbose)")
        ml = load_movielens(MOVIELENS[data], root, download)
        columns = dict(user="user_id", item="item_id", timestamp="timestamp", rating="rating")
        ratings = load_interactions(ml.ratings, **columns, **options)
        ratings.attrs["report"] = replace(ratings.attrs["report"], source=ml.name, format=ml.name)
        return MovieLens(name or ml.name, ratings, ml.items, ml.users)
    if isinstance(data, pd.DataFrame):
        return Dataset(name or "dataframe", load_interactions(data, **options))
    path = Path(data)
    if not path.is_file():
        raise ValueError(
            f"{str(data)!r} is neither a dataset name ({', '.join(MOVIELENS)}) nor a file: pass one of those "
            "names, the path of an interaction log, or a DataFrame"
        )
    stem = path.name.removesuffix(path.suffix) if path.suffix.lower() in COMPRESSED_SUFFIXES else path.name
    return Dataset(name or Path(stem).stem, load_interactions(path, **options))
