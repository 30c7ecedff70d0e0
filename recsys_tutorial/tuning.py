r"""Nested model selection for rating prediction on ml-100k's five canonical folds.

ml-100k ships five 80/20 splits ``u1..u5`` whose test files are disjoint, so every rating of ``u2.test`` ..
``u5.test`` lies inside ``u1.base``: hyperparameters tuned on a share of ``u1.base`` and then scored on
``u2.test`` were tuned on that fold's own test ratings. The protocol here keeps each fold sealed:

1. For fold :math:`k`, carve a validation share from ``uk.base`` only
   (:func:`recsys_tutorial.splits.random_holdout`); fit every candidate configuration of every model family on
   the rest and keep, per family, the configuration with the lowest validation RMSE
   (:func:`select_on_validation`).
2. Refit each family's choice on all of ``uk.base`` and score it once on ``uk.test`` (:func:`fit_and_score`).
3. Name the fold's best family by validation RMSE, never by test RMSE; the headline is the five-fold mean of
   those per-fold choices (:func:`summarize`), an estimate of the whole procedure "tune, pick, refit" [1]_.

A candidate is a factory returning a fresh, unfitted model with ``fit(train, n_users=..., n_items=...)`` and
``predict(users, items)``; :func:`grid` builds one per combination of hyperparameters. Peer results written by
``benchmarks/surprise_folds.py`` are read back with :func:`read_peer_results`.

References
----------
.. [1] G. C. Cawley and N. L. C. Talbot, "On Over-fitting in Model Selection and Subsequent Selection Bias in
   Performance Evaluation", JMLR 11, 2010.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .metrics import mae, rmse
from .splits import Split, canonical_fold, random_holdout

__all__ = [
    "Candidate", "Selection", "grid", "fit_and_score", "select_on_validation", "nested_fold", "nested_folds",
    "chosen_rows", "summarize", "read_peer_results", "SURPRISE_RESULTS",
]  # fmt: skip

RATING_SCALE = (1.0, 5.0)  # MovieLens stars: predictions are clipped to it before scoring
# Surprise on u1..u5 under this protocol, written by benchmarks/surprise_folds.py (its docstring has the command)
SURPRISE_RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "surprise_folds_2core_cpu.jsonl"


@dataclass(frozen=True)
class Candidate:
    """One configuration to try: its hyperparameters (reported) and a factory building a fresh model from them."""

    params: Mapping[str, Any]
    make: Callable[[], Any] = field(repr=False)


@dataclass(frozen=True)
class Selection:
    """The candidate with the lowest validation RMSE, and every candidate's validation RMSE in order."""

    candidate: Candidate
    valid_rmse: float
    valid_rmses: tuple[float, ...]
    seconds: float  # wall time of the whole search: every candidate's fit and validation scoring


def grid(make: Callable[..., Any], **axes: Sequence) -> list[Candidate]:
    """Every combination of the values in ``axes``, each a :class:`Candidate` calling ``make(**params)``.

    >>> [c.params for c in grid(dict, rank=[8, 16], reg=[0.1])]
    [{'rank': 8, 'reg': 0.1}, {'rank': 16, 'reg': 0.1}]

    With no axes the grid holds one candidate, ``make()`` with empty ``params`` (a family with nothing to tune).
    """
    empty = [name for name, values in axes.items() if len(values) == 0]
    if empty:
        raise ValueError(f"axis {empty[0]!r} has no values: give at least one value per hyperparameter")
    names = list(axes)
    combos = [dict(zip(names, values, strict=True)) for values in itertools.product(*axes.values())]
    # bind each combination now: a bare lambda in the loop would see only the last one
    return [Candidate(params, lambda params=params: make(**params)) for params in combos]


def _scores(model, frame: pd.DataFrame) -> tuple[float, float]:
    """RMSE and MAE of ``model`` on ``frame`` (encoded ``user``, ``item``, ``rating``), clipped to 1..5 stars."""
    pred = model.predict(frame["user"].to_numpy(), frame["item"].to_numpy())
    truth = frame["rating"].to_numpy()
    return rmse(truth, pred, clip=RATING_SCALE), mae(truth, pred, clip=RATING_SCALE)


def fit_and_score(make: Callable[[], Any], train: pd.DataFrame, test: pd.DataFrame, n_users: int, n_items: int) -> dict:
    """Fit a fresh ``make()`` on ``train`` and score it once on ``test``.

    Returns
    -------
    dict with ``rmse``, ``mae`` (predictions clipped to 1..5) and ``fit_seconds`` (the fit alone).
    """
    model = make()
    start = time.perf_counter()
    model.fit(train, n_users=n_users, n_items=n_items)
    seconds = time.perf_counter() - start
    error, absolute = _scores(model, test)
    return {"rmse": error, "mae": absolute, "fit_seconds": seconds}


def select_on_validation(
    candidates: Sequence[Candidate], base: pd.DataFrame, n_users: int, n_items: int, valid_fraction: float = 0.1,
    seed: int = 0,
) -> Selection:  # fmt: skip
    r"""Choose among ``candidates`` on a validation share carved from ``base`` alone.

    ``base`` is split once by :func:`~recsys_tutorial.splits.random_holdout` (``test_fraction=valid_fraction``,
    ``seed``); each candidate is fitted on the larger part and scored on the validation share. Only ``base`` is
    read, so nothing outside it (in particular no test rating) can influence the choice.

    Parameters
    ----------
    candidates : sequence of Candidate
        Configurations of one model family (see :func:`grid`).
    base : DataFrame
        The fold's training ratings (encoded ``user``, ``item``, ``rating``).
    valid_fraction : float
        Share of ``base`` held out for validation.
    seed : int
        Seed of the carve: the same seed carves the same rows, so other libraries can be tuned on them.

    Returns
    -------
    Selection
        The candidate with the lowest validation RMSE :math:`\sqrt{\tfrac1{|V|}\sum_{(u,i)\in V}
        (r_{ui} - \mathrm{clip}(\hat r_{ui}))^2}` (the first one on ties).
    """
    if not candidates:
        raise ValueError("no candidates to choose from: give each family at least one (see tuning.grid)")
    start = time.perf_counter()
    carved = random_holdout(base, test_fraction=valid_fraction, seed=seed)
    errors = []
    for candidate in candidates:
        model = candidate.make()
        model.fit(carved.train, n_users=n_users, n_items=n_items)
        errors.append(_scores(model, carved.test)[0])
    best = int(np.argmin(errors))  # argmin keeps the first of equal scores: the order of the grid breaks ties
    return Selection(candidates[best], errors[best], tuple(errors), time.perf_counter() - start)


def nested_fold(
    families: Mapping[str, Sequence[Candidate]], split: Split, valid_fraction: float = 0.1, seed: int = 0
) -> list[dict]:
    """One fold of the nested protocol: select per family on ``split.train``, refit, score once on ``split.test``.

    Every family is selected before any test rating is read. Returns one row per family (see
    :func:`nested_folds` for the columns, less ``fold``); ``chosen`` marks the family with the lowest
    validation RMSE (the first family on ties).
    """
    if not families:
        raise ValueError("no model families given: pass {name: [Candidate, ...]}")
    selections = {
        name: select_on_validation(candidates, split.train, split.n_users, split.n_items, valid_fraction, seed)
        for name, candidates in families.items()
    }  # fmt: skip
    choice = min(selections, key=lambda name: selections[name].valid_rmse)  # validation only, never test
    rows = []
    for name, selection in selections.items():
        scored = fit_and_score(selection.candidate.make, split.train, split.test, split.n_users, split.n_items)
        rows.append({
            "family": name, "params": dict(selection.candidate.params), "valid_rmse": selection.valid_rmse,
            "test_rmse": scored["rmse"], "test_mae": scored["mae"], "fit_seconds": scored["fit_seconds"],
            "search_seconds": selection.seconds, "n_candidates": len(selection.valid_rmses), "chosen": name == choice,
        })  # fmt: skip
    return rows


def nested_folds(
    families: Mapping[str, Sequence[Candidate]], folds: Iterable[int] | Mapping[str, Split] = (1, 2, 3, 4, 5), *,
    valid_fraction: float = 0.1, seed: int = 0, root=None, progress: bool = False,
) -> pd.DataFrame:  # fmt: skip
    """The nested protocol over several folds: one row per fold and family.

    Parameters
    ----------
    families : mapping of name to candidates
        E.g. ``{"ALS": grid(lambda **p: ALSMF(ALS_ML100K, **p), reg=[0.1, 0.15])}``.
    folds : ints or mapping of name to Split
        Canonical fold numbers (loaded with :func:`~recsys_tutorial.splits.canonical_fold` from ``root``, named
        ``u1``..``u5``), or ready splits by name (synthetic folds in tests).
    valid_fraction, seed : float, int
        The validation carve of every fold (see :func:`select_on_validation`).
    progress : bool
        Show a progress bar over folds.

    Returns
    -------
    DataFrame
        Columns ``fold``, ``family``, ``params`` (the chosen hyperparameters), ``valid_rmse``, ``test_rmse``,
        ``test_mae``, ``fit_seconds`` (the refit on the whole base), ``search_seconds`` (all candidates' fits
        and validation scoring), ``n_candidates`` and ``chosen`` (the fold's validation choice).
    """
    splits = folds if isinstance(folds, Mapping) else {f"u{k}": k for k in folds}
    if not splits:
        raise ValueError("no folds given: pass fold numbers (1..5) or a mapping of name to Split")
    rows = []
    names = list(splits)
    if progress:
        from tqdm.auto import tqdm

        names = tqdm(names, desc="nested folds")
    for name in names:
        split = splits[name] if isinstance(splits[name], Split) else canonical_fold(splits[name], root)
        rows += [{"fold": name, **row} for row in nested_fold(families, split, valid_fraction, seed)]
    return pd.DataFrame(rows)


def chosen_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The validation choice of each fold: one row per fold of a :func:`nested_folds` table."""
    per_fold = table.groupby("fold", sort=False)["chosen"].sum()
    if (per_fold != 1).any():
        raise ValueError(f"each fold needs exactly one chosen family, got {per_fold.to_dict()}")
    return table[table["chosen"]].reset_index(drop=True)


def summarize(table: pd.DataFrame, choice: str = "chosen on validation") -> pd.DataFrame:
    """Five-fold means per family, and a last row ``choice`` for the per-fold validation choices.

    The last row is the headline: the test RMSE of the procedure that picks a family on each fold's
    validation share. It is not the family with the lowest mean test RMSE (that would select on the test
    folds). Standard deviations are across folds (``ddof=1``).
    """
    columns = {"test_rmse": ["mean", "std"], "test_mae": ["mean"], "fit_seconds": ["mean"], "chosen": ["sum"]}
    per_family = table.groupby("family", sort=False).agg(columns)
    picked = chosen_rows(table).assign(family=choice).groupby("family").agg(columns)
    out = pd.concat([per_family, picked])
    out.columns = ["RMSE mean", "RMSE std", "MAE mean", "fit s mean", "folds chosen"]
    return out


def read_peer_results(path: str | Path = SURPRISE_RESULTS, per_fold: bool = False) -> pd.DataFrame:
    """Five-fold means of another library's models from a JSON-lines file (one line per fold and model).

    By default the recorded scikit-surprise results (``SURPRISE_RESULTS``). Each line needs ``model``,
    ``fold``, ``rmse``, ``mae`` and ``fit_seconds`` (as written by ``benchmarks/surprise_folds.py``). Every
    model must cover the same folds once each (a partial run must not pass for a five-fold mean), else a
    ``ValueError``.

    Returns
    -------
    DataFrame
        One row per model, in file order, with ``RMSE mean``, ``RMSE std`` (``ddof=1``), ``MAE mean``,
        ``fit s mean`` and ``folds``; with ``per_fold=True``, the test RMSE with one row per fold and one
        column per model instead (for paired, per-fold comparisons).
    """
    frame = _fold_lines(Path(path))
    if per_fold:
        return frame.pivot(index="fold", columns="model", values="rmse")[list(frame["model"].unique())]
    return frame.groupby("model", sort=False).agg(
        **{"RMSE mean": ("rmse", "mean"), "RMSE std": ("rmse", "std"), "MAE mean": ("mae", "mean"),
           "fit s mean": ("fit_seconds", "mean"), "folds": ("fold", "nunique")}
    )  # fmt: skip


def _fold_lines(path: Path) -> pd.DataFrame:
    """The lines of a fold benchmark's JSON-lines file, checked: the needed fields, each model on the same folds."""
    if not path.is_file():
        raise ValueError(f"no peer results at {path}: run the benchmark named in its docstring to create it")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path} holds no results: rerun the benchmark that writes it")
    frame = pd.DataFrame(lines)
    missing = {"model", "fold", "rmse", "mae", "fit_seconds"} - set(frame)
    if missing:
        raise ValueError(f"{path} lacks the field(s) {sorted(missing)}: it was not written by a fold benchmark")
    folds = frame.groupby("model", sort=False)["fold"].agg(lambda f: tuple(sorted(f)))
    if folds.nunique() > 1 or frame.duplicated(["model", "fold"]).any():
        raise ValueError(f"{path}: models were run on different or repeated folds {folds.to_dict()}")
    return frame
