"""Context features derived from timestamps: time of day and weekday/weekend.

Caveat shown to learners wherever these features appear: MovieLens timestamps are the UTC times at
which ratings were *entered* on the website, not when the film was watched, and GroupLens does not
record the user's time zone. "Evening" here means an evening in UTC, which for a US user is the
afternoon. The features still carry signal (rating sessions cluster in time), but they are a proxy.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["TIME_OF_DAY", "TIMESTAMP_CAVEAT", "add_context", "time_of_day"]

# Bucket names in context-id order, six hours each: night 0-5 h, morning 6-11 h, afternoon 12-17 h, evening 18-23 h
# in the timestamp's own time zone. The one definition: the data code, the API and the page all read it.
TIME_OF_DAY = ("night", "morning", "afternoon", "evening")

TIMESTAMP_CAVEAT = (
    "MovieLens timestamps are UTC times at which ratings were entered, not viewing times, and the "
    "users' time zones are unknown: treat time-of-day context as a proxy."
)


def time_of_day(hours: pd.Series) -> pd.Series:
    """Map hours 0-23 to context ids: 0 night (0-5h), 1 morning (6-11h), 2 afternoon (12-17h), 3 evening (18-23h)."""
    if hours.min() < 0 or hours.max() > 23:
        raise ValueError(f"hours must lie in 0..23, got {hours.min()}..{hours.max()}")
    return (hours // 6).astype("int64")


def add_context(ratings: pd.DataFrame, column: str = "timestamp") -> pd.DataFrame:
    """Return a copy of ``ratings`` with ``hour, time_of_day, context_id, weekday, is_weekend`` added.

    ``context_id`` indexes :data:`TIME_OF_DAY` and is the context mode of the user x item x context
    tensor in notebooks 02-03. ``weekday`` is 0 for Monday; Saturday and Sunday are the weekend.
    """
    if column not in ratings:
        raise ValueError(f"no {column!r} column to derive context from; columns are {list(ratings.columns)}")
    ts = ratings[column]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise ValueError(f"{column!r} must be a timezone-aware datetime column (load_movielens returns UTC)")
    out = ratings.copy()
    out["hour"] = ts.dt.hour.astype("int64")
    out["context_id"] = time_of_day(out["hour"])
    out["time_of_day"] = pd.Categorical.from_codes(out["context_id"].to_numpy(), categories=list(TIME_OF_DAY))
    out["weekday"] = ts.dt.day_of_week.astype("int64")
    out["is_weekend"] = out["weekday"] >= 5
    return out
