"""Recommender models, one file per family; all follow :class:`~recsys_tutorial.models.base.Recommender`.

Importing this package registers every model class in ``Recommender.registry`` (the contract test runs
over it): a new model family must be imported here.
"""

from .als import ALS_ML100K, ALSMF, SAMPLED_ALS_ML100K, ALSConfig
from .base import Recommender, as_index
from .baselines import BiasBaseline, BiasBaselineConfig, ContextPopularity, ContextPopularityConfig, MostPopular
from .cp import CLICKS_ML100K, PLANTED_CLICKS, CPModel, TensorModelConfig
from .feature_transformer import FeatureTransformer, FeatureTransformerConfig
from .genre_popularity import GenrePopularity, GenrePopularityConfig
from .implicit_mf import IMPLICIT_ALS_ML100K, ImplicitALS, ImplicitALSConfig
from .mf import BIASED_MF_ML100K, BiasedMF, BiasedMFConfig, ImputedSVD, ImputedSVDConfig, imputed_svd, similar_items
from .neural import MLPConfig, MLPScorer
from .sasrec import SASRec, SASRecConfig
from .tucker import TuckerConfig, TuckerModel

__all__ = [
    "Recommender", "as_index", "BiasBaseline", "BiasBaselineConfig", "MostPopular", "ContextPopularity",
    "ContextPopularityConfig", "ImputedSVD", "ImputedSVDConfig", "imputed_svd", "BiasedMF", "BiasedMFConfig",
    "BIASED_MF_ML100K", "ALSMF", "ALSConfig", "ALS_ML100K", "SAMPLED_ALS_ML100K", "ImplicitALS", "ImplicitALSConfig",
    "IMPLICIT_ALS_ML100K", "CPModel", "TensorModelConfig", "PLANTED_CLICKS", "CLICKS_ML100K", "TuckerModel",
    "TuckerConfig", "SASRec", "SASRecConfig", "similar_items",
    "FeatureTransformer", "FeatureTransformerConfig", "GenrePopularity", "GenrePopularityConfig", "MLPScorer",
    "MLPConfig",
]  # fmt: skip
