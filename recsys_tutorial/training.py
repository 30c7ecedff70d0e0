"""The training loop every PyTorch model in the series shares.

One epoch is a callable that returns its mean loss; validation is a callable that returns one number.
:func:`run_epochs` runs epochs behind a single progress bar (no wall of logs), keeps the history for the
learning-curve plots, stops early when validation stops improving, and restores the best weights.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

__all__ = ["History", "run_epochs", "minibatches", "sample_negatives"]


@dataclass
class History:
    """What a fit did: per-epoch (or per-sweep) training loss and validation metric, the best epoch, wall time.

    Every fitted recommender has one as ``history_``. ``best_epoch`` is 0-based: the weights kept are those
    after epoch ``best_epoch + 1``. A model fitted in one closed-form step has one entry.
    """

    train_loss: list[float] = field(default_factory=list)
    valid: list[float] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0
    metric: str = ""  # name of the validation metric, e.g. "NDCG@10" or "RMSE"
    higher_is_better: bool = True

    @property
    def epochs(self) -> int:
        """Epochs (or sweeps) run."""
        return len(self.train_loss)

    @property
    def best_valid(self) -> float:
        return self.valid[self.best_epoch] if self.valid else float("nan")

    def best_of(self) -> int:
        """Index of the best validation value (last epoch when there is no validation)."""
        if not self.valid:
            return len(self.train_loss) - 1
        pick = max if self.higher_is_better else min
        return self.valid.index(pick(self.valid))


def run_epochs(
    run_epoch: Callable[[int], float],
    epochs: int,
    validate: Callable[[], float] | None = None,
    module: torch.nn.Module | None = None,
    patience: int = 5,
    higher_is_better: bool = True,
    desc: str = "training",
    progress: bool = True,
    metric: str = "",
) -> History:
    """Run ``run_epoch(epoch)`` up to ``epochs`` times with validation-based early stopping.

    Parameters
    ----------
    run_epoch : callable
        Trains one epoch and returns its mean loss.
    validate : callable, optional
        Returns the validation metric (e.g. NDCG@10, or RMSE with ``higher_is_better=False``).
    module : nn.Module, optional
        If given, its best-scoring weights are restored at the end.
    patience : int
        Epochs without improvement before stopping.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    history = History(metric=metric, higher_is_better=higher_is_better)
    best, best_state, start = None, None, time.perf_counter()
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=True)
    for epoch in bar:
        history.train_loss.append(float(run_epoch(epoch)))
        postfix = {"loss": f"{history.train_loss[-1]:.4f}"}
        if validate is not None:
            score = float(validate())
            history.valid.append(score)
            postfix["valid"] = f"{score:.4f}"
            improved = best is None or (score > best if higher_is_better else score < best)
            if improved:
                best, history.best_epoch = score, epoch
                if module is not None:
                    best_state = copy.deepcopy(module.state_dict())
            elif epoch - history.best_epoch >= patience:
                bar.set_postfix(postfix)
                break
        bar.set_postfix(postfix)
    bar.close()
    if best_state is not None:
        module.load_state_dict(best_state)
    if validate is None:
        history.best_epoch = len(history.train_loss) - 1
    history.seconds = time.perf_counter() - start
    return history


def minibatches(n: int, batch_size: int, generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Shuffled index batches covering ``range(n)`` once (shuffled with ``generator``)."""
    order = torch.randperm(n, generator=generator)
    yield from order.split(batch_size)


def sample_negatives(
    n_items: int, shape: tuple[int, ...], generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """Uniform random item indices of ``shape`` as negatives.

    Sampling ignores whether the user has seen the item: with 1,682 items and ~100 interactions per
    user, about 6% of negatives are false, the usual approximation in BPR and SASRec training [1]_.

    References
    ----------
    .. [1] S. Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009.
    """
    return torch.randint(0, n_items, shape, generator=generator).to(device)
