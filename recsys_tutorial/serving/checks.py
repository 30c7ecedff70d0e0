"""Checks a refresh passes before it may touch the database: lists, metrics, model names, histories.

Bad lists are refused with a ``ValueError`` that names the users, contexts and the fix, so the served lists
are never replaced by incomplete ones (a short list, a NaN score, a missing user).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..data.context import TIME_OF_DAY

__all__ = [
    "NO_CONTEXT", "MODEL_NAME_MAX", "LIST_COLUMNS", "HISTORY_COLUMNS", "validate_lists", "metrics_json",
    "check_model_name", "history_rows",
]  # fmt: skip

NO_CONTEXT = "any"  # the context name of lists from models that ignore context
MODEL_NAME_MAX = 64  # the API accepts model names up to this length
LIST_COLUMNS = ["user", "context", "rank", "item", "score"]
HISTORY_COLUMNS = ["user", "item", "timestamp"]


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
    _check_columns(lists, LIST_COLUMNS, "lists")
    if lists.empty:
        raise ValueError(
            "lists are empty: a refresh would delete every stored list of this model, so it is refused and "
            "the old lists are kept. Check that the top-K step produced rows (users, k, seen items)"
        )
    frame = lists[LIST_COLUMNS].astype({"context": str}).reset_index(drop=True)
    _check_contexts(frame["context"])
    _check_scores(frame)
    _check_ranks(frame, int(k))
    _check_coverage(frame, expected_users, expected_contexts)
    return frame.sort_values(["user", "context", "rank"], kind="stable").reset_index(drop=True)


def metrics_json(metrics: Mapping[str, float] | None) -> str:
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


def check_model_name(model: str) -> None:
    if not isinstance(model, str) or not 1 <= len(model) <= MODEL_NAME_MAX:
        raise ValueError(f"model must be a name of 1..{MODEL_NAME_MAX} characters (the API's limit), got {model!r}")


def history_rows(frame: pd.DataFrame, keep: int) -> list[tuple]:
    """(user, position, item, rated_at) rows: each user's ``keep`` most recent interactions, position 1 = latest."""
    if isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 1:
        raise ValueError(f"keep must be a whole number >= 1 (interactions kept per user), got {keep!r}")
    if "user_id" in frame or "item_id" in frame:
        raise ValueError(
            "history has user_id/item_id columns: pass raw ids as user and item, e.g. "
            "frame[['user_id', 'item_id', 'timestamp']].rename(columns={'user_id': 'user', 'item_id': 'item'})"
        )
    _check_columns(frame, HISTORY_COLUMNS, "history")
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
