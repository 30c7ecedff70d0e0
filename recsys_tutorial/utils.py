"""Seeding and the one device choice of the series."""

from __future__ import annotations

import functools
import os
import random

import numpy as np
import tensorly as tl
import torch

__all__ = ["seed_everything", "get_device", "use_tensorly", "setup"]


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices); return a torch generator seeded likewise.

    TensorLy's ``random_state`` seeds NumPy only, so its PyTorch-backend initialisations are made
    reproducible by this call, not by ``random_state`` alone.
    """
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - TensorLy's random_state=None and older code draw from here
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


@functools.cache
def get_device() -> torch.device:
    """cuda if present, else mps (Apple silicon), else cpu; ``$RECSYS_TUTORIAL_DEVICE`` overrides.

    Cached: the device is chosen once per process and every notebook and model uses the same one.
    """
    if forced := os.environ.get("RECSYS_TUTORIAL_DEVICE"):
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def use_tensorly() -> torch.device:
    """Set TensorLy to its PyTorch backend; tensors then live on :func:`get_device`. Returns that device."""
    tl.set_backend("pytorch")
    return get_device()


def setup(seed: int) -> torch.device:
    """What each notebook's first cell calls: seed everything, TensorLy on PyTorch, return the device."""
    seed_everything(seed)
    return use_tensorly()
