r"""A small neural scorer: user, item and context embeddings concatenated through a two-layer MLP.

.. math::  \hat x_{uic} = w_2^\top \operatorname{ReLU}\big(W_1 [p_u; q_i; r_c] + b_1\big) + b_2

where :math:`p_u, q_i, r_c` are learned embeddings. Unlike CP's :math:`\sum_k U_{uk} V_{ik} C_{ck}`, the
hidden layer can combine the three inputs in any way (it is a universal approximator given enough units),
e.g. "group A likes X in the morning and Y in the evening, group B the opposite". That flexibility is the
claim made for deep models over tensor factorisation; :func:`~recsys_tutorial.data.nonlinear.make_xor_data`
plants such a pattern so the claim can be measured. It is the neural collaborative filtering of He et al.
[1]_ with a context input; Rendle et al. [2]_ show that on real data a well-tuned dot product is hard to beat.

Training uses the series' implicit losses: binary cross-entropy against sampled negatives (as CP with
``loss="bce"``) or the softmax over all items (as SASRec's ``"ce"``).

References
----------
.. [1] X. He et al., "Neural Collaborative Filtering", WWW 2017.
.. [2] S. Rendle, W. Krichene, L. Zhang and J. Anderson, "Neural Collaborative Filtering vs. Matrix
       Factorization Revisited", RecSys 2020.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..ids import check_ids
from ..training import History, minibatches, run_epochs, sample_negatives
from .base import Recommender, as_index

__all__ = ["MLPConfig", "MLPNet", "MLPScorer"]


@dataclass(frozen=True)
class MLPConfig:
    """Hyperparameters of :class:`MLPScorer`."""

    dim: int = 16  # D: size of each of the user, item and context embeddings
    hidden: int = 64  # units of the hidden layer
    loss: str = "bce"  # "bce": sampled negatives; "ce": softmax over all items
    n_negatives: int = 4  # negatives per positive click (bce only)
    epochs: int = 40  # an upper bound when validation stops training early
    batch_size: int = 1024
    lr: float = 5e-3  # Adam
    weight_decay: float = 0.0
    patience: int = 3  # epochs without a better validation NDCG@10 before stopping
    context: str = "context_id"  # the column of integer context ids in the frames passed to fit
    seed: int = 0

    def __post_init__(self):
        if self.loss not in ("bce", "ce"):
            raise ValueError(f"loss must be 'bce' or 'ce', got {self.loss!r}")
        if self.dim < 1 or self.hidden < 1:
            raise ValueError(f"dim and hidden must be positive, got {self.dim} and {self.hidden}")


class MLPNet(nn.Module):
    """Embeddings and the MLP: (users (B,), items (B, K), contexts (B,)) -> scores (B, K)."""

    def __init__(self, n_users: int, n_items: int, n_contexts: int, config: MLPConfig):
        super().__init__()
        D = config.dim
        self.user, self.item = nn.Embedding(n_users, D), nn.Embedding(n_items, D)
        self.context = nn.Embedding(n_contexts, D)
        for emb in (self.user, self.item, self.context):
            nn.init.normal_(emb.weight, std=D**-0.5)
        self.mlp = nn.Sequential(nn.Linear(3 * D, config.hidden), nn.ReLU(), nn.Linear(config.hidden, 1))

    def forward(self, users: torch.Tensor, items: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
        B, K = items.shape
        p, r = self.user(users)[:, None].expand(B, K, -1), self.context(contexts)[:, None].expand(B, K, -1)  # (B, K, D)
        x = torch.cat([p, self.item(items), r], dim=-1)  # (B, K, 3D)
        return self.mlp(x)[..., 0]  # (B, K)


class MLPScorer(Recommender):
    """The MLP recommender; ``fit(train, n_users, n_items, n_contexts, valid=None)`` (see the module docstring).

    Without a context, ``score(users)`` averages the per-context scores with the contexts' training shares (the
    MLP is not linear in the context, so the scores, not the embeddings, are averaged).
    """

    Config = MLPConfig
    context_aware = True
    epochs_field = "epochs"
    without_context = "averages the scores of every context, weighted by the contexts' training shares"

    def fit(self, train: pd.DataFrame, n_users: int, n_items: int, n_contexts: int = 1, valid=None):
        """Train on the clicks of ``train`` (``user, item`` and, with ``n_contexts > 1``, the context column)."""
        for frame, name in ((train, "train"), (valid, "valid")):
            if frame is not None and len(frame) and n_contexts > 1:
                if self.config.context not in frame:
                    raise ValueError(f"{name} has no {self.config.context!r} column: add it with "
                                     "recsys_tutorial.data.add_context, or fit with n_contexts=1")  # fmt: skip
                check_ids(frame[self.config.context].to_numpy(), n_contexts, "context", "Pass a larger n_contexts.")
        return self._fit_checked(train, n_users, n_items, int(n_contexts), valid)

    def _columns(self, df: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        contexts = df[self.config.context].to_numpy() if self.n_contexts > 1 else np.zeros(len(df), dtype=np.int64)
        return as_index(df["user"]), as_index(df["item"]), as_index(contexts)

    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> History:
        cfg = self.config
        generator = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.net_ = MLPNet(self.n_users, self.n_items, self.n_contexts, cfg).to(self.device)
        users, items, contexts = self._columns(train)
        self.context_share_ = (torch.bincount(contexts, minlength=self.n_contexts) / len(contexts)).to(self.device)
        optimizer = torch.optim.Adam(self.net_.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

        def run_epoch(epoch: int) -> float:
            self.net_.train()
            total = 0.0
            for batch in minibatches(len(users), cfg.batch_size, generator):
                u, i, c = (t[batch].to(self.device) for t in (users, items, contexts))
                loss = self._loss(u, i, c, generator)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            return total / len(users)

        history = run_epochs(
            run_epoch, cfg.epochs, self._ndcg_validator(valid), module=self.net_, patience=cfg.patience,
            desc="MLP", progress=self.progress, metric="NDCG@10",
        )  # fmt: skip
        self.net_.eval()
        return history

    def _loss(self, u: torch.Tensor, i: torch.Tensor, c: torch.Tensor, generator) -> torch.Tensor:
        """BCE of each click against ``n_negatives`` uniform negatives, or the softmax over all items."""
        if self.config.loss == "ce":
            every = torch.arange(self.n_items, device=self.device).expand(len(u), -1)  # (B, n_items)
            return F.cross_entropy(self.net_(u, every, c), i)
        negatives = sample_negatives(self.n_items, (len(u), self.config.n_negatives), generator, self.device)  # (B, K)
        logits = self.net_(u, torch.cat([i[:, None], negatives], 1), c)  # (B, 1 + K)
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(logits, labels)

    def _score(self, users: torch.Tensor, contexts: torch.Tensor | None) -> torch.Tensor:
        every = torch.arange(self.n_items, device=self.device).expand(len(users), -1)  # (B, n_items)
        if contexts is not None:
            return self.net_(users, every, contexts)
        per_context = [self.net_(users, every, torch.full_like(users, c)) for c in range(self.n_contexts)]
        return torch.einsum("c,cbi->bi", self.context_share_, torch.stack(per_context))  # (B, n_items)
