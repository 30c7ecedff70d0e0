"""Large, sparse, long-tailed planted catalogues: the sizes the scaling benchmark measures models at.

A Zipf-like item popularity, low-rank tastes over topics, successor items within sessions and a time-of-day
context, drawn vectorised in seconds at 30,000 users x 25,000 items x 300,000 interactions. The interaction
frame has the columns of :func:`~recsys_tutorial.data.synthetic.make_planted_data`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import merge_config
from .context import TIME_OF_DAY

__all__ = ["CatalogueConfig", "CatalogueData", "make_catalogue_data"]

REDRAW_ROUNDS = 30  # rounds of redrawing repeated (user, item) picks before the rest are dropped


@dataclass(frozen=True)
class CatalogueConfig:
    """Sizes and shape of :func:`make_catalogue_data`; the defaults are about MovieLens-100K's size."""

    n_users: int = 1_000
    n_items: int = 1_700
    n_interactions: int = 100_000  # draws before repeats of a (user, item) pair are dropped
    rank: int = 16  # taste topics: the preference tensor has CP rank ``rank``
    zipf_exponent: float = 1.0  # item popularity ~ 1 / popularity_rank**a: a few hits, a long tail
    activity_sigma: float = 1.0  # log-normal spread of draws per user: a few heavy users, many light ones
    min_per_user: int = 5  # draws every user gets, so leave-one-out leaves each user training items
    taste_concentration: float = 0.3  # Dirichlet alpha over topics: below 1, each user favours a few topics
    spill: float = 0.05  # every item's small loading on every other topic (a hit is liked well beyond its topic)
    p_follow: float = 0.3  # chance that the next item in a session is the previous item's successor
    session_length: float = 5.0  # mean items per session (geometric), at most ``max_session``
    max_session: int = 20
    context_contrast: float = 1.0  # C = affinity ** contrast: above 1 sharpens what each time of day favours
    rating_noise: float = 0.5
    start: str = "2024-01-01"
    seed: int = 0

    def __post_init__(self):
        if min(self.n_users, self.n_items, self.rank, self.min_per_user, self.max_session) < 1:
            raise ValueError("n_users, n_items, rank, min_per_user and max_session must be at least 1")
        if self.n_interactions < self.n_users * self.min_per_user:
            raise ValueError(
                f"n_interactions={self.n_interactions} is below n_users * min_per_user = "
                f"{self.n_users * self.min_per_user}: draw more interactions or lower min_per_user"
            )
        if not 0 <= self.p_follow <= 1 or self.session_length < 1 or self.context_contrast <= 0:
            raise ValueError("need 0 <= p_follow <= 1, session_length >= 1 and context_contrast > 0")


@dataclass(frozen=True)
class CatalogueData:
    """A planted catalogue and its ground truth.

    Attributes
    ----------
    interactions : DataFrame
        ``user_id, item_id, context_id, timestamp, session, position, click, rating``, sorted by user and time,
        one row per (user, item) pair (the first time it was drawn). Items never drawn are absent, as in a log.
    items : DataFrame
        ``item_id, topic, popularity`` (the Zipf weight the item was given).
    U, V, C : ndarray
        Ground-truth factors (n_users, rank), (n_items, rank), (n_contexts, rank); ``V`` holds the topic
        distributions p(item | topic) (each column sums to 1), so X[u, i, c] = sum_k U_uk V_ik C_ck.
    successor : ndarray
        ``successor[i]``: the item that tends to follow item ``i`` in a session (same topic).
    repeats_dropped : int
        Picks of an already picked (user, item) pair still left after redrawing, removed.
    """

    config: CatalogueConfig
    interactions: pd.DataFrame
    items: pd.DataFrame
    U: np.ndarray
    V: np.ndarray
    C: np.ndarray
    successor: np.ndarray
    repeats_dropped: int
    contexts: tuple[str, ...] = TIME_OF_DAY


def _catalogue_factors(cfg: CatalogueConfig, rng: np.random.Generator):
    """Tastes U, topic distributions V = p(item | topic) with Zipf popularity, context affinities C, topics."""
    U = rng.dirichlet(np.full(cfg.rank, cfg.taste_concentration), size=cfg.n_users)  # (n_users, rank)
    topic = rng.integers(0, cfg.rank, size=cfg.n_items)
    popularity = (1.0 + rng.permutation(cfg.n_items)) ** -cfg.zipf_exponent  # Zipf weights, in random item order
    loading = np.full((cfg.n_items, cfg.rank), cfg.spill)
    loading[np.arange(cfg.n_items), topic] = 1.0
    V = popularity[:, None] * loading  # (n_items, rank)
    V /= V.sum(0, keepdims=True)  # each column a distribution over items
    # Each topic peaks at one time of day (rows: TIME_OF_DAY) and keeps a fifth of its weight at the others.
    peak = rng.integers(0, len(TIME_OF_DAY), size=cfg.rank)
    C = np.where(np.arange(len(TIME_OF_DAY))[:, None] == peak[None, :], 1.0, 0.2) ** cfg.context_contrast
    return U, V, C, topic, popularity


def _cycle_successors(topic: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random cycle through each topic's items, vectorised: ``successor[i]`` is the next item on i's cycle."""
    order = np.lexsort((rng.random(len(topic)), topic))  # items grouped by topic, random order inside
    t = topic[order]
    first = np.r_[True, t[1:] != t[:-1]]  # each group's first position
    last = np.r_[t[1:] != t[:-1], True]
    group_first = np.maximum.accumulate(np.where(first, np.arange(len(t)), 0))
    successor = np.empty_like(order)
    successor[order] = np.where(last, order[group_first], np.roll(order, -1))  # the last item wraps to the first
    return successor


def _draw_items(theta: np.ndarray, V: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One item per row of ``theta`` (n, rank) topic weights: a topic k ~ theta, then an item ~ V[:, k].

    Inverse-CDF sampling in one ``searchsorted``: topic k's CDF is shifted to [k, k + 1], so the value
    k + r (r uniform in [0, 1)) lands inside topic k's CDF.
    """
    n_items, rank = V.shape
    cdf = np.cumsum(V.T, axis=1)  # (rank, n_items)
    cdf[:, -1] = 1.0  # exact, so rounding never sends r past the last item
    k = (np.cumsum(theta, 1) < rng.random((len(theta), 1)) * theta.sum(1, keepdims=True)).sum(1)  # (n,)
    k = np.minimum(k, rank - 1)
    flat = (cdf + np.arange(rank)[:, None]).ravel()  # (rank * n_items,) increasing
    return np.searchsorted(flat, k + rng.random(len(k)), side="right") - k * n_items


def _sessions(cfg: CatalogueConfig, rng: np.random.Generator):
    """Users' draws cut into sessions: (user, session, position) per draw, in each user's time order."""
    weights = rng.lognormal(0.0, cfg.activity_sigma, size=cfg.n_users)
    extra = rng.multinomial(cfg.n_interactions - cfg.n_users * cfg.min_per_user, weights / weights.sum())
    counts = cfg.min_per_user + extra  # (n_users,) long-tailed activity
    user = np.repeat(np.arange(cfg.n_users), counts)
    j = np.arange(len(user)) - np.repeat(np.cumsum(counts) - counts, counts)  # index within the user's draws
    start = (j == 0) | (rng.random(len(user)) < 1.0 / cfg.session_length)
    session = np.cumsum(start) - 1
    position = np.arange(len(user)) - np.flatnonzero(start)[session]
    position %= cfg.max_session  # a session reaching max_session items starts a new one
    session = np.cumsum(position == 0) - 1
    return user, session, position


def _follow_successors(fresh, follow, position, successor, max_session: int) -> np.ndarray:
    """Items of every session: the fresh draw, or where ``follow`` the previous item's successor."""
    item = fresh.copy()
    for p in range(1, max_session):  # a successor needs its predecessor final: one position at a time
        rows = np.flatnonzero((position == p) & follow)
        item[rows] = successor[item[rows - 1]]
    return item


def _repeats(user: np.ndarray, item: np.ndarray, n_items: int) -> np.ndarray:
    """True for every draw of a (user, item) pair after its first."""
    repeat = np.ones(len(item), dtype=bool)
    repeat[np.unique(user * n_items + item, return_index=True)[1]] = False
    return repeat


def make_catalogue_data(config: CatalogueConfig | None = None, **overrides) -> CatalogueData:
    r"""Large, sparse, long-tailed planted interactions: ``make_catalogue_data(n_users=30_000, n_items=25_000,
    n_interactions=300_000)`` takes about a second.

    Users hold Dirichlet tastes over ``rank`` topics; item popularity follows Zipf's law; each session
    has a time of day c. A session's first item is drawn from

    .. math:: p(i \mid u, c) \propto \sum_k U_{uk}\, C_{ck}\, V_{ik}, \qquad V_{ik} = p(i \mid k)
              \propto \text{pop}_i\, (\mathbb{1}[\text{topic}_i = k] + \text{spill})

    (a rank-``rank`` CP tensor, as in :func:`make_planted_data`); each later item is, with probability
    ``p_follow``, the previous item's fixed successor, else a fresh draw. Sessions are at least a day
    apart, start at a random hour of their time-of-day bucket (so :func:`~.context.add_context` recovers
    ``context_id`` from the timestamp) and their items follow a minute apart. Every step is vectorised.
    A user rarely picks the same item twice: a repeated pick is redrawn as a fresh one (up to
    ``REDRAW_ROUNDS`` times), and the few repeats left are dropped (``repeats_dropped`` counts them), so
    the frame holds each (user, item) pair once and about ``n_interactions`` rows.

    Returns
    -------
    CatalogueData
        The interactions frame (the columns of :func:`make_planted_data`'s) and the ground truth.
    """
    cfg = merge_config(CatalogueConfig, config, **overrides)
    rng = np.random.default_rng(cfg.seed)
    U, V, C, topic, popularity = _catalogue_factors(cfg, rng)
    successor = _cycle_successors(topic, rng)
    user, session, position = _sessions(cfg, rng)
    n_sessions = int(session[-1]) + 1
    session_context = rng.integers(0, len(TIME_OF_DAY), size=n_sessions)
    context = session_context[session]
    theta = U[user] * C[context]  # (n, rank) topic weights of each draw's (user, context)
    fresh = _draw_items(theta, V, rng)
    follow = rng.random(len(fresh)) < cfg.p_follow
    for _ in range(REDRAW_ROUNDS):  # a user rarely picks an item twice: redraw repeats as fresh picks
        item = _follow_successors(fresh, follow, position, successor, cfg.max_session)
        repeat = _repeats(user, item, cfg.n_items)
        if not repeat.any():
            break
        follow &= ~repeat
        fresh[repeat] = _draw_items(theta[repeat], V, rng)
    item = _follow_successors(fresh, follow, position, successor, cfg.max_session)
    return _catalogue_frame(cfg, rng, U, V, C, topic, popularity, successor, user, session, position, context, item)


def _catalogue_frame(cfg, rng, U, V, C, topic, popularity, successor, user, session, position, context, item):
    """Timestamps, ratings and the frame (repeats dropped) of :func:`make_catalogue_data`."""
    first = position == 0
    gap_days = 1 + rng.poisson(3.0, size=int(first.sum()))  # sessions at least a day apart, a few days on average
    session_user = user[first]
    offsets = np.r_[0, np.cumsum(gap_days)][np.searchsorted(session_user, session_user, side="left")]
    day = np.cumsum(gap_days) - offsets  # (n_sessions,) days since the user's first session, increasing per user
    hour = 6 * context[first] + rng.integers(0, 6, size=len(day))  # inside the session's time-of-day bucket
    minutes = (day * 24 + hour)[session] * 60 + rng.integers(0, 30, size=len(day))[session] + position
    theta = U[user] * C[context]  # (n, rank)
    share = theta[np.arange(len(item)), topic[item]] / theta.sum(1)  # weight of the item's own topic, in [0, 1]
    taste = cfg.spill + (1 - cfg.spill) * share  # how much the user likes the item now, popularity aside
    percentile = pd.Series(taste).rank(pct=True).to_numpy()
    # Ratings rise with the taste's percentile; the square root gives a mean near 3.7 (MovieLens: 3.5).
    rating = np.clip(np.rint(1 + 4 * np.sqrt(percentile) + rng.normal(0, cfg.rating_noise, len(item))), 1, 5)
    frame = pd.DataFrame(
        {
            "user_id": user.astype("int64"),
            "item_id": item.astype("int64"),
            "context_id": context.astype("int64"),
            "timestamp": pd.Timestamp(cfg.start, tz="UTC") + pd.to_timedelta(minutes, unit="min"),
            "session": session.astype("int64"),
            "position": position.astype("int64"),
            "click": np.ones(len(item), dtype="int64"),
            "rating": rating.astype("float32"),
        }
    )
    kept = frame.drop_duplicates(["user_id", "item_id"], keep="first").reset_index(drop=True)
    items = pd.DataFrame({"item_id": np.arange(cfg.n_items), "topic": topic, "popularity": popularity})
    return CatalogueData(cfg, kept, items, U, V, C, successor, len(frame) - len(kept))
