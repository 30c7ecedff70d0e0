"""A cold-start protocol: what can a model say about items and users it never saw in training?

A time cut-off :math:`\\tau` splits the log. Everything before it is training data; what happens after it is
the test. Items first interacted with after :math:`\\tau` are **cold items**: no training interaction at all.
Users whose history starts after :math:`\\tau` are **cold users**. The test interactions of the other (warm)
users are split into cold-item and warm-item targets; the cold users' interactions are a third set.

Every model ranks the full catalogue (cold items included) with each user's pre-cut-off items excluded, and
HR@K / NDCG@K are reported on each target set separately, one row per query in tables that
:func:`recsys_tutorial.stats.compare_per_user` puts intervals on. An id-only model has no information about
a cold item or user; :data:`UNSEEN` says, per model class, what its scores then are.

References
----------
.. [1] A. I. Schein et al., "Methods and Metrics for Cold-Start Recommendations", SIGIR 2002.
.. [2] M. Volkovs, G. Yu and T. Poutanen, "DropoutNet: Addressing Cold Start in Recommender Systems", NeurIPS 2017.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .evaluation import evaluate_ranking
from .splits import chronological, seen_items

__all__ = ["ColdStartSplit", "cold_start_split", "Unseen", "UNSEEN", "how_unseen_is_handled", "cold_start_table",
           "evaluate_cold_start", "PARTS"]  # fmt: skip

PARTS = ("cold_items", "warm_items", "cold_users")  # the target sets of a ColdStartSplit


@dataclass(frozen=True)
class Unseen:
    """What a model's scores are for an item (``item``) or a user (``user``) absent from its training data."""

    item: str
    user: str


# Read off each model's code (and pinned by tests/test_coldstart.py where the claim is exact).
UNSEEN = {
    "MostPopular": Unseen(
        item="score 0 (no training interaction): tied with every other cold item, below any warm item",
        user="the popularity list every user gets",
    ),
    "ContextPopularity": Unseen(
        item="score 0 in every context (no count, and the prior n_i / N is 0 too)",
        user="the context's popularity list every user gets",
    ),
    "GenrePopularity": Unseen(
        item="scored by its genres: the per-item popularity of those genres, as any warm item of the same genres",
        user="everyone's genre shares (the prior each user is shrunk towards)",
    ),
    "SASRec": Unseen(
        item="its random initial id embedding, pushed down by every softmax step (it is never a target)",
        user="an empty history: the final LayerNorm of padding, one fixed list for every such user",
    ),
    "FeatureTransformer": Unseen(
        item="its features only: the id embedding of an item without training interactions is masked to 0",
        user="the start token, the user's features and the context: what training asks of each first item",
    ),
    "ImplicitALS": Unseen(
        item="factor 0 (its least-squares solve has no observed entry): score 0 for every user",
        user="factor 0: every item scores 0, so the target ties with the whole catalogue",
    ),
    "BiasedMF": Unseen(
        item="item bias 0 and its random initial factors (squared error never touches them)",
        user="user bias 0 and random initial factors",
    ),
}


def how_unseen_is_handled(model) -> Unseen:
    """:data:`UNSEEN`'s entry for ``model`` (an instance or class); ``ValueError`` for a model not described."""
    name = model.__name__ if isinstance(model, type) else type(model).__name__
    if name not in UNSEEN:
        raise ValueError(f"no description of how {name} scores unseen items and users: add it to coldstart.UNSEEN")
    return UNSEEN[name]


@dataclass(frozen=True)
class ColdStartSplit:
    """Interactions before and after a time cut-off (see the module docstring).

    Attributes
    ----------
    train, valid : DataFrame
        Interactions before ``cutoff``; ``valid`` holds each user's last new item before it (users with at least
        three), for early stopping, and may be empty. Both have an ``order`` column, as the leave-one-out split.
    test : DataFrame
        Interactions after ``cutoff`` that are new to their user, with boolean ``cold_item`` and ``cold_user``.
    cold_items, cold_users : ndarray
        Encoded indices of the items and users with no interaction before ``cutoff``.
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    cutoff: pd.Timestamp
    cold_items: np.ndarray
    cold_users: np.ndarray
    n_users: int
    n_items: int

    def __repr__(self) -> str:
        counts = ", ".join(f"{part}={len(self.targets(part)):,}" for part in PARTS)
        return (
            f"ColdStartSplit(cutoff={self.cutoff}, train={len(self.train):,}, valid={len(self.valid):,}, "
            f"targets: {counts}; {len(self.cold_items)} cold items, {len(self.cold_users)} cold users)"
        )

    @property
    def history(self) -> pd.DataFrame:
        """Everything before the cut-off: train + valid."""
        return pd.concat([self.train, self.valid], ignore_index=True)

    def seen(self) -> list[np.ndarray]:
        """Each user's items before the cut-off, excluded from every ranking (empty for cold users)."""
        return seen_items(self.history, self.n_users, self.n_items)

    def targets(self, part: str) -> pd.DataFrame:
        """Test interactions of ``"cold_items"`` or ``"warm_items"`` (both of warm users), or ``"cold_users"``."""
        t = self.test
        masks = {"cold_items": ~t["cold_user"] & t["cold_item"], "warm_items": ~t["cold_user"] & ~t["cold_item"],
                 "cold_users": t["cold_user"]}  # fmt: skip
        if part not in masks:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        return t[masks[part]].reset_index(drop=True)


def _cutoff(timestamps: pd.Series, cutoff) -> pd.Timestamp:
    if isinstance(cutoff, float):
        if not 0 < cutoff < 1:
            raise ValueError(f"a cut-off given as a fraction must lie strictly between 0 and 1, got {cutoff}")
        return timestamps.quantile(cutoff)
    tau, tz = pd.Timestamp(cutoff), getattr(timestamps.dtype, "tz", None)
    return tau.tz_localize(tz) if tau.tzinfo is None and tz is not None else tau  # a naive time: the log's zone


def cold_start_split(ratings: pd.DataFrame, cutoff: float | str | pd.Timestamp = 0.9, valid: bool = True):
    """Split encoded interactions at a time cut-off into training data and cold/warm item and user targets.

    Parameters
    ----------
    ratings : DataFrame
        Encoded (``user``, ``item`` from :func:`~recsys_tutorial.splits.encode_ids` on the *whole* log, so that
        cold items and users have indices) with a ``timestamp``.
    cutoff : float or timestamp
        A fraction q: the cut-off is the q-quantile of the timestamps (0.9: the last 10% of interactions
        are the test); or the cut-off time itself.
    valid : bool
        Hold each user's last new pre-cut-off item out of ``train`` for early stopping.
    """
    missing = [c for c in ("user", "item", "timestamp") if c not in ratings]
    if missing:
        raise ValueError(f"ratings lack column(s) {missing}: encode the whole log first with splits.encode_ids")
    tau = _cutoff(ratings["timestamp"], cutoff)
    df = chronological(ratings).drop_duplicates(["user", "item"], keep="first").reset_index(drop=True)
    df["order"] = df.groupby("user").cumcount()
    before, after = df[df["timestamp"] < tau], df[df["timestamp"] >= tau]
    if before.empty or after.empty:
        raise ValueError(f"the cut-off {tau} leaves no interaction on one side: choose a time inside the log")
    n_users, n_items = int(df["user"].max()) + 1, int(df["item"].max()) + 1
    cold_items = np.setdiff1d(np.arange(n_items), before["item"].unique())
    cold_users = np.setdiff1d(np.arange(n_users), before["user"].unique())
    test = after.assign(cold_item=after["item"].isin(cold_items), cold_user=after["user"].isin(cold_users))
    held = np.zeros(len(before), dtype=bool)
    if valid:  # each user's last pre-cut-off item, for users keeping at least two for training
        from_end = before.groupby("user").cumcount(ascending=False)
        held = ((from_end == 0) & (before.groupby("user")["item"].transform("size") >= 3)).to_numpy()
    train, valid_df = (before[~held].reset_index(drop=True), before[held].reset_index(drop=True))
    return ColdStartSplit(train, valid_df, test.reset_index(drop=True), tau, cold_items, cold_users, n_users, n_items)


def _context_free(model):
    """A score function that takes and ignores contexts, so that every model is evaluated on the same queries."""
    return lambda users, contexts: model.score(users)


def cold_start_table(model, split: ColdStartSplit, part: str, k: int = 10, context: str | None = None,
                     candidates: str = "all") -> tuple[dict[str, float], pd.DataFrame]:  # fmt: skip
    """HR@K, NDCG@K, ... of ``model`` on one target set, and the per-query table behind them.

    Parameters
    ----------
    model : Recommender
        Fitted on ``split.train`` (and ``split.valid``) with the split's ``n_users`` and ``n_items``.
    part : {"cold_items", "warm_items", "cold_users"}
    context : str, optional
        A context column: one query per (user, context), each holding the user's targets in that context.
        Models that ignore context are scored without it on the *same* queries, so tables stay comparable.
    candidates : {"all", "cold"}
        ``"cold"`` ranks among the cold items only (warm items excluded too): can the model order new items
        among themselves, whether or not it can tell that new items are about to be popular?

    Returns
    -------
    (metrics, table): the mean metrics (plus ``targets``, how many were ranked), and one row per query for
    :func:`~recsys_tutorial.stats.compare_per_user`.
    """
    targets = split.targets(part)
    if targets.empty:
        raise ValueError(f"the split has no {part} targets: move the cut-off (more test time gives more of them)")
    exclude = split.seen()
    if candidates == "cold":
        if not targets["cold_item"].any():
            raise ValueError(f"candidates='cold' ranks cold-item targets, and {part} has none")
        warm = np.setdiff1d(np.arange(split.n_items), split.cold_items)
        targets = targets[targets["cold_item"]]
        exclude = [np.union1d(e, warm) for e in exclude]
    elif candidates != "all":
        raise ValueError(f"candidates must be 'all' or 'cold', got {candidates!r}")
    scorer = model if context is None or model.uses_context else _context_free(model)
    metrics, table = evaluate_ranking(scorer, targets, exclude, k=k, context=context, per_user=True)
    return {**metrics, "targets": len(targets)}, table


def evaluate_cold_start(models: dict, split: ColdStartSplit, parts=PARTS[:2], k: int = 10,
                        context: str | None = None, candidates: str = "all") -> tuple[pd.DataFrame, dict]:  # fmt: skip
    """:func:`cold_start_table` for every (model, part): a summary frame and the per-query tables.

    Returns
    -------
    summary : DataFrame
        One row per model and part: ``model, part, HR@K, NDCG@K, queries, targets``.
    tables : dict
        ``tables[name, part]``: the per-query table, for :func:`~recsys_tutorial.stats.compare_per_user`.
    """
    rows, tables = [], {}
    for part in parts:
        for name, model in models.items():
            metrics, table = cold_start_table(model, split, part, k, context, candidates)
            tables[name, part] = table
            hr, ndcg = metrics[f"HR@{k}"], metrics[f"NDCG@{k}"]
            rows.append({"model": name, "part": part, f"HR@{k}": hr, f"NDCG@{k}": ndcg, "queries": len(table),
                         "targets": metrics["targets"]})  # fmt: skip
    return pd.DataFrame(rows), tables
