"""Id encoding and train/validation/test splits.

Every model in the series works on contiguous indices ``0..n_users-1`` and ``0..n_items-1``. The
protocol for ranking is temporal leave-one-out: each user's last interaction is the test item, the
second-to-last the validation item, everything before is training data, so no model sees the future.

Two details decide which item is held out, and both are fixed here once:

* **Ties in time.** Many logs record several interactions in the same second (MovieLens users rate a
  batch of films in one sitting). Within a tie the order is unknown, so it is broken by a seeded
  pseudo-random key of (user, item): reproducible, and unrelated to how items happen to be numbered.
  Breaking ties by item index instead would systematically hold out the highest-index (on MovieLens:
  newer, rarer) film of a user's last sitting.
* **Repeats.** The held-out item is the user's next *new* item: only each user's first interaction
  with an item is kept, since a recommender that excludes seen items could never recommend a repeat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data.movielens import load_fold, load_movielens
from .ids import check_ids

__all__ = [
    "IdMap", "Split", "encode_ids", "random_holdout", "temporal_leave_one_out", "canonical_fold",
    "seen_items", "user_sequences", "chronological", "TIE_BREAK_SEED",
]  # fmt: skip

TIE_BREAK_SEED = 0  # the series' fixed seed for breaking same-second ties (see the module docstring)


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
        check_ids(index, len(self.ids), self.name)
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
    repeats_dropped: int = 0  # later interactions with an already-seen item, removed before splitting

    def __repr__(self) -> str:
        dropped = f", repeats_dropped={self.repeats_dropped:,}" if self.repeats_dropped else ""
        return (
            f"Split(train={len(self.train):,}, valid={len(self.valid):,}, test={len(self.test):,}, "
            f"n_users={self.n_users}, n_items={self.n_items}{dropped})"
        )


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a fixed, well-mixed 64-bit hash of each value (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def chronological(df: pd.DataFrame, tie_break: str = "random", seed: int = TIE_BREAK_SEED) -> pd.DataFrame:
    """``df`` sorted by user, then time; interactions in the same second ordered by ``tie_break``.

    ``"random"``: a pseudo-random key hashed from (user, item, seed), the same whatever subset of the data
    is sorted (so a split and the sequences built from its parts agree). ``"item"``: by item index, the
    arbitrary rule this series used before, kept to show how much it moves the numbers.
    """
    if tie_break == "random":
        pair = df["user"].to_numpy(np.uint64) << np.uint64(32) | df["item"].to_numpy(np.uint64)
        key = _mix64(pair ^ _mix64(np.full(1, seed, dtype=np.uint64))[0])
    elif tie_break == "item":
        key = df["item"].to_numpy()
    else:
        raise ValueError(f"tie_break must be 'random' or 'item', got {tie_break!r}")
    return df.assign(_key=key).sort_values(["user", "timestamp", "_key"], kind="stable").drop(columns="_key")


def temporal_leave_one_out(
    ratings: pd.DataFrame, tie_break: str = "random", seed: int = TIE_BREAK_SEED, repeats: str = "drop"
) -> Split:
    """Per user: last interaction -> test, second-to-last -> validation, the rest -> train.

    ``ratings`` must be encoded (``user``, ``item``) and have a ``timestamp``. Same-second ties are broken
    by :func:`chronological`; ``repeats="drop"`` first keeps only each user's first interaction with each
    item, so every held-out item is new to its user (``"keep"`` leaves repeats in, and evaluation that
    excludes seen items then refuses the repeat targets). Every part gains an ``order`` column, the
    interaction's index in its user's chronological history, which :func:`user_sequences` follows.
    Users with fewer than three interactions keep them all in training.
    """
    _require(ratings, ["user", "item", "timestamp"])
    if repeats not in ("drop", "keep"):
        raise ValueError(f"repeats must be 'drop' or 'keep', got {repeats!r}")
    df = chronological(ratings, tie_break, seed)
    n_before = len(df)
    if repeats == "drop":
        df = df.drop_duplicates(["user", "item"], keep="first")
    df = df.reset_index(drop=True)
    df["order"] = df.groupby("user").cumcount()  # 0 = the user's first interaction
    from_end = df.groupby("user").cumcount(ascending=False)  # 0 = most recent
    size = df.groupby("user")["item"].transform("size")
    held = size >= 3
    test = df[held & (from_end == 0)]
    valid = df[held & (from_end == 1)]
    train = df[~held | (from_end >= 2)]
    parts = (p.reset_index(drop=True) for p in (train, valid, test))
    return Split(*parts, *_sizes(ratings), repeats_dropped=n_before - len(df))


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
    check_ids(interactions["user"].to_numpy(), n_users, "user")
    check_ids(interactions["item"].to_numpy(), n_items, "item")
    df = interactions[["user", "item"]].drop_duplicates().sort_values(["user", "item"])
    counts = np.bincount(df["user"].to_numpy(), minlength=n_users)
    return np.split(df["item"].to_numpy(), np.cumsum(counts)[:-1])


def user_sequences(interactions: pd.DataFrame, n_users: int) -> list[np.ndarray]:
    """Each user's item indices in chronological order, for sequence models.

    Frames from :func:`temporal_leave_one_out` carry an ``order`` column, which is followed (so the
    sequences agree with the split's tie-break); otherwise ties are broken as :func:`chronological` does.
    """
    if "order" in interactions:
        _require(interactions, ["user", "item", "order"])
        df = interactions.sort_values(["user", "order"], kind="stable")
    else:
        _require(interactions, ["user", "item", "timestamp"])
        df = chronological(interactions)
    counts = np.bincount(df["user"].to_numpy(), minlength=n_users)
    return np.split(df["item"].to_numpy(), np.cumsum(counts)[:-1])


def _sizes(ratings: pd.DataFrame) -> tuple[int, int]:
    return int(ratings["user"].max()) + 1, int(ratings["item"].max()) + 1


def _require(df: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in df]
    if missing:
        raise ValueError(f"missing column(s) {missing}: encode raw ids first with encode_ids(ratings)")
