"""A deliberately broken model for the gate, a spy that records what it was fitted on, and a small log with text ids.

Shared by the pipeline tests (main environment) and the Airflow DAG runs (tests/airflow_dag_runs.py, run in
.venv-airflow). The classes' names start with "_" so the contract suite, which runs over every registered
recommender, leaves them out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recsys_tutorial.models.base import Recommender
from recsys_tutorial.serving import pipeline
from recsys_tutorial.training import History

RANDOM = "random-scores"  # the broken model's name in the pipeline's registry
SPY = "spy-popular"


class _RandomScores(Recommender):
    """Scores every item at random (seeded): a model whose training went wrong, which the gate must stop."""

    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> History:
        self.table_ = torch.rand(self.n_users, self.n_items, generator=torch.Generator().manual_seed(0))
        return History(best_epoch=0)

    def _score(self, users, contexts):
        return self.table_.to(self.device)[users]  # (B, n_items)

    def _learned(self):
        return [self.table_]


class _SpyPopular(Recommender):
    """Most-popular that remembers every frame it was fitted on (class-wide, in fit order)."""

    fitted_on: list[pd.DataFrame] = []

    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> History:
        type(self).fitted_on.append(train.copy())
        counts = np.bincount(train["item"].to_numpy(), minlength=self.n_items)
        self.popularity_ = torch.tensor(counts, dtype=torch.float32, device=self.device)
        return History(best_epoch=0)

    def _score(self, users, contexts):
        return self.popularity_.expand(len(users), -1)  # (B, n_items)

    def _learned(self):
        return [self.popularity_]


def register_test_models() -> None:
    """Put the broken and the spy models in the pipeline's registry (idempotent)."""
    pipeline.register_model(RANDOM, lambda: _RandomScores(progress=False), replace=True)
    pipeline.register_model(SPY, lambda: _SpyPopular(progress=False), replace=True)


def unregister_test_models() -> None:
    for name in (RANDOM, SPY):
        pipeline.MODELS.pop(name, None)


def write_text_id_log(path: Path, n_users: int = 12, n_items: int = 30, per_user: int = 8, seed: int = 0) -> Path:
    """A small click log with text ids ("u03", "sku-0007"), ISO timestamps and a semicolon separator."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        # Popular items (low ids) are likelier, so popularity ranks above random on the held-out items.
        items = rng.choice(n_items, size=per_user, replace=False, p=_zipf(n_items))
        start = pd.Timestamp("2024-03-01T06:00:00Z") + pd.Timedelta(hours=int(u))
        for j, item in enumerate(items):
            rows.append((f"u{u:02d}", f"sku-{item:04d}", (start + pd.Timedelta(minutes=37 * j)).isoformat()))
    frame = pd.DataFrame(rows, columns=["customer", "product", "event_time"])
    frame.to_csv(path, sep=";", index=False)
    return path


def _zipf(n: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1)
    return weights / weights.sum()
