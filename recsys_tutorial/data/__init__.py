"""Data: MovieLens (downloaded, verified, cached), context features and planted synthetic data."""

from .context import TIME_OF_DAY, TIMESTAMP_CAVEAT, add_context
from .movielens import DataIntegrityError, MovieLens, data_dir, load_fold, load_movielens
from .synthetic import PlantedConfig, PlantedData, make_planted_data

__all__ = [
    "TIME_OF_DAY", "TIMESTAMP_CAVEAT", "add_context", "DataIntegrityError", "MovieLens", "data_dir",
    "load_fold", "load_movielens", "PlantedConfig", "PlantedData", "make_planted_data",
]  # fmt: skip
