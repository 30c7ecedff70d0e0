"""One shape for every dataset the notebooks load: interactions, plus item and user tables when there are any."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

__all__ = ["Dataset"]


@dataclass(frozen=True)
class Dataset:
    """A named interaction log and, where the dataset has them, its item and user tables.

    Attributes
    ----------
    name : str
        ``"ml-100k"``, ``"ml-1m"``, or the file name of a learner's own log.
    ratings : DataFrame
        ``user_id, item_id, rating, timestamp`` (``rating`` float32, ``timestamp`` a UTC ``datetime64``),
        plus ``context`` when the log has one; raw ids of any type. Logs read by
        :func:`~recsys_tutorial.data.load_interactions` carry what the loader did in ``ratings.attrs["report"]``.
    items, users : DataFrame or None
        Metadata tables (MovieLens has both); ``None`` when the dataset has none, so notebook cells
        that need titles, genres or demographics can test for it and skip.
    """

    name: str
    ratings: pd.DataFrame
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None

    @property
    def n_users(self) -> int:
        return int(self.ratings["user_id"].nunique())

    @property
    def n_items(self) -> int:
        return int(self.ratings["item_id"].nunique())

    @property
    def report(self):
        """What the loader did (a :class:`~recsys_tutorial.data.interactions.LoadReport`), or ``None``."""
        return self.ratings.attrs.get("report")
