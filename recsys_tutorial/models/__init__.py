"""Recommender models, one file per family; all follow :class:`~recsys_tutorial.models.base.Recommender`."""

from .base import Recommender, as_index, check_index
from .baselines import BiasBaseline, ContextPopularity, MostPopular

__all__ = ["Recommender", "as_index", "check_index", "BiasBaseline", "MostPopular", "ContextPopularity"]
