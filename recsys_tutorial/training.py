"""The training loop every PyTorch model in the series shares.

One epoch is a callable that returns its mean loss; validation is a callable that returns one number.
:func:`run_epochs` runs epochs behind a single progress bar (no wall of logs), keeps the history for the
learning-curve plots, stops early when validation stops improving, and restores the best weights.

The same loop trains on several processes (``torchrun``, see :mod:`recsys_tutorial.distributed`): a
:class:`GradientSteps` takes each gradient step, on one process exactly as a plain PyTorch step, and as one
rank of a ``torch.distributed`` group with :class:`~torch.nn.parallel.DistributedDataParallel` on that rank's
slice of every global minibatch. :func:`run_epochs` then validates on rank 0 and broadcasts the metric, so
every rank takes the same early-stopping decision and restores the same best weights.
"""

from __future__ import annotations

import copy
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

__all__ = [
    "History", "run_epochs", "minibatches", "sample_negatives", "GradientSteps", "ShardDraws", "rank",
    "world_size", "comm_device", "agreed",
]  # fmt: skip


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
    epoch_seconds: list[float] = field(default_factory=list)  # each epoch's training time, validation excluded

    @property
    def epochs(self) -> int:
        """Epochs (or sweeps) run."""
        return len(self.train_loss)

    @property
    def best_valid(self) -> float:
        return self.valid[self.best_epoch] if self.valid else float("nan")


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

    Under ``torch.distributed`` every rank runs this loop: ``run_epoch`` returns the loss of the whole epoch
    (see :meth:`GradientSteps.step`), ``validate`` runs on rank 0 only and its value is broadcast
    (:func:`agreed`), so the history, the stopping epoch and the restored weights are the same on every rank.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    history = History(metric=metric, higher_is_better=higher_is_better)
    best, best_state, start = None, None, time.perf_counter()
    bar = tqdm(range(epochs), desc=desc, disable=not progress or rank() != 0, leave=True)  # one bar, on rank 0
    for epoch in bar:
        epoch_start = time.perf_counter()
        history.train_loss.append(float(run_epoch(epoch)))
        history.epoch_seconds.append(time.perf_counter() - epoch_start)
        postfix = {"loss": f"{history.train_loss[-1]:.4f}"}
        if validate is not None:
            score = agreed(validate)  # the same number on every rank, so every rank stops at the same epoch
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
    n_items: int, shape: tuple[int, ...], generator: torch.Generator | ShardDraws | None = None, device=None
) -> torch.Tensor:
    """Uniform random item indices of ``shape`` as negatives.

    Sampling ignores whether the user has seen the item: with 1,682 items and ~100 interactions per
    user, about 6% of negatives are false, the usual approximation in BPR and SASRec training [1]_.
    With a :class:`ShardDraws` (one rank's share of a global batch, from :meth:`GradientSteps.shard`) the
    negatives of the whole batch are drawn and this rank's rows kept: the rank gets exactly the negatives a
    single process would draw for those targets, and every rank's generator stays in step.

    References
    ----------
    .. [1] S. Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009.
    """
    if isinstance(generator, ShardDraws):
        return generator.negatives(n_items, tuple(shape)).to(device)
    return torch.randint(0, n_items, shape, generator=generator).to(device)


# --- one process or many: the distributed pieces of the loop ------------------------------------------------


def rank() -> int:
    """This process's rank in the ``torch.distributed`` group (0 when there is no group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Processes in the ``torch.distributed`` group (1 when there is no group: plain single-process training)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def comm_device() -> torch.device:
    """Where tensors for collectives live: this rank's GPU under NCCL, the CPU under gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def agreed(compute: Callable[[], float]) -> float:
    """``compute()`` on rank 0, broadcast to every rank (on one process: just ``float(compute())``).

    Decisions taken from the value (early stopping, the best epoch) are then identical on all ranks, whatever
    the floating-point differences between devices. If rank 0 fails, every rank raises instead of waiting.
    """
    if world_size() == 1:
        return float(compute())
    value, error = float("nan"), None
    if rank() == 0:
        try:
            value = float(compute())
        except Exception as err:  # re-raised below, after telling the other ranks not to wait for a value
            error = err
    message = torch.tensor([value, error is not None], dtype=torch.float64, device=comm_device())
    dist.broadcast(message, src=0)
    if error is not None:
        raise error
    if message[1]:
        raise RuntimeError("rank 0 failed to compute the value every rank waits for: see rank 0's error")
    return float(message[0])


@dataclass(frozen=True)
class ShardDraws:
    """One rank's share of a global batch's random draws (pass it where the loss expects a generator).

    The global batch has ``total`` targets; this rank holds targets ``[offset, offset + count)``.
    :func:`sample_negatives` draws for all ``total`` with ``generator`` and keeps this rank's rows, so the
    draws equal a single process's and the generator advances identically on every rank (the next
    minibatch order depends on it).
    """

    generator: torch.Generator
    offset: int
    count: int
    total: int

    def negatives(self, n_items: int, shape: tuple[int, ...]) -> torch.Tensor:
        """This rank's rows of the global batch's uniform negatives, ``shape[0] == count``."""
        if not shape or shape[0] != self.count:
            raise ValueError(
                f"negatives of shape {shape} under torch.distributed: draw one row per target of this rank's "
                f"shard ({self.count} targets, first dimension), so that the shard's rows of the global draw are kept"
            )
        return torch.randint(0, n_items, (self.total, *shape[1:]), generator=self.generator)[
            self.offset : self.offset + self.count
        ]


class _Closure(nn.Module):
    """A module whose forward is any loss computation on ``net``: what DDP wraps, so every loop can use it."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, loss_fn: Callable[..., torch.Tensor], *args) -> torch.Tensor:
        return loss_fn(*args)


class GradientSteps:
    r"""Gradient steps on minibatches: plain on one process, data-parallel under ``torch.distributed``.

    On one process (no process group), :meth:`shard` returns the batch and the generator unchanged and
    :meth:`step` is ``loss = loss_fn(*args); zero_grad(); backward(); step()``: the numbers of a plain loop.

    Under a process group of :math:`W` ranks, ``module`` is wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel` (which first copies rank 0's weights to every rank).
    Every rank draws the same global minibatch (the same seeded generator) and :meth:`shard` keeps rank
    :math:`r`'s contiguous slice, holding :math:`n_r` of the batch's :math:`N = \sum_r n_r` targets. The loss a
    rank computes is the mean over its targets, :math:`\ell_r = \frac{1}{n_r}\sum_{t \in r} \ell_t`; it is
    back-propagated as :math:`W \frac{n_r}{N} \ell_r`, so DDP's average over ranks is

    .. math:: \frac{1}{W} \sum_r W \frac{n_r}{N} \nabla \ell_r = \frac{1}{N} \sum_t \nabla \ell_t,

    the gradient of the global batch's mean loss: the single-process gradient. Adam then takes the same step
    on every rank. A batch with fewer rows than ranks runs whole on every rank, each weighted :math:`1/W`.

    Ranks other than 0 reseed PyTorch's global generator with ``seed + rank`` after the weights are copied,
    so that dropout draws different masks on different ranks' rows.

    References
    ----------
    .. [1] S. Li et al., "PyTorch Distributed: Experiences on Accelerating Data Parallel Training", VLDB 2020.
    """

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer):
        self.module, self.optimizer = module, optimizer
        self.world, self.rank = world_size(), rank()
        self._ddp = None
        if self.world > 1:
            self._ddp = DistributedDataParallel(_Closure(module))  # device_ids=None: the module's one device
            if self.rank:
                torch.manual_seed(torch.initial_seed() + self.rank)  # dropout: a different stream per rank
        self._share, self._draws, self._batch_crc = 1.0, None, 0

    def shard(
        self, batch: torch.Tensor, generator: torch.Generator, targets_per_row: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Generator | ShardDraws]:
        """This rank's rows of the global ``batch`` and what to sample its negatives with.

        ``targets_per_row[i]``: targets (terms of the mean loss) row ``i`` of the whole training set holds;
        one per row by default. On one process: ``(batch, generator)``.
        """
        if self._ddp is None:
            return batch, generator
        parts = torch.tensor_split(batch, self.world)  # contiguous slices, sizes differing by at most one
        counts = [len(p) if targets_per_row is None else int(targets_per_row[p].sum()) for p in parts]
        total = sum(counts)
        if min(len(p) for p in parts) == 0:  # fewer rows than ranks: every rank runs the whole batch
            mine, offset, count, self._share = batch, 0, total, 1.0 / self.world
        else:
            mine, offset, count = parts[self.rank], sum(counts[: self.rank]), counts[self.rank]
            self._share = count / total
        self._draws = ShardDraws(generator, offset, count, total)
        self._batch_crc = zlib.crc32(batch.numpy().tobytes())
        return mine, self._draws

    def step(self, loss_fn: Callable[..., torch.Tensor], *args) -> float:
        """One optimiser step on ``loss_fn(*args)`` (this rank's mean loss); returns the global batch's loss."""
        if self._ddp is None:
            loss = loss_fn(*args)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            return loss.item()
        loss = self._ddp(loss_fn, *args)  # through DDP's forward, so backward all-reduces the gradients
        self.optimizer.zero_grad()
        (loss * (self._share * self.world)).backward()
        self.optimizer.step()
        return self._global_loss(loss.detach() * self._share)

    def _global_loss(self, contribution: torch.Tensor) -> float:
        r"""Sum the ranks' shares of the loss; fail loudly if the ranks drew different batches or draws.

        Ranks stay equivalent to one process only while their generators agree (a loss that drew random
        numbers other than through :func:`sample_negatives` would desynchronise them silently). A
        fingerprint ``f`` of the batch and generator state rides along: all ranks agree iff
        :math:`W \sum f^2 = (\sum f)^2`, exact in float64 for 20-bit fingerprints.
        """
        state = self._draws.generator.get_state().numpy().tobytes()
        f = float(zlib.crc32(state, self._batch_crc) % 2**20)
        sums = torch.stack([contribution.double(), *contribution.new_tensor([f, f * f], dtype=torch.float64)])
        dist.all_reduce(sums)
        loss, f_sum, f2_sum = sums.tolist()
        if self.world * f2_sum != f_sum**2:
            raise RuntimeError(
                "ranks trained on different minibatches or random draws: draw every random number of a loss "
                "through recsys_tutorial.training.sample_negatives with the generator the loop passes"
            )
        return loss
