"""Id encoding and train/validation/test splits.

Every model in the series works on contiguous indices ``0..n_users-1`` and ``0..n_items-1``. The
protocol for ranking is temporal leave-one-out: each user's last interaction is the test item, the
second-to-last the validation item, everything before is training data, so no model sees the future.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data.movielens import load_fold, load_movielens

__all__ = [
    "IdMap", "Split", "encode_ids", "random_holdout", "temporal_leave_one_out", "canonical_fold",
    "seen_items", "user_sequences",
]  # fmt: skip


@dataclass(frozen=True)
class IdMap:
    """A bijection between raw ids (e.g. GroupLens ``item_id``) and contiguous indices 0..n-1."""

    name: str
    ids: np.ndarray  # ids[index] -> raw id, sorted

    def __len__(self) -> int:
        return len(self.ids)

    def to_index(self, raw) -> np.ndarray:
        """Indices of raw ids; unknown ids raise a ``ValueError`` naming them."""
        raw = np.asarray(raw)
        index = np.searchsorted(self.ids, raw)
        index = np.clip(index, 0, len(self.ids) - 1)
        unknown = self.ids[index] != raw
        if unknown.any():
            bad = np.unique(raw[unknown])[:5].tolist()
            raise ValueError(f"unknown {self.name} id(s) {bad}: the encoding knows {len(self)} {self.name}s")
        return index

    def to_raw(self, index) -> np.ndarray:
        """Raw ids of indices; out-of-range indices raise a ``ValueError``."""
        index = np.asarray(index)
        if index.size and (index.min() < 0 or index.max() >= len(self.ids)):
            raise ValueError(f"{self.name} index out of range 0..{len(self) - 1}: got {index.min()}..{index.max()}")
        return self.ids[index]


def encode_ids(
    ratings: pd.DataFrame, users: IdMap | None = None, items: IdMap | None = None
) -> tuple[pd.DataFrame, IdMap, IdMap]:
    """Replace ``user_id`` and ``item_id`` by contiguous indices ``user`` and ``item``.

    Pass existing maps to encode a second frame consistently (e.g. a test fold); unknown ids then raise.
    Returns the encoded copy (raw id columns kept) and the two maps.
    """
    users = users or IdMap("user", np.sort(ratings["user_id"].unique()))
    items = items or IdMap("item", np.sort(ratings["item_id"].unique()))
    out = ratings.copy()
    out["user"] = users.to_index(out["user_id"].to_numpy())
    out["item"] = items.to_index(out["item_id"].to_numpy())
    return out, users, items


@dataclass(frozen=True)
class Split:
    """A train / validation / test split of encoded interactions (``valid`` may be empty)."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    n_users: int
    n_items: int

    def __repr__(self) -> str:
        return (
            f"Split(train={len(self.train):,}, valid={len(self.valid):,}, test={len(self.test):,}, "
            f"n_users={self.n_users}, n_items={self.n_items})"
        )


def _chronological(df: pd.DataFrame) -> pd.DataFrame:
    # Many MovieLens ratings share a second; breaking ties by item makes the order reproducible.
    return df.sort_values(["user", "timestamp", "item"], kind="stable").reset_index(drop=True)


def temporal_leave_one_out(ratings: pd.DataFrame) -> Split:
    """Per user: last interaction -> test, second-to-last -> validation, the rest -> train.

    ``ratings`` must be encoded (``user``, ``item``) and have a ``timestamp``. Users with fewer than
    three interactions keep them all in training.
    """
    _require(ratings, ["user", "item", "timestamp"])
    df = _chronological(ratings)
    from_end = df.groupby("user").cumcount(ascending=False)  # 0 = most recent
    size = df.groupby("user")["item"].transform("size")
    held = size >= 3
    test = df[held & (from_end == 0)]
    valid = df[held & (from_end == 1)]
    train = df[~held | (from_end >= 2)]
    return Split(*(p.reset_index(drop=True) for p in (train, valid, test)), *_sizes(ratings))


def random_holdout(
    ratings: pd.DataFrame, test_fraction: float = 0.2, valid_fraction: float = 0.0, seed: int = 0
) -> Split:
    """A seeded random split of interactions (the classic rating-prediction protocol)."""
    if not 0 < test_fraction < 1 or not 0 <= valid_fraction < 1 - test_fraction:
        raise ValueError(f"fractions must satisfy 0 < test and test + valid < 1, got {test_fraction}, {valid_fraction}")
    _require(ratings, ["user", "item"])
    order = np.random.default_rng(seed).permutation(len(ratings))
    n_test, n_valid = int(round(test_fraction * len(ratings))), int(round(valid_fraction * len(ratings)))
    parts = np.split(order, [n_test, n_test + n_valid])
    test, valid, train = (ratings.iloc[np.sort(p)].reset_index(drop=True) for p in parts)
    return Split(train, valid, test, *_sizes(ratings))


def canonical_fold(fold: int | str, root=None) -> Split:
    """ml-100k's official ``u{fold}.base`` / ``u{fold}.test`` split, encoded like the full dataset.

    Indices are those of :func:`encode_ids` on all 100,000 ratings, so every fold shares one
    encoding (943 users, 1,682 items) even when a fold's training file misses a rare item.
    """
    full = load_movielens("100k", root).ratings
    base, test = load_fold(fold, root)
    _, users, items = encode_ids(full)
    train, _, _ = encode_ids(base, users, items)
    test, _, _ = encode_ids(test, users, items)
    return Split(train, test.iloc[:0], test, len(users), len(items))


def seen_items(interactions: pd.DataFrame, n_users: int, n_items: int) -> list[np.ndarray]:
    """For each user index, the sorted array of item indices they interacted with."""
    _require(interactions, ["user", "item"])
    _check_range(interactions, n_users, n_items)
    df = interactions[["user", "item"]].drop_duplicates().sort_values(["user", "item"])
    counts = np.bincount(df["user"].to_numpy(), minlength=n_users)
    return np.split(df["item"].to_numpy(), np.cumsum(counts)[:-1])


def user_sequences(interactions: pd.DataFrame, n_users: int) -> list[np.ndarray]:
    """Each user's item indices in chronological order (ties broken by item), for sequence models."""
    _require(interactions, ["user", "item", "timestamp"])
    df = _chronological(interactions)
    counts = np.bincount(df["user"].to_numpy(), minlength=n_users)
    return np.split(df["item"].to_numpy(), np.cumsum(counts)[:-1])


def _sizes(ratings: pd.DataFrame) -> tuple[int, int]:
    return int(ratings["user"].max()) + 1, int(ratings["item"].max()) + 1


def _require(df: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in df]
    if missing:
        raise ValueError(f"missing column(s) {missing}: encode raw ids first with encode_ids(ratings)")


def _check_range(df: pd.DataFrame, n_users: int, n_items: int) -> None:
    for col, n in (("user", n_users), ("item", n_items)):
        values = df[col].to_numpy()
        if values.size and (values.min() < 0 or values.max() >= n):
            bad = values.max() if values.max() >= n else values.min()
            raise ValueError(f"{col} index {bad} is out of range: there are {n} {col}s (0..{n - 1})")
