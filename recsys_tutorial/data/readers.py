"""Reading interaction logs: files and formats, column roles, ids, ratings and timestamps typed as the series needs.

Used by :func:`~recsys_tutorial.data.interactions.load_interactions`; every error names the rows or column
involved and the fix.
"""

from __future__ import annotations

import bz2
import csv
import difflib
import gzip
import lzma
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "FORMATS", "UTC_DTYPE", "SYNTHETIC_ORIGIN", "TIME_UNITS", "COMPRESSED_SUFFIXES", "read_log", "typed_frame",
    "check_not_null", "check_choice", "describe_rows",
]  # fmt: skip

FORMATS = ("csv", "tsv", "parquet", "user-item")

# load_movielens converts UNIX seconds with pd.to_datetime(..., unit="s", utc=True); every timestamp
# leaves this loader in that same dtype, whatever pandas version chooses for its resolution.
UTC_DTYPE = pd.to_datetime(pd.Series([0], dtype="int64"), unit="s", utc=True).dtype

# Synthesised times: row i of a log without timestamps happens i seconds after this instant.
SYNTHETIC_ORIGIN = pd.Timestamp("2000-01-01", tz="UTC")

# Numbers read as UNIX seconds that land after this are almost surely milliseconds or microseconds.
LATEST_PLAUSIBLE = pd.Timestamp("2200-01-01", tz="UTC")
_PER_SECOND = {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}
TIME_UNITS = tuple(_PER_SECOND)

_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
COMPRESSED_SUFFIXES = tuple(_OPENERS)
# Words that give a column's role away in common logs ("movieId", "customer_id", "event_time", "stars").
_ROLE_WORDS = {
    "user": ("user", "customer", "visitor", "member", "uid"),
    "item": ("item", "movie", "product", "asin", "sku", "song", "track", "artist", "book", "article", "iid"),
    "timestamp": ("time", "date", "ts"),
    "rating": ("rating", "score", "stars", "value"),
    "context": ("context",),
}
_TIME_FORMS = (
    "Accepted forms: UNIX seconds (numbers; pass timestamp_unit='ms' for milliseconds), ISO 8601 text such as "
    "'2024-03-01T18:30:00Z', or any text pandas.to_datetime parses; times without a zone are read as UTC "
    "unless tz= names their zone."
)


def describe_rows(mask: pd.Series | np.ndarray, limit: int = 5) -> str:
    """'rows 3, 8 and 2 more' for a boolean mask over input rows (0-based, header not counted)."""
    where = np.flatnonzero(np.asarray(mask))
    shown = ", ".join(str(r) for r in where[:limit])
    more = f" and {len(where) - limit:,} more" if len(where) > limit else ""
    return f"row{'s' if len(where) > 1 else ''} {shown}{more} (0-based, not counting a header line)"


def check_choice(argument: str, value, choices: Sequence) -> None:
    if value not in choices:
        raise ValueError(f"{argument}={value!r} is not an option: choose one of {', '.join(map(repr, choices))}")


# --------------------------------------------------------------------------------------------- reading


def _suffix(path: Path) -> str:
    """The last suffix that is not a compression one: ".csv" for both log.csv and log.csv.gz."""
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in _OPENERS]
    return suffixes[-1] if suffixes else ""


def _guess_format(path: Path) -> str:
    """Format from the file name: .parquet/.pq, .tsv, else a delimited table ("csv", separator sniffed)."""
    return {".parquet": "parquet", ".pq": "parquet", ".tsv": "tsv"}.get(_suffix(path), "csv")


def _sniff_separator(path: Path) -> str:
    """The separator of a delimited file, guessed from its first lines (comma, tab, semicolon, pipe, space)."""
    opener = _OPENERS.get(path.suffix.lower(), open)
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        sample = f.read(1 << 16)
    sample = sample[: sample.rfind("\n") + 1] or sample  # whole lines only: a cut line would skew the counts
    try:
        sep = csv.Sniffer().sniff(sample, delimiters=",\t;| ").delimiter
    except csv.Error:
        fallback = {".csv": ",", ".tsv": "\t"}.get(_suffix(path))
        if fallback is None:
            raise ValueError(
                f"could not tell which separator {path} uses: pass sep=',' (or '\\t', ';', ...), "
                "or format='user-item' for plain 'user item' lines"
            ) from None
        return fallback
    return r"\s+" if sep == " " else sep  # runs of spaces are one separator


def _read_delimited(path: Path, sep: str, names: Sequence[str] | None, roles: dict) -> pd.DataFrame:
    """Read the columns ``roles`` names from a delimited table; ids as text, so "007" stays "007"."""
    header = dict(header=None, names=list(names)) if names is not None else dict(header=0)
    options = dict(sep=sep, skipinitialspace=True, **header)
    try:
        columns = list(pd.read_csv(path, nrows=0, **options).columns)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty: there are no interactions to load") from None
    _check_columns(columns, roles, str(path))
    used = [c for c in roles.values() if c is not None]
    ids = {roles["user"]: str, roles["item"]: str}
    try:
        return pd.read_csv(path, usecols=used, dtype=ids, **options)
    except pd.errors.ParserError as err:
        raise ValueError(
            f"{path} is not a consistent table with separator {sep!r} ({err}): fix that line, or pass the file's "
            "separator as sep=',' (or '\\t', ';', '|')"
        ) from None


def _read_user_item(path: Path) -> pd.DataFrame:
    """Plain "user item" lines, whitespace separated, no header, file order = time order."""
    try:
        raw = pd.read_csv(path, sep=r"\s+", header=None, dtype=str)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty: there are no interactions to load") from None
    except pd.errors.ParserError as err:
        raise ValueError(
            f"{path} is not plain 'user item' lines ({err}): every line must hold exactly a user id and an "
            "item id separated by whitespace; for other layouts use format='csv' with names=[...]"
        ) from None
    if raw.shape[1] != 2:
        raise ValueError(
            f"{path} has {raw.shape[1]} fields per line, but format='user-item' expects exactly two (user, item); "
            "for more columns use format='csv' with names=[...] (e.g. sep=r'\\s+')"
        )
    return raw


def _read_parquet(path: Path, roles: dict) -> pd.DataFrame:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            f"reading Parquet ({path}) needs pyarrow: pip install 'recsys-tutorial[parquet]' (or pip install pyarrow)"
        ) from None
    _check_columns(pq.read_schema(path).names, roles, str(path))
    return pd.read_parquet(path, columns=[c for c in roles.values() if c is not None])


def read_log(source, fmt: str | None, sep: str | None, names, roles: dict) -> tuple[pd.DataFrame, str, str]:
    """The raw table (positional RangeIndex), its format and a label for messages."""
    if isinstance(source, pd.DataFrame):
        if fmt is not None:
            raise ValueError(f"format={fmt!r} describes a file; a DataFrame source needs no format")
        _check_columns(list(source.columns), roles, "the DataFrame")
        return source.reset_index(drop=True), "DataFrame", "a DataFrame"
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"no file at {path}: pass the path of an interaction log or a pandas DataFrame")
    if fmt is not None:
        check_choice("format", fmt, FORMATS)
    fmt = fmt or _guess_format(path)
    if fmt == "parquet":
        return _read_parquet(path, roles), fmt, str(path)
    if fmt == "user-item":
        return _read_user_item(path), fmt, str(path)
    sep = sep or ("\t" if fmt == "tsv" else _sniff_separator(path))
    return _read_delimited(path, sep, names, roles), fmt, str(path)


def _closest(name, columns: Sequence, role: str) -> list:
    """Up to three columns that look like ``name`` or mention the role ('userId' for 'user_id')."""
    squash = {str(c).lower().replace("_", "").replace(" ", "").replace("-", ""): c for c in columns}
    target = str(name).lower().replace("_", "").replace(" ", "").replace("-", "")
    hits = difflib.get_close_matches(target, list(squash), n=3, cutoff=0.6)
    hits += [k for k in squash if any(word in k for word in _ROLE_WORDS[role]) and k not in hits]
    return [squash[k] for k in hits[:3]]


def _check_columns(columns: Sequence, roles: dict, label: str) -> None:
    """Every role's column exists and no column plays two roles; else say which and suggest the closest."""
    named = [c for c in roles.values() if c is not None]
    for column in {c for c in named if named.count(c) > 1}:
        both = [f"{role}=" for role, c in roles.items() if c == column]
        raise ValueError(f"column {column!r} is given as {' and '.join(both)}: each role needs its own column")
    problems = []
    for role, column in roles.items():
        if column is None or column in columns:
            continue
        close = _closest(column, columns, role)
        hint = f"did you mean {', '.join(map(repr, close))}? Pass {role}={close[0]!r}" if close else ""
        problems.append(f"no column {column!r} for {role}= in {label}" + (f" ({hint})" if hint else ""))
    if problems:
        headerless = all(str(c).replace(".", "").lstrip("-").isdigit() for c in columns)
        tip = (
            "; the first line looks like data, not a header: pass names=[...] for a file without a header row, "
            "or format='user-item' for plain 'user item' lines"
            if headerless
            else ""
        )
        raise ValueError("; ".join(problems) + f". Columns are {list(columns)}{tip}")


# --------------------------------------------------------------------------------------------- typing


def _ids(values: pd.Series) -> pd.Series:
    """Integer ids as int64, anything else as text; text spelling canonical integers ("42", not "042") -> int64."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(values.cat.categories.dtype)
    if pd.api.types.is_integer_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("int64")
    if pd.api.types.is_float_dtype(values.dtype) and bool((values % 1 == 0).all()):
        return values.astype("int64")
    text = values.astype(str)
    try:
        numbers = pd.to_numeric(text, errors="coerce")
        if numbers.notna().all() and pd.api.types.is_integer_dtype(numbers.dtype):
            if bool((numbers.astype(str) == text).all()):  # "007" and "+7" stay text: they are names, not numbers
                return numbers.astype("int64")
    except (ValueError, OverflowError):
        pass
    return text


def check_not_null(values: pd.Series, role: str, column) -> None:
    missing = values.isna()
    if missing.any():
        raise ValueError(
            f"{int(missing.sum()):,} null {role} value(s) in column {column!r} at {describe_rows(missing)}: every "
            f"interaction needs a {role}; drop those rows (frame.dropna(subset=[{column!r}])) or fill them before "
            "loading"
        )


def _ratings(raw: pd.DataFrame, column) -> pd.Series:
    """float32 ratings from ``column``; implicit feedback (every interaction 1.0) when there is none."""
    if column is None:
        return pd.Series(np.ones(len(raw), dtype="float32"), index=raw.index)
    values = raw[column]
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna()
    if bad.any():
        examples = values[bad].head(3).tolist()
        raise ValueError(
            f"{int(bad.sum()):,} missing or non-numeric rating(s) in column {column!r}, at {describe_rows(bad)}, "
            f"e.g. {examples}: ratings must be numbers; fix or drop those rows, or pass rating=None to treat the "
            "log as implicit feedback (every interaction 1.0)"
        )
    return numbers.astype("float32")


def _parse_text_times(text: pd.Series, utc: bool) -> pd.Series:
    """ISO 8601 first (fast), then anything pandas parses for the rest; unreadable -> NaT."""
    with warnings.catch_warnings():  # pandas 2 warns before returning objects for mixed zones; refused below
        warnings.simplefilter("ignore", FutureWarning)
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=utc)
        retry = parsed.isna() & text.notna()
        if retry.any():
            rest = pd.to_datetime(text[retry], format="mixed", errors="coerce", utc=utc)
            parsed = pd.concat([parsed[~retry], rest.astype(parsed.dtype)]).reindex(text.index)
    if not pd.api.types.is_datetime64_any_dtype(parsed.dtype):  # pandas 2 returns objects for mixed zones
        raise TypeError("mixed time zones")
    return parsed


def _localize(parsed: pd.Series, tz: str | None) -> pd.Series:
    """Times with a zone go to UTC; naive ones are wall-clock times in ``tz`` (UTC when None)."""
    if parsed.dt.tz is not None:
        return parsed.dt.tz_convert("UTC")
    # A wall-clock time skipped or repeated by a daylight-saving change has no single instant: NaT, reported.
    local = parsed.dt.tz_localize(tz or "UTC", ambiguous="NaT", nonexistent="NaT")
    return local.dt.tz_convert("UTC")


def _parse_times(values: pd.Series, column, tz: str | None, unit: str) -> pd.Series:
    """UTC times from a datetime, numeric (UNIX ``unit``) or text column; unreadable values become NaT."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return _localize(values, tz)
    numbers = pd.to_numeric(values, errors="coerce") if not pd.api.types.is_bool_dtype(values.dtype) else None
    if numbers is not None and numbers.notna().sum() == values.notna().sum():
        # Compare the numbers, not parsed dates: with nanosecond resolution (pandas 2) they overflow to NaT.
        late = numbers / _PER_SECOND[unit] > LATEST_PLAUSIBLE.timestamp()
        if late.any():
            raise ValueError(
                f"{int(late.sum()):,} timestamp(s) in column {column!r} fall after {LATEST_PLAUSIBLE.year} when "
                f"read as UNIX {unit!r}, at {describe_rows(late)}, e.g. {values[late].tolist()[:3]}: the column is "
                "probably in finer units; pass timestamp_unit='ms' (milliseconds) or 'us' (microseconds)"
            )
        return pd.to_datetime(numbers, unit=unit, errors="coerce", utc=True)
    text = values.astype("string")
    if tz is None:
        return _parse_text_times(text, utc=True)  # naive -> UTC, zoned -> converted, in one pass
    try:
        parsed = _parse_text_times(text, utc=False)
    except (ValueError, TypeError) as err:  # zoned and naive times cannot share one column before localizing
        raise ValueError(
            f"timestamps in column {column!r} mix time zones, or zoned and naive times ({err}); tz= applies only "
            "to naive times: write them all in one form, or drop tz= to read naive times as UTC"
        ) from None
    return _localize(parsed, tz)


def _timestamps(raw: pd.DataFrame, column, tz: str | None, unit: str) -> pd.Series:
    """UTC timestamps from ``column``, or strictly increasing ones made from row order when there is none."""
    if column is None:
        seconds = pd.to_timedelta(np.arange(len(raw)), unit="s")
        return pd.Series(SYNTHETIC_ORIGIN + seconds, index=raw.index).astype(UTC_DTYPE)
    values = raw[column]
    parsed = _parse_times(values, column, tz, unit)
    bad = parsed.isna()
    if bad.any():
        examples = values[bad].head(3).tolist()
        zone = f" (or not valid wall-clock times in {tz}, e.g. skipped by a daylight-saving change)" if tz else ""
        raise ValueError(
            f"{int(bad.sum()):,} timestamp(s) in column {column!r} are missing or could not be read{zone}, at "
            f"{describe_rows(bad)}, e.g. {examples}. {_TIME_FORMS} Fix or drop those rows, or pass timestamp=None to "
            "use row order as time order."
        )
    return parsed.astype(UTC_DTYPE)


def typed_frame(raw: pd.DataFrame, roles: dict, tz: str | None, unit: str) -> pd.DataFrame:
    """The MovieLens-shaped frame: ``user_id, item_id, rating, timestamp`` (+ raw ``context``)."""
    for role in ("user", "item"):
        check_not_null(raw[roles[role]], role, roles[role])
    out = pd.DataFrame(
        {
            "user_id": _ids(raw[roles["user"]]),
            "item_id": _ids(raw[roles["item"]]),
            "rating": _ratings(raw, roles["rating"]),
            "timestamp": _timestamps(raw, roles["timestamp"], tz, unit),
        },
        index=raw.index,
    )
    if roles["context"] is not None:
        check_not_null(raw[roles["context"]], "context", roles["context"])
        out["context"] = raw[roles["context"]]
    return out
