"""The one model contract, checked on every recommender the package defines.

The parametrisation runs over ``Recommender.registry``: defining a new model class in ``recsys_tutorial``
registers it, and :func:`test_every_model_class_is_covered` fails until it has a factory below, so no model
can skip the contract.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

import recsys_tutorial.models as models
from recsys_tutorial.data.features import Features
from recsys_tutorial.models import Recommender
from recsys_tutorial.training import History
from recsys_tutorial.utils import get_device

N_USERS, N_ITEMS, N_CONTEXTS = 12, 10, 3
GENRES = np.eye(4, dtype=int)[np.arange(N_ITEMS) % 4]  # (N_ITEMS, 4): one genre per item
ITEM_FEATURES = Features.from_arrays("item", fields={"year": np.arange(N_ITEMS) % 3}, bags={"genres": GENRES})
USER_FEATURES = Features.from_arrays("user", fields={"age": np.arange(N_USERS) % 2})

FACTORIES = {
    "BiasBaseline": lambda seed: models.BiasBaseline(n_sweeps=3),
    "MostPopular": lambda seed: models.MostPopular(),
    "ContextPopularity": lambda seed: models.ContextPopularity(),
    "ImputedSVD": lambda seed: models.ImputedSVD(rank=2),
    "BiasedMF": lambda seed: models.BiasedMF(rank=3, epochs=2, seed=seed, progress=False),
    "ALSMF": lambda seed: models.ALSMF(rank=3, n_sweeps=2, n_samples=2, seed=seed),
    "ImplicitALS": lambda seed: models.ImplicitALS(rank=3, n_sweeps=2, seed=seed),
    "CPModel": lambda seed: models.CPModel(rank=3, epochs=2, loss="bce", seed=seed, progress=False),
    "TuckerModel": lambda seed: models.TuckerModel(rank=3, epochs=2, seed=seed, progress=False),
    "SASRec": lambda seed: models.SASRec(max_len=8, dim=8, epochs=2, seed=seed, progress=False),
    "FeatureTransformer": lambda seed: models.FeatureTransformer(
        max_len=8, dim=8, epochs=2, seed=seed, progress=False, item_features=ITEM_FEATURES, user_features=USER_FEATURES
    ),
    "GenrePopularity": lambda seed: models.GenrePopularity(item_features=ITEM_FEATURES),
    "MLPScorer": lambda seed: models.MLPScorer(dim=4, hidden=8, epochs=2, seed=seed, progress=False),
}


def _package_models() -> list[str]:
    return sorted(n for n, c in Recommender.registry.items() if c.__module__.startswith("recsys_tutorial."))


def _interactions(seed: int = 0) -> pd.DataFrame:
    """Each user: 7 interactions with distinct items, a time order, a rating 1-5 and a context 0-2."""
    rng = np.random.default_rng(seed)
    rows = [(u, int(i), t, int(rng.integers(1, 6)), int(rng.integers(0, N_CONTEXTS)))
            for u in range(N_USERS) for t, i in enumerate(rng.choice(N_ITEMS, size=7, replace=False))]  # fmt: skip
    df = pd.DataFrame(rows, columns=["user", "item", "t", "rating", "context_id"]).astype({"rating": "float32"})
    df["timestamp"] = pd.to_datetime(df["t"] * 60, unit="s", utc=True)
    return df


def _split():
    df = _interactions()
    last = df.groupby("user")["t"].transform("max")
    return df[df["t"] < last].reset_index(drop=True), df[df["t"] == last].reset_index(drop=True)


def _fit(name: str, seed: int = 0, valid: bool = False) -> Recommender:
    model = FACTORIES[name](seed)
    train, held = _split()
    sizes = (N_USERS, N_ITEMS, N_CONTEXTS) if model.context_aware else (N_USERS, N_ITEMS)
    fitted = model.fit(train, *sizes, valid=held if valid else None)
    assert fitted is model, "fit must return self"
    return model


def test_every_model_class_is_covered():
    assert _package_models() == sorted(FACTORIES), "add a factory for the new model class to FACTORIES"


@pytest.mark.parametrize("name", _package_models())
def test_construction_takes_a_frozen_config_overrides_device_and_progress(name):
    cls = Recommender.registry[name]
    assert dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen
    model = cls(cls.Config(), device="cpu", progress=False)
    assert isinstance(model.config, cls.Config) and model.device == torch.device("cpu") and model.progress is False
    with pytest.raises(TypeError, match="has no field"):
        cls(not_a_field=1)


@pytest.mark.parametrize("name", _package_models())
def test_scores_shape_device_and_context(name):
    model = _fit(name)
    scores = model.score([0, 3, 5])
    assert scores.shape == (3, N_ITEMS) and scores.device.type == get_device().type == model.device.type
    if model.uses_context:
        assert model.without_context, "a context-aware model must say what score(users) does without context"
        by_context = model.score([0, 3, 5], [0, 2, 1])
        assert by_context.shape == (3, N_ITEMS) and by_context.device.type == model.device.type
    else:
        with pytest.raises(ValueError, match="does not use context"):
            model.score([0], [1])


@pytest.mark.parametrize("name", _package_models())
def test_recommend_excludes_seen_items(name):
    model = _fit(name)
    train, _ = _split()
    items, scores = model.recommend(np.arange(N_USERS), k=3)
    assert items.shape == scores.shape == (N_USERS, 3)
    for u in range(N_USERS):
        assert not set(items[u].tolist()) & set(train.loc[train["user"] == u, "item"])


@pytest.mark.parametrize("name", _package_models())
def test_bad_ids_raise_value_errors_that_name_them(name):
    model = _fit(name)
    with pytest.raises(ValueError, match=f"user id {N_USERS} is out of range"):
        model.score([0, N_USERS])
    with pytest.raises(ValueError, match="user id -1 is out of range"):
        model.recommend([-1], k=2)
    if model.predicts_ratings:
        with pytest.raises(ValueError, match=f"item id {N_ITEMS} is out of range"):
            model.predict([0], [N_ITEMS])
    if model.uses_context:
        with pytest.raises(ValueError, match=f"context id {N_CONTEXTS} is out of range"):
            model.score([0], [N_CONTEXTS])
    train, _ = _split()
    bad = train.assign(item=train["item"].where(train.index != 0, N_ITEMS + 5))
    sizes = (N_USERS, N_ITEMS, N_CONTEXTS) if model.context_aware else (N_USERS, N_ITEMS)
    with pytest.raises(ValueError, match=f"item id {N_ITEMS + 5} is out of range"):
        FACTORIES[name](0).fit(bad, *sizes)


@pytest.mark.parametrize("name", _package_models())
def test_history_parameters_and_predict(name):
    model = _fit(name, valid=True)
    assert isinstance(model.history_, History) and model.history_.seconds > 0
    assert 0 <= model.history_.best_epoch < max(1, model.history_.epochs)
    n = model.n_parameters()
    assert isinstance(n, int) and n > 0
    if model.predicts_ratings:
        _, held = _split()
        pred = model.predict(held["user"], held["item"])
        assert pred.shape == (len(held),) and torch.isfinite(pred).all()


@pytest.mark.parametrize("name", _package_models())
def test_same_seed_same_scores(name):
    a, b = _fit(name, seed=3), _fit(name, seed=3)
    torch.testing.assert_close(a.score(range(N_USERS)).cpu(), b.score(range(N_USERS)).cpu())


@pytest.mark.parametrize("name", _package_models())
def test_refit_trains_the_same_model_on_more_data(name):
    model = _fit(name, valid=True)
    train, held = _split()
    again = model.refit(pd.concat([train, held]))
    assert type(again) is type(model) and again is not model
    assert again.score([0]).shape == (1, N_ITEMS)
    if model.epochs_field:
        assert getattr(again.config, model.epochs_field) == model.history_.best_epoch + 1
    assert set(again.seen_[0].tolist()) == set(held.loc[held["user"] == 0, "item"]) | set(model.seen_[0].tolist())


@pytest.mark.parametrize("name", _package_models())
def test_an_unfitted_model_says_so(name):
    with pytest.raises(ValueError, match="not fitted yet"):
        FACTORIES[name](0).score([0])
