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

__all__ = ["PlantedConfig", "PlantedData", "make_planted_data", "CATEGORIES", "CONTEXT_AFFINITY"]

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
