"""Data: MovieLens, any interaction log, context, item and user features, planted data (low-rank, large, non-linear)."""

from .catalogue import CatalogueConfig, CatalogueData, make_catalogue_data
from .context import TIME_OF_DAY, TIMESTAMP_CAVEAT, add_context
from .dataset import Dataset
from .interactions import KCoreReport, LoadReport, k_core_filter, load_dataset, load_interactions
from .movielens import DataIntegrityError, MovieLens, data_dir, load_fold, load_movielens
from .nonlinear import XorData, make_xor_data
from .synthetic import PlantedConfig, PlantedData, make_planted_data

__all__ = [
    "TIME_OF_DAY", "TIMESTAMP_CAVEAT", "add_context", "DataIntegrityError", "MovieLens", "data_dir",
    "load_fold", "load_movielens", "PlantedConfig", "PlantedData", "make_planted_data", "Dataset", "KCoreReport",
    "LoadReport", "k_core_filter", "load_dataset", "load_interactions", "CatalogueConfig", "CatalogueData",
    "make_catalogue_data", "XorData", "make_xor_data",
]  # fmt: skip
