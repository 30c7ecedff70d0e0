r"""Genre popularity: a popularity baseline that can score an item nobody has interacted with yet, by its genres.

Most-popular scores an item by its own count, so a new item scores 0. Here an item is scored by how popular
an item of its genres is, personalised by the user's genre shares shrunk towards everyone's:

.. math::  s(u, i) = \sum_g b_{ig}\, \frac{p_u(g)}{m_g}, \qquad
           p_u(g) = \frac{n_{ug} + \beta\, p(g)}{n_u + \beta}, \qquad m_g = \sum_{i \text{ known}} b_{ig}

where :math:`b_{ig}` is item i's genre bag normalised to sum to 1 (an interaction with a two-genre film counts
half to each genre), :math:`n_{ug} = \sum_{i \in R_u} b_{ig}` the user's interactions per genre,
:math:`p(g)` the genre's share of all training interactions, and :math:`m_g` the number of items (known at
training time) in genre g, so :math:`p_u(g) / m_g` is the share of the user's interactions one item of genre
g gets on average. A user without history gets :math:`p(g)`: genre popularity for everyone. Items with the
same genres tie; evaluation counts ties against the target, so the baseline is not flattered by them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..data.features import Features, require_features
from ..training import History
from .base import Recommender

__all__ = ["GenrePopularityConfig", "GenrePopularity"]


@dataclass(frozen=True)
class GenrePopularityConfig:
    """Prior strength and the item feature bag of :class:`GenrePopularity`."""

    # beta in pseudo-interactions: MovieLens users have at least 20 ratings, so a typical user's own genre
    # shares dominate while a user with a handful of interactions stays close to everyone's.
    prior_strength: float = 20.0
    bag: str = "genres"  # the item feature bag to score by

    def __post_init__(self):
        if self.prior_strength < 0:
            raise ValueError(f"prior_strength must be >= 0, got {self.prior_strength}")


class GenrePopularity(Recommender):
    """Per-genre popularity, personalised by each user's genre shares (see the module docstring).

    ``GenrePopularity(item_features=item_features(dataset, item_map))``; fitting without genres (a dataset
    without item metadata) raises a ``ValueError`` that says so.
    """

    Config = GenrePopularityConfig

    def __init__(self, config=None, *, item_features: Features | None = None, device=None, progress=True, **kw):
        super().__init__(config, device=device, progress=progress, **kw)
        self.item_features = item_features  # checked by fit, so a model can be built before its data is loaded

    def _init_kwargs(self) -> dict:
        return {"item_features": self.item_features}

    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> History:
        features = require_features(self.item_features, "item", "GenrePopularity", needs=[self.config.bag])
        if self.config.bag not in features.bags:
            raise ValueError(f"{self.config.bag!r} is a field, not a bag, of these item features")
        bag = features.bags[self.config.bag].double()  # (n_items, G)
        if len(bag) != self.n_items:
            raise ValueError(f"item features have {len(bag)} rows but fit got n_items={self.n_items}")
        b = (bag / bag.sum(1, keepdim=True).clamp(min=1)).numpy()  # (n_items, G), rows sum to 1 (or 0)
        users, items = train["user"].to_numpy(), train["item"].to_numpy()
        n_ug = np.zeros((self.n_users, b.shape[1]))
        np.add.at(n_ug, users, b[items])  # (n_users, G): interactions per user and genre
        p_g = n_ug.sum(0) / max(n_ug.sum(), 1e-12)  # (G,) everyone's genre shares
        beta = self.config.prior_strength
        p_ug = (n_ug + beta * p_g) / np.maximum(n_ug.sum(1, keepdims=True) + beta, 1e-12)  # (n_users, G)
        known = np.bincount(items, minlength=self.n_items) > 0
        m_g = b[known].sum(0)  # (G,) known items per genre
        per_item = np.divide(1.0, m_g, out=np.zeros_like(m_g), where=m_g > 0)  # (G,)
        self.user_genre_ = torch.tensor(p_ug * per_item, dtype=torch.float32, device=self.device)  # (n_users, G)
        self.item_genre_ = torch.tensor(b, dtype=torch.float32, device=self.device)  # (n_items, G)
        return History(best_epoch=0)

    def _score(self, users, contexts):
        return self.user_genre_[users] @ self.item_genre_.T  # (B, G) @ (G, n_items)

    def _learned(self):
        return [self.user_genre_]
