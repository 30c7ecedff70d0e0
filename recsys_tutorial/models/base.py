"""The one contract every recommender in the series follows.

Construction: ``Model(config=None, *, device=None, progress=True, **overrides)``, where ``config`` is the
model's frozen dataclass ``Model.Config`` and ``overrides`` replace its fields. Then::

    model.fit(train, n_users, n_items, valid=None)               # context-free models
    model.fit(train, n_users, n_items, n_contexts, valid=None)   # context-aware models
    model.score(users, contexts=None)       # (B, n_items) scores on model.device, higher is better
    model.recommend(users, k, exclude_seen=True, contexts=None)  # (B, k) items and scores, best first
    model.predict(users, items[, contexts]) # predicted ratings, on models that predict them
    model.history_, model.n_parameters(), model.refit(train_and_valid)

Subclasses implement ``_fit`` and ``_score``; this base checks ids at the boundary (a clear ``ValueError``,
never a device-side assert), records the seen items and the fit's :class:`~recsys_tutorial.training.History`,
excludes seen items and takes the top K. Every concrete subclass is registered in
:attr:`Recommender.registry`, which the contract test runs over, so no model can skip it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from ..config import merge_config
from ..evaluation import evaluate_ranking
from ..ids import check_ids
from ..ranking import batch_rows, top_k_batch
from ..splits import seen_items
from ..training import History
from ..utils import get_device

__all__ = ["Recommender", "NoConfig", "as_index"]


@dataclasses.dataclass(frozen=True)
class NoConfig:
    """The configuration of a model with no hyperparameters."""


def as_index(values, device=None) -> torch.Tensor:
    """Ids as a 1-D long tensor (copied, so read-only pandas/NumPy buffers are safe)."""
    if isinstance(values, torch.Tensor):
        return values.to(device=device, dtype=torch.long).reshape(-1)
    return torch.tensor(np.asarray(values), dtype=torch.long, device=device).reshape(-1)


class Recommender:
    """Base class of every recommender; see the module docstring for the contract.

    Class attributes a subclass sets: ``Config`` (its frozen dataclass), ``context_aware`` (its ``fit``
    takes ``n_contexts`` and its scores may depend on a context), ``predicts_ratings`` (it has ``predict``),
    ``epochs_field`` (the config field :meth:`refit` sets to the best epoch, for models that stop early on
    validation) and, for context-aware models, ``without_context``: what ``score(users)`` does when no
    context is given.
    """

    Config: ClassVar[type] = NoConfig
    context_aware: ClassVar[bool] = False
    predicts_ratings: ClassVar[bool] = False
    epochs_field: ClassVar[str | None] = None
    without_context: ClassVar[str] = ""
    registry: ClassVar[dict[str, type[Recommender]]] = {}

    n_contexts: int | None = None

    def __init_subclass__(cls, abstract: bool = False, **kwargs):
        super().__init_subclass__(**kwargs)
        if not abstract and not cls.__name__.startswith("_"):
            Recommender.registry[cls.__name__] = cls

    def __init__(self, config=None, *, device: torch.device | str | None = None, progress: bool = True, **overrides):
        self.config = merge_config(self.Config, config, **overrides)
        self.device = torch.device(device) if device is not None else get_device()
        self.progress = progress

    def __repr__(self) -> str:
        fitted = f", fitted on {self.n_users} users x {self.n_items} items" if hasattr(self, "history_") else ""
        return f"{type(self).__name__}({self.config}{fitted})"

    # --- fitting --------------------------------------------------------------------------------------------

    def fit(self, train: pd.DataFrame, n_users: int, n_items: int, valid: pd.DataFrame | None = None):
        """Fit on ``train`` (encoded ``user``, ``item`` columns); ``valid`` drives early stopping where used."""
        return self._fit_checked(train, n_users, n_items, None, valid)

    def _fit_checked(self, train, n_users, n_items, n_contexts, valid):
        """Check the sizes and ids, record the seen items, time ``_fit`` and keep its history."""
        if n_users < 1 or n_items < 1:
            raise ValueError(f"n_users and n_items must be positive, got {n_users} and {n_items}")
        self.n_users, self.n_items, self.n_contexts = int(n_users), int(n_items), n_contexts
        for frame, name in ((train, "train"), (valid, "valid")):
            if frame is not None:
                self._check_frame(frame, name)
        if len(train) == 0:
            raise ValueError("train is empty: there is nothing to fit")
        self.set_seen(train)
        start = time.perf_counter()
        self.history_: History = History()  # marks the model usable, so fits can score validation data as they go
        try:
            history = self._fit(train, None if valid is None or len(valid) == 0 else valid)
        except BaseException:
            del self.history_  # a failed fit leaves no half-fitted model behind that looks fitted
            raise
        history.seconds = time.perf_counter() - start
        self.history_ = history
        return self

    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> History:
        raise NotImplementedError

    def _check_frame(self, frame: pd.DataFrame, name: str) -> None:
        missing = [c for c in ("user", "item") if c not in frame]
        if missing:
            raise ValueError(
                f"{name} lacks column(s) {missing}: encode raw ids first with recsys_tutorial.splits.encode_ids"
            )
        check_ids(frame["user"].to_numpy(), self.n_users, "user", f"Pass n_users larger than the ids in {name}.")
        check_ids(frame["item"].to_numpy(), self.n_items, "item", f"Pass n_items larger than the ids in {name}.")

    def set_seen(self, interactions: pd.DataFrame):
        """Use these interactions' items as each user's seen items (excluded by :meth:`recommend`)."""
        self.seen_ = seen_items(interactions, self.n_users, self.n_items)
        return self

    def refit(self, train: pd.DataFrame):
        """A fresh model of this class and config fitted on ``train`` (e.g. train + validation), no validation.

        Models that stop early (``epochs_field``) train for the number of epochs that was best on validation in
        this fit, ``history_.best_epoch + 1``; the others use their configured sweeps. This is how a model is
        given the validation interactions too before the test ranking, without choosing anything on test data.
        """
        self._check_fitted()
        overrides = self._refit_overrides()
        model = type(self)(self.config, device=self.device, progress=self.progress, **self._init_kwargs(), **overrides)
        sizes = (self.n_users, self.n_items) + ((self.n_contexts,) if self.context_aware else ())
        return model.fit(train, *sizes)

    def _refit_overrides(self) -> dict:
        """Config fields :meth:`refit` changes: the epoch count found on validation."""
        return {} if self.epochs_field is None else {self.epochs_field: self.history_.best_epoch + 1}

    def _init_kwargs(self) -> dict:
        """Constructor arguments besides the config that :meth:`refit` passes on (e.g. an initialisation)."""
        return {}

    def _ndcg_validator(self, valid: pd.DataFrame | None):
        """What early stopping reads: ``valid``'s NDCG@10 under full ranking, seen items excluded (None: no valid).

        The context column is passed to models that use context, so each validation item is ranked for the time
        of day it happened at.
        """
        if valid is None:
            return None
        context = getattr(self.config, "context", None) if self.uses_context else None
        return lambda: evaluate_ranking(self, valid, self.seen_, context=context)["NDCG@10"]

    def _check_fitted(self) -> None:
        if not hasattr(self, "history_"):
            raise ValueError(f"{type(self).__name__} is not fitted yet: call fit(train, n_users, n_items) first")

    # --- scoring --------------------------------------------------------------------------------------------

    @property
    def uses_context(self) -> bool:
        """Whether scores depend on a context (a context-aware model fitted with more than one context)."""
        return self.context_aware and (self.n_contexts or 0) > 1

    def _users(self, users) -> torch.Tensor:
        self._check_fitted()
        users = as_index(users, self.device)
        check_ids(users, self.n_users, "user")
        return users

    def _contexts(self, contexts, users: torch.Tensor) -> torch.Tensor | None:
        if contexts is None:
            return None
        if not self.uses_context:
            raise ValueError(
                f"{type(self).__name__} does not use context: call score(users) without it "
                "(evaluate_ranking and top_k leave the context out for such models)"
            )
        contexts = as_index(contexts, self.device)
        check_ids(contexts, self.n_contexts, "context")
        if contexts.numel() == 1:
            contexts = contexts.expand_as(users)
        if contexts.shape != users.shape:
            raise ValueError(f"got {users.numel()} users but {contexts.numel()} contexts: pass one per user, or one")
        return contexts

    def score(self, users, contexts=None) -> torch.Tensor:
        """Scores of every item for each user (and context), shape (B, n_items), on ``self.device``."""
        users = self._users(users)
        contexts = self._contexts(contexts, users)
        with torch.no_grad():
            return self._score(users, contexts)

    def _score(self, users: torch.Tensor, contexts: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def recommend(self, users, k: int = 10, exclude_seen: bool = True, contexts=None):
        """Top-``k`` item indices and their scores for each user, each (B, k), best first.

        Users are scored in batches of :func:`~recsys_tutorial.ranking.batch_rows` (n_items), so that no
        score matrix exceeds the memory budget however many users are asked for.
        """
        self._check_fitted()
        if not 1 <= k <= self.n_items:
            raise ValueError(f"k must lie in 1..{self.n_items}, got {k}")
        users = as_index(users, "cpu")  # the seen-item lookup runs on the CPU, wherever the scores live
        step, exclude = batch_rows(self.n_items), self.seen_or_none(exclude_seen)
        if len(users) <= step:
            return top_k_batch(self.score(users, contexts), users.numpy(), k, exclude)
        contexts = self._contexts(contexts, users)  # checked, one per user
        parts = [
            top_k_batch(self.score(u, None if contexts is None else contexts[lo : lo + step]), u.numpy(), k, exclude)
            for lo, u in zip(range(0, len(users), step), users.split(step), strict=True)
        ]
        return torch.cat([items for items, _ in parts]), torch.cat([scores for _, scores in parts])  # (B, k) each

    def seen_or_none(self, exclude_seen: bool):
        """The seen items to exclude from rankings (``None`` when ``exclude_seen`` is False)."""
        if not exclude_seen:
            return None
        self._check_fitted()
        return self.seen_

    def _pairs(self, users, items) -> tuple[torch.Tensor, torch.Tensor]:
        """(user, item) index tensors on the model's device, range-checked, one item per user."""
        users = self._users(users)
        items = as_index(items, self.device)
        check_ids(items, self.n_items, "item")
        if users.shape != items.shape:
            raise ValueError(f"got {users.numel()} users but {items.numel()} items: pass one item per user")
        return users, items

    # --- size -----------------------------------------------------------------------------------------------

    def n_parameters(self) -> int:
        """Numbers learned from data (trainable weights of ``net_``, else the fitted tensors)."""
        self._check_fitted()
        if hasattr(self, "net_"):
            return sum(p.numel() for p in self.net_.parameters() if p.requires_grad)
        return sum(t.numel() for t in self._learned())

    def _learned(self) -> list[torch.Tensor]:
        """The fitted tensors of a model without a network (factors, biases, counts)."""
        raise NotImplementedError
