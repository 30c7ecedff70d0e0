"""Planted interactions whose preference is not low-rank: a pattern no small CP ranks by.

The preferred item category of a click is ``(group + context) mod K`` for a user group and a time of day:
an exclusive-or when K = 2. Used to measure which models recover a non-linear interaction of user and context.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["XorData", "make_xor_data"]


@dataclass(frozen=True)
class XorData:
    """Clicks whose preferred item category is ``(group + context) mod K``: an exclusive-or when K = 2.

    Attributes
    ----------
    interactions : DataFrame
        ``user_id, item_id, context_id, timestamp``, sorted by user and time.
    group : ndarray
        ``group[u]`` in 0..K-1: each user's hidden group (balanced).
    category : ndarray
        ``category[i]`` in 0..K-1: each item's category (balanced).
    """

    interactions: pd.DataFrame
    group: np.ndarray
    category: np.ndarray
    n_groups: int

    def preferred(self, users, contexts) -> np.ndarray:
        """The category each (user, context) pair prefers: ``(group[u] + c) mod K``."""
        return (self.group[np.asarray(users)] + np.asarray(contexts)) % self.n_groups

    def recovery(self, score, k: int | None = None) -> float:
        """Share of each (user, context)'s top-``k`` items in its preferred category, averaged (1 = recovered).

        ``score(users, contexts)`` returns (B, n_items) scores, e.g. a fitted model's ``score``. ``k`` defaults to
        the size of a category, so 1 means the preferred category fills the top of every list; a ranking blind to
        the pattern scores about 1/K.
        """
        n_users, n_items = len(self.group), len(self.category)
        k = k or n_items // self.n_groups
        shares = []
        for c in range(self.n_groups):
            users = np.arange(n_users)
            top = np.asarray(_as_array(score(users, np.full(n_users, c))).argsort(axis=1)[:, ::-1][:, :k])  # (U, k)
            shares.append((self.category[top] == self.preferred(users, c)[:, None]).mean())
        return float(np.mean(shares))


def _as_array(scores) -> np.ndarray:
    """Scores as a NumPy array (torch tensors are moved to the CPU)."""
    return scores.detach().cpu().numpy() if hasattr(scores, "detach") else np.asarray(scores)


def make_xor_data(
    n_users: int = 200, n_items: int = 40, n_groups: int = 2, clicks_per_user: int = 40, noise: float = 0.1,
    seed: int = 0,
) -> XorData:  # fmt: skip
    r"""Draw clicks where what a user wants depends on their group *and* the context together.

    User u belongs to group :math:`g_u`, item i to category :math:`k_i`, contexts are :math:`c = 0..K-1`
    (with K = 2: morning, evening). In context c a user clicks, with probability ``1 - noise``, a uniformly
    drawn item of category :math:`(g_u + c) \bmod K`, else any item. With K = 2 group 0 likes category 0 in
    the morning and 1 in the evening, group 1 the opposite: neither the group nor the context alone says
    anything about the category. Signs make this particular case easy for a factor model, since
    :math:`(-1)^{g + k + c} = (-1)^g (-1)^k (-1)^c` is a rank-1 product; with K >= 3 the modular sum has no
    such sign trick, which is what tests against a CP of rank 1 or 2 measure.
    """
    if n_groups < 2 or n_items < n_groups:
        raise ValueError(f"need n_groups >= 2 and at least one item per category, got {n_groups} and {n_items}")
    if not 0 <= noise <= 1:
        raise ValueError(f"noise must lie in [0, 1], got {noise}")
    rng = np.random.default_rng(seed)
    # Balanced groups and categories: then neither the group nor the context alone predicts the category.
    group, category = rng.permutation(np.arange(n_users) % n_groups), np.arange(n_items) % n_groups
    users = np.repeat(np.arange(n_users), clicks_per_user)
    contexts = rng.integers(0, n_groups, len(users))
    wanted = (group[users] + contexts) % n_groups
    by_category = [np.flatnonzero(category == k) for k in range(n_groups)]
    items = np.array([rng.choice(by_category[w]) for w in wanted])
    random = rng.random(len(users)) < noise
    items[random] = rng.integers(0, n_items, random.sum())
    minute = np.tile(np.arange(clicks_per_user), n_users)
    interactions = pd.DataFrame({
        "user_id": users, "item_id": items, "context_id": contexts,
        "timestamp": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(minute, unit="min"),
    })  # fmt: skip
    return XorData(interactions, group, category, n_groups)
