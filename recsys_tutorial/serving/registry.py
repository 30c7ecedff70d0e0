"""The models the pipeline can serve: a registry of fresh models, and fitting one for serving on all interactions.

``register_model(name, make)`` adds a family (``make()`` returns a fresh, unfitted
:class:`~recsys_tutorial.models.base.Recommender`); :func:`fit_for_serving` chooses its epochs on each user's
last new interaction and refits it on everything.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping

import pandas as pd

from ..data import TIME_OF_DAY
from ..models import (
    CLICKS_ML100K,
    IMPLICIT_ALS_ML100K,
    ContextPopularity,
    CPModel,
    ImplicitALS,
    MostPopular,
    Recommender,
)
from ..splits import temporal_leave_one_out

__all__ = ["MODELS", "TRAINERS", "register_model", "make_model", "fit_model", "serving_split", "fit_for_serving"]

# name -> a fresh, unfitted model. Add a family with register_model() to make it available to the pipeline,
# the Airflow DAG, the API and the page.
MODELS: dict[str, Callable[[], Recommender]] = {
    "most-popular": lambda: MostPopular(progress=False),
    "implicit-als": lambda: ImplicitALS(IMPLICIT_ALS_ML100K, progress=False),  # notebook 01's MF, ML-100K preset
    "context-popularity": lambda: ContextPopularity(progress=False),
    "cp": lambda: CPModel(CLICKS_ML100K, progress=False),  # notebook 02's CP; the slowest (gradient descent)
}


def register_model(name: str, make: Callable[[], Recommender], replace: bool = False) -> None:
    """Make ``make()`` (a fresh, unfitted model) available to the pipeline as ``--model name``."""
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"a model name must be a non-empty string without surrounding spaces, got {name!r}")
    if not callable(make):
        raise ValueError(f"make must be a callable that returns a fresh model, got {make!r}")
    if name in MODELS and not replace:
        raise ValueError(f"model {name!r} is already registered: pass replace=True to swap it")
    MODELS[name] = make


def make_model(name: str) -> Recommender:
    """A fresh model of a registered family; unknown names raise a ``ValueError`` listing the choices."""
    if name not in MODELS:
        raise ValueError(
            f"unknown model {name!r}: choose one of {sorted(MODELS)}, add yours with register_model(), or serve a "
            "saved one with --load PATH"
        )
    model = MODELS[name]()
    if not isinstance(model, Recommender):
        raise ValueError(f"MODELS[{name!r}]() returned {type(model).__name__}, not a Recommender")
    return model


def fit_model(model: Recommender, train: pd.DataFrame, n_users: int, n_items: int, valid=None) -> Recommender:
    """``model.fit`` with the sizes its family takes (context-aware models: the four times of day)."""
    sizes = (n_users, n_items) + ((len(TIME_OF_DAY),) if model.context_aware else ())
    return model.fit(train, *sizes, valid=valid)


def serving_split(interactions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, valid): each user's last *new* interaction held out as ``valid``, everything before it in ``train``.

    :func:`~recsys_tutorial.splits.temporal_leave_one_out` holds out the last two; a served model has no test
    set, so its validation item is the last one and its second-to-last goes back to training. Repeats are
    dropped first (the held-out item is new to its user); users with fewer than three interactions stay in
    ``train`` only.
    """
    split = temporal_leave_one_out(interactions)
    return pd.concat([split.train, split.valid], ignore_index=True), split.test


def fit_for_serving(name: str, interactions: pd.DataFrame, n_users: int, n_items: int) -> Recommender:
    """A registered model fitted for serving on all ``interactions`` (encoded, with ``context_id``).

    A model that stops early (``epochs_field``) is fitted with each user's last interaction as validation, then
    refitted on everything for the epochs that were best (:meth:`Recommender.refit`); the others have nothing
    to choose, and one fit on everything gives the same model.
    """
    model = make_model(name)
    if model.epochs_field is None:
        return fit_model(model, interactions, n_users, n_items)
    fit_part, valid = serving_split(interactions)
    return fit_model(model, fit_part, n_users, n_items, valid).refit(interactions)


class _Trainers(Mapping):
    """name -> ``fit(interactions, n_users, n_items)`` returning a model fitted for serving; a view of MODELS."""

    def __getitem__(self, name: str) -> Callable[[pd.DataFrame, int, int], Recommender]:
        if name not in MODELS:
            raise KeyError(name)
        return functools.partial(fit_for_serving, name)

    def __iter__(self) -> Iterator[str]:
        return iter(MODELS)

    def __len__(self) -> int:
        return len(MODELS)


TRAINERS = _Trainers()
