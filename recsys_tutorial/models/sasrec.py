r"""A SASRec-style transformer for next-item recommendation, written to be read.

A user's history :math:`s_1, \dots, s_T` (item indices, oldest first) becomes tokens ``s_t + 1``
left-padded with 0 (see :func:`recsys_tutorial.sequences.left_pad`). Each position gets its item
embedding plus a learned position embedding, goes through pre-LayerNorm blocks of *causal*
self-attention and a feed-forward layer, and the output :math:`h_t` scores every item :math:`i`
with the same item embeddings used at the input (tied weights):

.. math::  \hat y_{t,i} = h_t^\top e_i, \qquad
           \operatorname{attn}(Q, K, V) = \operatorname{softmax}\Big(\frac{QK^\top}{\sqrt{d}} + M\Big) V

where the mask :math:`M` is :math:`-\infty` for keys in the future (causal) and for padding keys.
Position :math:`t` is trained to predict :math:`s_{t+1}`, either with a sampled negative and binary
cross-entropy (as in the SASRec paper [1]_) or with the full softmax over all items, which is
known to train much better [2]_. To recommend, the model reads the output at the last position.

Positions are counted from the most recent item (0 = last), so extra left padding never moves a
real item to another position embedding: scores do not depend on how long the padded window is.

References
----------
.. [1] W.-C. Kang and J. McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.
.. [2] A. Klenitskiy and A. Vasilev, "Turning Dross Into Gold Loss: is BERT4Rec really better than
       SASRec?", RecSys 2023.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..evaluation import evaluate_ranking
from ..sequences import PAD, left_pad
from ..splits import seen_items, user_sequences
from ..training import History, minibatches, sample_negatives, train
from ..utils import get_device
from .base import Recommender, as_index, check_index

__all__ = ["SASRecConfig", "attention", "attention_mask", "SASRecNet", "SASRec", "ce_loss", "bce_loss"]


@dataclass(frozen=True)
class SASRecConfig:
    """Hyperparameters of :class:`SASRec` (defaults chosen on the ML-100K validation item only)."""

    max_len: int = 50  # T: longer histories are cut into windows of T for training; scoring reads the last T
    # D: item, position and hidden size. In the validation sweep (benchmarks/results/sasrec_validation_sweep_h100.jsonl)
    # 64 with max_len 200 scored 0.119 against 0.116 for 32 with max_len 50, within a seed's spread, but one seed of
    # it took 173 s to train on the 2-core CPU (benchmarks/results/sasrec_epoch_2core_cpu.jsonl).
    dim: int = 32
    n_blocks: int = 2  # two attention blocks, as in SASRec
    n_heads: int = 1  # one head reads most easily; D must divide by it
    dropout: float = 0.2  # on embeddings and residual branches
    loss: str = "ce"  # "ce": softmax over all items; "bce": one sampled negative per position (SASRec)
    use_user: bool = False  # add a user embedding to the output, as in the brief's sketch
    lr: float = 5e-3  # Adam; with pre-LayerNorm a small model takes a large step (above 2e-3 in the validation sweep)
    weight_decay: float = 0.0
    batch_size: int = 64  # training windows per step: ~50 steps per ML-100K epoch
    epochs: int = 40  # an upper bound; with patience 5, early stopping ended validation runs at epochs 30-40
    # Epochs without a better validation NDCG@10 before stopping. The validation curve is noisy from epoch to
    # epoch: on the 2-core CPU, seed 0 peaks at 0.108 by epoch 19 and dips for three epochs (patience 3 stops at 22),
    # then climbs to 0.119 at epoch 29 (patience 5 stops at 34; benchmarks/results/sasrec_epoch_2core_cpu.jsonl).
    patience: int = 5
    seed: int = 0

    def __post_init__(self):
        if self.loss not in ("ce", "bce"):
            raise ValueError(f"loss must be 'ce' or 'bce', got {self.loss!r}")
        if self.dim % self.n_heads:
            raise ValueError(f"dim={self.dim} must be divisible by n_heads={self.n_heads}")
        if self.max_len < 2:
            raise ValueError(f"max_len must be at least 2, got {self.max_len}")


def attention_mask(tokens: torch.Tensor) -> torch.Tensor:
    """Boolean (B, 1, T, T) mask, True where query t may attend to key s: s <= t and s is not padding.

    Each position may always attend to itself, so a padding query is never left with no key at all
    (its output is ignored anyway; a fully masked row would make softmax return NaN).
    """
    T = tokens.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()  # (T, T)
    real_key = (tokens != PAD)[:, None, None, :]  # (B, 1, 1, T)
    itself = torch.eye(T, dtype=torch.bool, device=tokens.device)  # (T, T)
    return causal & (real_key | itself)  # (B, 1, T, T)


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, dropout: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Scaled dot-product attention :math:`\operatorname{softmax}(QK^\top/\sqrt{d} + M)V`.

    Parameters
    ----------
    q, k, v : (B, H, T, d) tensors
    mask : boolean tensor broadcastable to (B, H, T, T); True = may attend.
    dropout : float
        Dropout on the attention weights (pass 0 in evaluation).

    Returns
    -------
    out : (B, H, T, d) and weights : (B, H, T, T), each query's row summing to 1.
    Same result as ``torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)``.
    """
    logits = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, T, T)
    logits = logits.masked_fill(~mask, float("-inf"))
    weights = logits.softmax(dim=-1)  # (B, H, T, T)
    return F.dropout(weights, dropout, training=dropout > 0) @ v, weights  # (B, H, T, d)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention with our :func:`attention`; keeps its last weights for plotting."""

    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=-1)  # 3 x (B, T, D)
        q, k, v = (z.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for z in (q, k, v))  # (B, H, T, d)
        y, self.weights = attention(q, k, v, mask)  # (B, H, T, d)
        return self.out(y.transpose(1, 2).reshape(B, T, D))  # (B, T, D)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, n_heads)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), mask))  # (B, T, D)
        return x + self.drop(self.ffn(self.ln2(x)))  # (B, T, D)


class SASRecNet(nn.Module):
    """The network: tokens (B, T) -> hidden states (B, T, D); :meth:`logits` scores all items."""

    def __init__(self, n_items: int, n_users: int, config: SASRecConfig):
        super().__init__()
        self.n_items, self.config = n_items, config
        D = config.dim
        self.item = nn.Embedding(n_items + 1, D, padding_idx=PAD)  # token 0 = padding, a zero vector
        self.position = nn.Embedding(config.max_len, D)  # 0 = most recent item
        self.user = nn.Embedding(n_users, D) if config.use_user else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(D, config.n_heads, config.dropout) for _ in range(config.n_blocks))
        self.ln = nn.LayerNorm(D)
        nn.init.normal_(self.item.weight, std=D**-0.5)
        nn.init.normal_(self.position.weight, std=D**-0.5)
        with torch.no_grad():
            self.item.weight[PAD].zero_()

    def forward(self, tokens: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        B, T = tokens.shape
        if T > self.config.max_len:
            raise ValueError(f"sequences of length {T} exceed max_len={self.config.max_len}: left_pad them first")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() > self.n_items):
            bad = int(tokens.max()) - 1 if tokens.max() > self.n_items else int(tokens.min()) - 1
            raise ValueError(f"item id {bad} is out of range: the model knows {self.n_items} items")
        recency = torch.arange(T - 1, -1, -1, device=tokens.device)  # (T,) 0 = last position
        real = (tokens != PAD).unsqueeze(-1)  # (B, T, 1)
        x = self.drop((self.item(tokens) * self.config.dim**0.5 + self.position(recency)) * real)  # (B, T, D)
        mask = attention_mask(tokens)  # (B, 1, T, T)
        for block in self.blocks:
            x = block(x, mask) * real  # (B, T, D) padding stays zero between blocks
        h = self.ln(x)  # (B, T, D)
        if self.user is not None and users is not None:
            h = h + self.user(users)[:, None, :]  # (B, T, D)
        return h

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Scores of every item, (..., n_items), from hidden states (..., D) with the tied item embeddings."""
        return h @ self.item.weight[1:].T  # (..., n_items)


def ce_loss(net: SASRecNet, h: torch.Tensor, targets: torch.Tensor, **_) -> torch.Tensor:
    """Softmax cross-entropy of each real position's next item over all items."""
    real = targets != PAD  # (B, T)
    return F.cross_entropy(net.logits(h[real]), targets[real] - 1)  # logits (N, n_items)


def bce_loss(net: SASRecNet, h: torch.Tensor, targets: torch.Tensor, generator=None) -> torch.Tensor:
    """SASRec's loss: binary cross-entropy of the next item against one uniformly sampled negative."""
    real = targets != PAD  # (B, T)
    h = h[real]  # (N, D)
    positive = targets[real]  # (N,) tokens
    negative = sample_negatives(net.n_items, positive.shape, generator, h.device) + 1  # (N,) tokens
    pos_logit = (h * net.item(positive)).sum(-1)  # (N,)
    neg_logit = (h * net.item(negative)).sum(-1)  # (N,)
    return F.binary_cross_entropy_with_logits(
        torch.cat([pos_logit, neg_logit]), torch.cat([torch.ones_like(pos_logit), torch.zeros_like(neg_logit)])
    )


class SASRec(Recommender):
    """Recommender wrapper: fit on temporal leave-one-out training data, score from each user's history.

    ``fit(train, n_users, n_items, valid=valid)`` trains with early stopping on the validation item's
    NDCG@10 (full ranking, training items excluded). Afterwards the model's history for each user is
    train + valid, so ``score(users)`` predicts the item after the validation item: the test item.
    Use :meth:`set_history` to score from other histories.
    """

    def __init__(
        self, config: SASRecConfig | None = None, device: torch.device | str | None = None, progress: bool = True
    ):
        self.config, self.progress = config or SASRecConfig(), progress
        self.device = torch.device(device) if device is not None else get_device()

    def fit(
        self,
        train_df: pd.DataFrame,
        n_users: int,
        n_items: int,
        valid: pd.DataFrame | None = None,
        item_init: torch.Tensor | None = None,
    ) -> SASRec:
        """Train on ``train_df`` (encoded, with timestamps); ``valid`` drives early stopping.

        ``item_init`` (n_items, dim), e.g. MF item factors ``V_``, initialises the item embeddings
        (rescaled to the default initialisation's size): the hybrid of notebook 05.
        """
        cfg = self.config
        self.n_users, self.n_items = n_users, n_items
        generator = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)  # weight initialisation and dropout
        self.net = SASRecNet(n_items, n_users, cfg).to(self.device)
        if item_init is not None:
            self._init_items(torch.as_tensor(item_init, dtype=torch.float32))
        optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        users, inputs, targets = self._training_pairs(train_df)
        loss_fn = ce_loss if cfg.loss == "ce" else bce_loss
        self.set_history(train_df)

        def run_epoch(epoch: int) -> float:
            self.net.train()
            total = 0.0
            for batch in minibatches(len(users), cfg.batch_size, generator):
                u, x, y = users[batch], inputs[batch], targets[batch]  # (B,), (B, T), (B, T)
                x, y = _trim(x, y)
                loss = loss_fn(self.net, self.net(x.to(self.device), u.to(self.device)), y.to(self.device),
                               generator=generator)  # fmt: skip
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            return total / len(users)

        validate = None
        if valid is not None and len(valid):
            exclude = seen_items(train_df, n_users, n_items)
            validate = lambda: evaluate_ranking(self.score, valid, exclude)["NDCG@10"]
        self.history: History = train(
            run_epoch,
            cfg.epochs,
            validate,
            module=self.net,
            patience=cfg.patience,
            desc=f"SASRec ({cfg.loss})",
            progress=self.progress,
        )
        self.net.eval()
        self.set_history(pd.concat([train_df, valid]) if valid is not None else train_df)
        return self

    def _init_items(self, V: torch.Tensor) -> None:
        if V.shape != (self.n_items, self.config.dim):
            raise ValueError(
                f"item_init has shape {tuple(V.shape)}, expected ({self.n_items}, {self.config.dim}): "
                f"fit the factors with rank={self.config.dim} or set SASRecConfig(dim={V.shape[-1]})"
            )
        with torch.no_grad():  # same overall scale as the random initialisation, std D^-1/2
            self.net.item.weight[1:] = (V / V.std() * self.config.dim**-0.5).to(self.device)

    def _training_pairs(self, train_df: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs s_1..s_{n-1} and targets s_2..s_n cut into windows of at most T, left-padded, each (N, T).

        A history longer than T gives several windows (the last one ends on the most recent item), so
        every training interaction is a target once and no batch is mostly padding.
        """
        seqs = user_sequences(train_df, self.n_users)
        T, users, inputs, targets = self.config.max_len, [], [], []
        for u, s in enumerate(seqs):
            for end in range(len(s) - 1, 0, -T):  # windows over s[:-1], newest first
                users.append(u)
                inputs.append(s[max(0, end - T) : end])
                targets.append(s[max(0, end - T) + 1 : end + 1])
        if not users:
            raise ValueError("no user has two training interactions: nothing to learn a sequence from")
        return torch.tensor(users), left_pad(inputs, T), left_pad(targets, T)  # (N,), (N, T), (N, T)

    def set_history(self, interactions: pd.DataFrame) -> SASRec:
        """Use these interactions (encoded, with timestamps) as every user's history and seen items."""
        check_index(as_index(interactions["item"]), self.n_items, "item")
        self.tokens_ = left_pad(user_sequences(interactions, self.n_users), self.config.max_len)  # (n_users, T)
        self._remember_seen(interactions)
        return self

    def _hidden(self, users: torch.Tensor) -> torch.Tensor:
        tokens = _trim(self.tokens_[users.cpu()])[0].to(self.device)  # (B, T')
        return self.net(tokens, users)  # (B, T', D)

    def _score(self, users: torch.Tensor, contexts) -> torch.Tensor:
        training = self.net.training
        self.net.eval()
        scores = self.net.logits(self._hidden(users)[:, -1])  # (B, n_items) from the last position
        self.net.train(training)
        return scores

    def attention_maps(self, user: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Attention weights of every block for one user's history: a list of (H, T_u, T_u), and the items.

        ``T_u`` is the user's number of history items (at most ``max_len``); row t shows how much the
        output at position t reads each earlier item.
        """
        check_index(as_index([user]), self.n_users, "user")
        tokens = self.tokens_[user]
        real = tokens != PAD
        self.net.eval()
        with torch.no_grad():
            self.net(tokens[real][None].to(self.device), torch.tensor([user], device=self.device))
        maps = [b.attn.weights[0].cpu() for b in self.net.blocks]  # each (H, T_u, T_u)
        return maps, tokens[real] - 1

    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.net.parameters() if p.requires_grad)


def _trim(*batches: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Drop the leading columns that are padding in every row (left padding makes them a prefix)."""
    first = batches[0]
    used = (first != PAD).any(dim=0).nonzero()
    start = int(used[0]) if len(used) else first.shape[1] - 1
    return tuple(b[:, start:] for b in batches)
