"""Data: MovieLens (downloaded, verified, cached), any interaction log, context features and planted synthetic data."""

from .context import TIME_OF_DAY, TIMESTAMP_CAVEAT, add_context
from .dataset import Dataset
from .interactions import KCoreReport, LoadReport, k_core_filter, load_dataset, load_interactions
from .movielens import DataIntegrityError, MovieLens, data_dir, load_fold, load_movielens
from .synthetic import PlantedConfig, PlantedData, make_planted_data

__all__ = [
    "TIME_OF_DAY", "TIMESTAMP_CAVEAT", "add_context", "DataIntegrityError", "MovieLens", "data_dir",
    "load_fold", "load_movielens", "PlantedConfig", "PlantedData", "make_planted_data", "Dataset", "KCoreReport",
    "LoadReport", "k_core_filter", "load_dataset", "load_interactions",
]  # fmt: skip
