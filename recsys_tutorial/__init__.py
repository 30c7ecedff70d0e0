"""recsys_tutorial: the package behind the notebook series on recommender systems.

Laid out like the series: ``data`` (MovieLens, context, planted synthetic data), ``splits`` and
``sequences`` (protocols), ``metrics`` and ``evaluation`` (full ranking, seen items excluded),
``models`` (one file per family), ``plotting``, ``results`` (recorded headline numbers) and
``utils`` (seeding, the device).
"""

from . import plotting
from .utils import get_device, seed_everything, setup, use_tensorly

__version__ = "0.1.0"
__all__ = ["plotting", "get_device", "seed_everything", "setup", "use_tensorly", "__version__"]
