"""One way to build a configuration: a frozen dataclass, optionally a base instance, plus keyword overrides."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

__all__ = ["merge_config"]

C = TypeVar("C")


def merge_config(cls: type[C], config: C | None = None, **overrides) -> C:
    """``cls`` built from ``config``'s fields (or the defaults) with ``overrides`` on top.

    >>> from recsys_tutorial.models.sasrec import SASRecConfig           # doctest: +SKIP
    >>> merge_config(SASRecConfig, SASRecConfig(dim=64), epochs=3).dim    # doctest: +SKIP
    64

    An unknown override raises a ``TypeError`` naming it (a typo never passes silently). A ``config`` of a
    parent dataclass (e.g. a ``TensorModelConfig`` given to a model whose ``Config`` extends it) keeps its fields.
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {unknown}; its fields are {sorted(known)}")
    if config is None:
        return cls(**overrides)
    if isinstance(config, cls):
        return dataclasses.replace(config, **overrides)
    if dataclasses.is_dataclass(config) and issubclass(cls, type(config)):  # a base config extended by cls
        return cls(**{**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)}, **overrides})
    raise TypeError(f"expected a {cls.__name__}, got {type(config).__name__}")
