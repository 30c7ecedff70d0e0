r"""Context-aware CP as an embedding model, trained on observed entries only.

The score of user :math:`u`, item :math:`i` in context :math:`c` is one entry of a rank-:math:`R` CP tensor,

.. math:: \hat x_{uic} = \mu + b_u + b_i + \sum_{k=1}^{R} U_{uk}\, V_{ik}\, C_{ck},

learnt by minibatch gradient descent on the interactions we have, never on a dense tensor full of
zeros. With ``loss="mse"`` it predicts ratings; with ``loss="bce"`` it scores implicit clicks against
sampled negatives. Context factors start at 1, where the model *is* matrix factorisation
(:math:`\sum_k U_{uk} V_{ik}`), and are regularised towards 1, so context has to earn its keep.
With a single context the model is exactly MF.

:class:`ContextFactorModel` holds what CP and Tucker (:mod:`.tucker`) share: biases, the factor penalty,
the training loop and the :class:`~recsys_tutorial.models.base.Recommender` contract; each model's network
defines ``query(users, contexts)``, the vector a (user, context) pair is matched against item factors with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..ids import check_ids
from ..training import GradientSteps, History, minibatches, run_epochs, sample_negatives
from .base import Recommender, as_index

__all__ = ["TensorModelConfig", "ContextFactorModel", "CPModel", "PLANTED_CLICKS", "CLICKS_ML100K"]


@dataclass(frozen=True)
class TensorModelConfig:
    """Training knobs shared by :class:`CPModel` and :class:`~.tucker.TuckerModel`."""

    rank: int = 16
    loss: str = "mse"  # "mse": explicit ratings; "bce": implicit clicks with sampled negatives
    epochs: int = 40
    batch_size: int = 1024
    lr: float = 5e-3  # Adam
    reg: float = 0.1  # L2 on the factor rows in each batch (context rows: on their distance from 1), as BiasedMF
    reg_bias: float = 0.01  # biases need far less shrinkage than factors
    n_negatives: int = 4  # negatives per positive click (bce only)
    biases: bool = True
    patience: int = 3  # epochs without validation improvement before stopping
    init_std: float = 0.01  # small start: the model begins as the bias baseline
    context: str = "context_id"  # the column of integer context ids in the frames passed to fit
    seed: int = 0

    def __post_init__(self):
        if self.loss not in ("mse", "bce"):
            raise ValueError(f"loss must be 'mse' (ratings) or 'bce' (implicit clicks), got {self.loss!r}")
        if self.rank < 1:
            raise ValueError(f"rank must be at least 1, got {self.rank}")


# Implicit clicks (BCE, sampled negatives), the configurations notebooks 02, 03 and 05 and the serving pipeline use.
# A small init (0.1) with a large step suits the planted clicks; ML-100K's larger catalogue takes a smaller step
# and stops after 2 epochs without a better validation NDCG@10.
PLANTED_CLICKS = TensorModelConfig(rank=8, loss="bce", epochs=30, lr=0.02, reg=0.01, batch_size=2048, init_std=0.1)
CLICKS_ML100K = TensorModelConfig(
    rank=32, loss="bce", epochs=20, lr=0.01, reg=0.01, batch_size=4096, patience=2, init_std=0.1
)


class _CPNet(nn.Module):
    """Factors U (n_users, R), V (n_items, R), C (n_contexts, R) and biases."""

    def __init__(self, n_users, n_items, n_contexts, cfg: TensorModelConfig, generator: torch.Generator):
        super().__init__()
        r, std = cfg.rank, cfg.init_std
        self.U = nn.Parameter(torch.randn(n_users, r, generator=generator) * std)
        self.V = nn.Parameter(torch.randn(n_items, r, generator=generator) * std)
        self.C = nn.Parameter(1 + 0.01 * torch.randn(n_contexts, r, generator=generator))  # starts as MF
        self.b_u, self.b_i = nn.Parameter(torch.zeros(n_users)), nn.Parameter(torch.zeros(n_items))
        self.mu = nn.Parameter(torch.zeros(()))

    def query(self, users, contexts) -> torch.Tensor:
        return self.U[users] * self.C[contexts]  # (B, R): sum_k U_uk C_ck V_ik = <query, V_i>


class ContextFactorModel(Recommender, abstract=True):
    """Base of the embedding tensor models: training, scoring and the contract; see :class:`CPModel`.

    ``fit(train, n_users, n_items, n_contexts=1, valid=None)``: ``n_contexts=1`` ignores context (the
    model is then matrix factorisation). Subclasses set ``_net_class``, a module with factors ``U``, ``V``,
    ``C``, biases ``b_u``, ``b_i``, ``mu`` and a ``query(users, contexts)`` method.
    """

    Config = TensorModelConfig
    context_aware = True
    epochs_field = "epochs"
    without_context = "averages the (user, context) query over all contexts: a marginal over the times of day"
    _net_class: type[nn.Module] = _CPNet

    def fit(self, train: pd.DataFrame, n_users: int, n_items: int, n_contexts: int = 1, valid=None):
        """Train on the observed rows of ``train`` (``user, item, <config.context>[, rating]``).

        With ``valid``, training stops early on validation RMSE (mse) or NDCG@10 (bce, full ranking).
        """
        for frame, name in ((train, "train"), (valid, "valid")):
            if frame is not None and n_contexts > 1:
                if self.config.context not in frame:
                    raise ValueError(
                        f"{name} has no {self.config.context!r} column: add it (recsys_tutorial.data.add_context), "
                        "set the config's context to another column, or fit with n_contexts=1"
                    )
                check_ids(frame[self.config.context].to_numpy(), n_contexts, "context", "Pass a larger n_contexts.")
        return self._fit_checked(train, n_users, n_items, int(n_contexts), valid)

    def _make_net(self, generator):
        return self._net_class(self.n_users, self.n_items, self.n_contexts, self.config, generator)

    def _columns(self, df: pd.DataFrame) -> list[torch.Tensor]:
        """The (user, item, context) index tensors of a frame on the device; context 0 for a single context."""
        contexts = df[self.config.context].to_numpy() if self.n_contexts > 1 else np.zeros(len(df), dtype=np.int64)
        return [as_index(c, self.device) for c in (df["user"].to_numpy(), df["item"].to_numpy(), contexts)]

    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> History:
        cfg = self.config
        generator = torch.Generator().manual_seed(cfg.seed)
        self.net_ = self._make_net(generator).to(self.device)
        users, items, contexts = self._columns(train)
        ratings = None
        if cfg.loss == "mse":
            ratings = torch.as_tensor(train["rating"].to_numpy(np.float32, copy=True), device=self.device)
            with torch.no_grad():
                self.net_.mu.fill_(float(ratings.mean()))
        if not cfg.biases:
            for bias in (self.net_.b_u, self.net_.b_i, self.net_.mu):
                bias.requires_grad_(False)
        optimizer = torch.optim.Adam([p for p in self.net_.parameters() if p.requires_grad], lr=cfg.lr)
        step = self._mse_step if ratings is not None else self._bce_step
        steps = GradientSteps(self.net_, optimizer)  # plain steps, or this rank's share under torch.distributed

        def run_epoch(epoch: int) -> float:
            self.net_.train()
            losses = []
            for idx in minibatches(len(users), cfg.batch_size, generator):
                idx, draws = steps.shard(idx, generator)  # this rank's rows (all of them on one process)
                idx = idx.to(self.device)
                r = None if ratings is None else ratings[idx]
                losses.append(steps.step(step, users[idx], items[idx], contexts[idx], r, draws))
            return float(np.mean(losses))

        validate = None if valid is None else self._validator(valid)
        history = run_epochs(
            run_epoch, cfg.epochs, validate=validate, module=self.net_, patience=cfg.patience,
            higher_is_better=cfg.loss == "bce", desc=f"{type(self).__name__} rank {cfg.rank}", progress=self.progress,
            metric="NDCG@10" if cfg.loss == "bce" else "RMSE",
        )  # fmt: skip
        self.net_.eval()
        return history

    def penalty(self, users, items, contexts) -> torch.Tensor:
        """L2 on the factor rows a batch touches; context rows on their distance from 1 (where the model is MF)."""
        net = self.net_
        return (
            net.U[users].pow(2).sum(-1).mean()
            + net.V[items].pow(2).sum(-1).mean()
            + (net.C[contexts] - 1).pow(2).sum(-1).mean()
        )

    def _mse_step(self, u, i, c, r, generator):
        loss = torch.nn.functional.mse_loss(self._triples(u, i, c), r)
        bias_penalty = (self.net_.b_u[u].pow(2) + self.net_.b_i[i].pow(2)).mean()
        return loss + self.config.reg * self.penalty(u, i, c) + self.config.reg_bias * bias_penalty

    def _bce_step(self, u, i, c, r, generator):
        neg = sample_negatives(self.n_items, (len(u), self.config.n_negatives), generator, self.device)  # (B, K)
        pos_logit, neg_logit = self._triples(u, i, c), self._triples(u, neg, c)  # (B,), (B, K)
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        loss = bce(pos_logit, torch.ones_like(pos_logit)) + bce(neg_logit, torch.zeros_like(neg_logit))
        return loss + self.config.reg * self.penalty(u, torch.cat([i[:, None], neg], 1), c)

    def _validator(self, valid: pd.DataFrame):
        if self.config.loss == "mse":
            u, i, c = self._columns(valid)
            r = torch.as_tensor(valid["rating"].to_numpy(np.float32, copy=True), device=self.device)

            def rmse() -> float:
                with torch.no_grad():
                    return float((self._triples(u, i, c) - r).pow(2).mean().sqrt())

            return rmse
        return self._ndcg_validator(valid)

    def _triples(self, users, items, contexts) -> torch.Tensor:
        """Scores of (user, item, context) triples; ``items`` may be (B,) or (B, K) with users/contexts (B,)."""
        net = self.net_
        q = net.query(users, contexts)  # (B, R_item)
        bias = net.mu + net.b_u[users]  # (B,)
        if items.dim() == 2:
            q, bias = q[:, None, :], bias[:, None]  # (B, 1, R), (B, 1)
        return (q * net.V[items]).sum(-1) + net.b_i[items] + bias

    def predict(self, users, items, contexts=None) -> torch.Tensor:
        """Predicted ratings (``loss="mse"``) or logits (``"bce"``) of (user, item[, context]) rows, shape (P,).

        Without contexts the query is averaged over contexts, as in :meth:`score`.
        """
        users, items = self._pairs(users, items)
        contexts = self._contexts(contexts, users)
        with torch.no_grad():
            if contexts is not None:
                return self._triples(users, items, contexts)
            q = self._mean_query(users)  # (P, R)
            return (q * self.net_.V[items]).sum(-1) + self.net_.b_i[items] + self.net_.mu + self.net_.b_u[users]

    def _mean_query(self, users: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.net_.query(users, torch.full_like(users, c)) for c in range(self.n_contexts)]).mean(0)

    def _score(self, users, contexts):
        net = self.net_
        q = self._mean_query(users) if contexts is None else net.query(users, contexts)  # (B, R)
        return q @ net.V.T + net.b_i[None, :] + (net.mu + net.b_u[users])[:, None]  # (B, n_items)


class CPModel(ContextFactorModel):
    r"""Context-aware CP recommender :math:`\hat x_{uic} = \mu + b_u + b_i + \sum_k U_{uk} V_{ik} C_{ck}`.

    ``score(users, contexts)`` ranks every item for each (user, context) pair; without contexts it
    averages the query over contexts. :meth:`cp_tensor` returns the learnt factors as a TensorLy ``CPTensor``.

    References
    ----------
    .. [1] A. Karatzoglou et al., "Multiverse Recommendation: N-dimensional Tensor Factorization for
       Context-aware Collaborative Filtering", RecSys 2010.
    .. [2] S. Rendle and L. Schmidt-Thieme, "Pairwise Interaction Tensor Factorization for Personalized
       Tag Recommendation", WSDM 2010.
    """

    def cp_tensor(self):
        """``(weights, [U, V, C])``: pass to ``tl.cp_to_tensor`` for the (bias-free) interaction tensor."""
        net = self.net_
        factors = [net.U.detach(), net.V.detach(), net.C.detach()]
        return torch.ones(self.config.rank, device=self.device), factors
