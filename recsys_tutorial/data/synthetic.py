"""Planted synthetic context data: the answer is known, so we can check what a model recovers.

The story: mornings favour news and productivity items, evenings favour entertainment. Preferences
form an exactly low-rank user x item x context tensor

    X[u, i, c] = sum_k U[u, k] * V[i, k] * C[c, k]

with one component per item category. Users open sessions in a context; the first item of a session
is drawn with probability proportional to X[u, :, c]; each later item is, with probability
``p_follow``, the fixed *successor* of the previous one (an order signal only a sequence model can
use), else a fresh draw from X. Everything is determined by ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..config import merge_config
from .context import TIME_OF_DAY

__all__ = [
    "PlantedConfig", "PlantedData", "make_planted_data", "CATEGORIES", "CONTEXT_AFFINITY", "CatalogueConfig",
    "CatalogueData", "make_catalogue_data",
]  # fmt: skip

CATEGORIES = ("news", "productivity", "entertainment")

# C[c, k]: how much context c (rows, TIME_OF_DAY order) favours category k (columns, CATEGORIES order).
CONTEXT_AFFINITY = np.array(
    [
        [0.05, 0.05, 0.60],  # night: a little entertainment
        [1.00, 0.80, 0.05],  # morning: news and productivity
        [0.30, 0.70, 0.20],  # afternoon: mostly productivity
        [0.05, 0.05, 1.00],  # evening: entertainment
    ]
)


@dataclass(frozen=True)
class PlantedConfig:
    """Sizes and noise of the planted data; defaults keep unit tests to about a second."""

    n_users: int = 300
    n_items: int = 90
    sessions_per_user: int = 8
    session_length: int = 5
    p_follow: float = 0.5  # chance that the next item is the previous item's successor
    taste_concentration: float = 0.5  # Dirichlet alpha: below 1 gives users distinct favourite categories
    context_contrast: float = 1.0  # C = CONTEXT_AFFINITY ** contrast: above 1 sharpens what each context favours
    item_specificity: float = 2.0  # Gamma shape of item strengths within a category: lower is more skewed
    rating_noise: float = 0.5  # std of Gaussian noise added before rounding ratings to 1..5
    start: str = "2024-01-01"  # first session day (UTC)
    seed: int = 0


@dataclass(frozen=True)
class PlantedData:
    """Planted data and its ground truth.

    Attributes
    ----------
    interactions : DataFrame
        ``user_id, item_id, context_id, timestamp, session, position, click, rating`` sorted by user and time.
    items : DataFrame
        ``item_id, category``.
    U, V, C : ndarray
        Ground-truth CP factors of shape (n_users, rank), (n_items, rank), (n_contexts, rank).
    successor : ndarray
        ``successor[i]`` is the item that tends to follow item ``i`` (same category).
    """

    config: PlantedConfig
    interactions: pd.DataFrame
    items: pd.DataFrame
    U: np.ndarray
    V: np.ndarray
    C: np.ndarray
    successor: np.ndarray
    contexts: tuple[str, ...] = TIME_OF_DAY
    categories: tuple[str, ...] = CATEGORIES
    n_contexts: int = field(default=len(TIME_OF_DAY))

    @property
    def n_users(self) -> int:
        return self.config.n_users

    @property
    def n_items(self) -> int:
        return self.config.n_items

    @property
    def rank(self) -> int:
        return self.U.shape[1]

    def tensor(self) -> np.ndarray:
        """The planted preference tensor X = sum_k U_k (x) V_k (x) C_k, shape (n_users, n_items, n_contexts)."""
        return np.einsum("uk,ik,ck->uic", self.U, self.V, self.C)


def _planted_factors(cfg: PlantedConfig, rng: np.random.Generator):
    rank = len(CATEGORIES)
    category = np.arange(cfg.n_items) % rank  # balanced categories
    U = rng.dirichlet(np.full(rank, cfg.taste_concentration), size=cfg.n_users)
    strength = rng.gamma(cfg.item_specificity, 1.0 / cfg.item_specificity, size=cfg.n_items)
    V = np.zeros((cfg.n_items, rank))
    V[np.arange(cfg.n_items), category] = strength  # each item loads on its own category only
    return U, V, CONTEXT_AFFINITY**cfg.context_contrast, category


def _successors(category: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random cycle through each category's items: successor[i] is the next item on i's cycle."""
    successor = np.empty_like(category)
    for k in np.unique(category):
        members = rng.permutation(np.flatnonzero(category == k))
        successor[members] = np.roll(members, -1)
    return successor


def _draw_sessions(cfg, X, successor, rng):
    """Yield (user, session, position, context, day, item) rows."""
    n_sessions = cfg.n_users * cfg.sessions_per_user
    users = np.repeat(np.arange(cfg.n_users), cfg.sessions_per_user)
    contexts = rng.integers(0, X.shape[2], size=n_sessions)
    days = np.tile(np.arange(cfg.sessions_per_user), cfg.n_users)
    rows = []
    for s in range(n_sessions):
        u, c = users[s], contexts[s]
        p = X[u, :, c] / X[u, :, c].sum()
        item = rng.choice(cfg.n_items, p=p)
        for pos in range(cfg.session_length):
            if pos > 0:
                item = successor[item] if rng.random() < cfg.p_follow else rng.choice(cfg.n_items, p=p)
            rows.append((u, s, pos, c, days[s], item))
    return np.array(rows)


def make_planted_data(config: PlantedConfig | None = None, **overrides) -> PlantedData:
    """Draw planted context data; ``make_planted_data(seed=1, n_users=500)`` overrides config fields.

    Returns
    -------
    PlantedData
        Interactions (implicit clicks with ratings and timestamps) plus the ground truth.
    """
    cfg = merge_config(PlantedConfig, config, **overrides)
    if cfg.context_contrast <= 0:
        raise ValueError(f"context_contrast must be positive, got {cfg.context_contrast}: 1 keeps CONTEXT_AFFINITY")
    rng = np.random.default_rng(cfg.seed)
    U, V, C, category = _planted_factors(cfg, rng)
    successor = _successors(category, rng)
    X = np.einsum("uk,ik,ck->uic", U, V, C)
    rows = _draw_sessions(cfg, X, successor, rng)
    user, session, position, context, day, item = rows.T
    # A session starts at a random hour inside its time-of-day bucket; items follow a minute apart.
    hour = context * 6 + rng.integers(0, 5, size=len(rows))
    hour = np.repeat(hour[position == 0], cfg.session_length)
    timestamp = (
        pd.Timestamp(cfg.start, tz="UTC")
        + pd.to_timedelta(day, unit="D")
        + pd.to_timedelta(hour, unit="h")
        + pd.to_timedelta(position, unit="min")
    )
    # Ratings rise with preference; the 95th percentile maps to 5 stars so ratings use the whole scale.
    preference = np.minimum(X[user, item, context] / np.quantile(X, 0.95), 1.0)
    rating = np.clip(np.rint(1 + 4 * preference + rng.normal(0, cfg.rating_noise, len(rows))), 1, 5)
    interactions = pd.DataFrame(
        {
            "user_id": user.astype("int64"),
            "item_id": item.astype("int64"),
            "context_id": context.astype("int64"),
            "timestamp": timestamp,
            "session": session.astype("int64"),
            "position": position.astype("int64"),
            "click": np.ones(len(rows), dtype="int64"),
            "rating": rating.astype("float32"),
        }
    )
    items = pd.DataFrame(
        {"item_id": np.arange(cfg.n_items), "category": pd.Categorical.from_codes(category, list(CATEGORIES))}
    )
    return PlantedData(cfg, interactions, items, U, V, C, successor)


# --- large, sparse, long-tailed catalogues ------------------------------------------------------------------

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
