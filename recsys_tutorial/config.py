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

    An unknown override raises a ``TypeError`` naming it (a typo never passes silently).
    """
    if config is not None and not isinstance(config, cls):
        raise TypeError(f"expected a {cls.__name__}, got {type(config).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {unknown}; its fields are {sorted(known)}")
    return dataclasses.replace(config, **overrides) if config is not None else cls(**overrides)
