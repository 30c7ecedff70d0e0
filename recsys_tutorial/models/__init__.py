"""Recommender models, one file per family; all follow :class:`~recsys_tutorial.models.base.Recommender`."""

from .base import Recommender, as_index, check_index
from .baselines import BiasBaseline, ContextPopularity, MostPopular
from .implicit_mf import ImplicitALS, ImplicitALSConfig
from .mf import ALSMF, ALSConfig, BiasedMF, BiasedMFConfig, ImputedSVD, imputed_svd, similar_items

__all__ = [
    "Recommender", "as_index", "check_index", "BiasBaseline", "MostPopular", "ContextPopularity", "ImputedSVD",
    "imputed_svd", "BiasedMF", "BiasedMFConfig", "ALSMF", "ALSConfig", "ImplicitALS", "ImplicitALSConfig",
    "similar_items",
]  # fmt: skip
