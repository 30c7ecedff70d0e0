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
known to train much better [2]_. With a large catalogue the full softmax dominates the cost of an
epoch; the *sampled* softmax replaces the sum over all items by a sum over about a thousand negatives
drawn from a proposal :math:`q`, with each logit corrected by :math:`-\log q` [3]_ [4]_ [5]_ (see
:func:`sampled_softmax_loss`). To recommend, the model reads the output at the last position.

Positions are counted from the most recent item (0 = last), so extra left padding never moves a
real item to another position embedding: scores do not depend on how long the padded window is.
The attention blocks live in :mod:`.transformer`.

References
----------
.. [1] W.-C. Kang and J. McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.
.. [2] A. Klenitskiy and A. Vasilev, "Turning Dross Into Gold Loss: is BERT4Rec really better than
       SASRec?", RecSys 2023.
.. [3] Y. Bengio and J.-S. Senecal, "Adaptive Importance Sampling to Accelerate Training of a Neural
       Probabilistic Language Model", IEEE Transactions on Neural Networks 19(4), 2008.
.. [4] S. Jean, K. Cho, R. Memisevic and Y. Bengio, "On Using Very Large Target Vocabulary for Neural
       Machine Translation", ACL 2015.
.. [5] X. Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large Corpus Item Recommendations",
       RecSys 2019.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..ids import check_ids
from ..ranking import batch_rows
from ..sequences import PAD, left_pad
from ..splits import user_sequences
from ..training import GradientSteps, History, minibatches, run_epochs, sample_negatives
from .base import Recommender
from .transformer import SequenceEncoder

__all__ = [
    "SASRecConfig", "SASRecNet", "SASRec", "ce_loss", "bce_loss", "sampled_softmax_loss", "proposal",
    "draw_negatives",
]  # fmt: skip


@dataclass(frozen=True)
class SASRecConfig:
    """Hyperparameters of :class:`SASRec` (defaults chosen on the ML-100K validation item only)."""

    max_len: int = 50  # T: longer histories are cut into windows of T for training; scoring reads the last T
    # D: item, position and hidden size. The validation sweep behind these defaults (dim x max_len x dropout x lr,
    # three seeds each) is kept in benchmarks/results/sasrec_validation_sweep_h100.jsonl: larger settings scored
    # within a seed's spread of this one on validation, at several times the CPU training time
    # (benchmarks/results/sasrec_epoch_2core_cpu.jsonl).
    dim: int = 32
    n_blocks: int = 2  # two attention blocks, as in SASRec
    n_heads: int = 1  # one head reads most easily; D must divide by it
    dropout: float = 0.2  # on embeddings and residual branches
    # "ce": softmax over all items; "bce": one sampled negative per position (SASRec); "sampled": softmax over the
    # target and n_negatives items drawn from a proposal q, logits corrected by -log q (for large catalogues)
    loss: str = "ce"
    # "sampled": negatives per batch, shared by every position of the batch. Chosen on validation NDCG@10 against the
    # full softmax at the same epochs in benchmarks/results/scaling_sampled_sweep_2core_cpu.jsonl: the smallest count
    # that came within 5% of it, at a fraction of its CPU time per epoch.
    n_negatives: int = 1024
    # "sampled": q(i) is proportional to (training count of i + 1) ** proposal_alpha; 0 gives the uniform proposal.
    # Popular items are the hard negatives a uniform draw almost never picks from a long tail.
    proposal_alpha: float = 0.75
    logq_correction: bool = True  # "sampled": subtract log q(i) from every candidate's logit (False: to show why)
    use_user: bool = False  # add a user embedding to the output (one vector per user, learnt from one sequence)
    lr: float = 5e-3  # Adam; with pre-LayerNorm a small model takes a large step (the sweep's better learning rate)
    weight_decay: float = 0.0
    batch_size: int = 64  # training windows per step
    epochs: int = 40  # an upper bound: early stopping on validation NDCG@10 ends sooner
    # Epochs without a better validation NDCG@10 before stopping. The validation curve is noisy from epoch to epoch
    # and dips for a few epochs before climbing again; patience 3 stopped before the best epoch in the recorded runs
    # (benchmarks/results/sasrec_epoch_2core_cpu.jsonl), patience 5 did not.
    patience: int = 5
    causal: bool = True  # False drops the causal mask: only to show the shortcut a model then learns
    freeze_items: bool = False  # keep the item embeddings as initialised (e.g. from MF factors) during training
    seed: int = 0

    def __post_init__(self):
        if self.loss not in ("ce", "bce", "sampled"):
            raise ValueError(f"loss must be 'ce', 'bce' or 'sampled', got {self.loss!r}")
        if self.n_negatives < 1 or self.proposal_alpha < 0:
            raise ValueError(
                f"need n_negatives >= 1 and proposal_alpha >= 0, got {self.n_negatives} and {self.proposal_alpha}"
            )
        if self.dim % self.n_heads:
            raise ValueError(f"dim={self.dim} must be divisible by n_heads={self.n_heads}")
        if self.max_len < 2:
            raise ValueError(f"max_len must be at least 2, got {self.max_len}")


class SASRecNet(nn.Module):
    """The network: tokens (B, T) -> hidden states (B, T, D); :meth:`logits` scores all items."""

    def __init__(self, n_items: int, n_users: int, config: SASRecConfig):
        super().__init__()
        self.n_items, self.config = n_items, config
        D = config.dim
        self.item = nn.Embedding(n_items + 1, D, padding_idx=PAD)  # token 0 = padding, a zero vector
        self.encoder = SequenceEncoder(
            D, config.max_len, config.n_blocks, config.n_heads, config.dropout, config.causal
        )
        self.user = nn.Embedding(n_users, D) if config.use_user else None
        nn.init.normal_(self.item.weight, std=D**-0.5)
        nn.init.normal_(self.encoder.position.weight, std=D**-0.5)
        with torch.no_grad():
            self.item.weight[PAD].zero_()

    def forward(self, tokens: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        check_ids(tokens, self.n_items + 1, "item token", "Tokens are item index + 1 (0 = padding): use left_pad.")
        h = self.encoder(self.item(tokens) * self.config.dim**0.5, tokens)  # (B, T, D)
        if self.user is not None and users is not None:
            h = h + self.user(users)[:, None, :]  # (B, T, D)
        return h

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Scores of every item, (..., n_items), from hidden states (..., D) with the tied item embeddings."""
        return h @ self.item.weight[1:].T  # (..., n_items)


def ce_loss(net: SASRecNet, h: torch.Tensor, targets: torch.Tensor, **_) -> torch.Tensor:
    """Softmax cross-entropy of each real position's next item over all items.

    When the (positions, n_items) logits would exceed :data:`recsys_tutorial.ranking.SCORE_BUDGET_MB`, they
    are computed in chunks of positions, each recomputed in the backward pass instead of stored.
    """
    real = targets != PAD  # (B, T)
    h, y = h[real], targets[real] - 1  # (N, D), (N,) item indices
    if len(h) <= batch_rows(net.n_items, cap=len(h)):
        return F.cross_entropy(net.logits(h), y)  # logits (N, n_items)
    return _chunked_sum(lambda h, y: F.cross_entropy(net.logits(h), y, reduction="sum"), h, y, net.n_items) / len(h)


def _chunked_sum(loss_sum, h: torch.Tensor, y: torch.Tensor, width: int) -> torch.Tensor:
    """Sum of ``loss_sum(h_chunk, y_chunk)`` over chunks whose (rows, width) logits fit the memory budget.

    Each chunk is checkpointed: its logits are freed after the forward pass and recomputed in the
    backward pass, so at most one chunk's logits (and their gradient) exist at a time.
    """
    rows = batch_rows(width, cap=len(h))
    return sum(
        checkpoint(loss_sum, h[lo : lo + rows], y[lo : lo + rows], use_reentrant=False) for lo in range(0, len(h), rows)
    )


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


def proposal(item_counts: torch.Tensor, alpha: float) -> torch.Tensor:
    r"""The sampling distribution :math:`q(i) \propto (n_i + 1)^\alpha` over items, from training counts :math:`n_i`.

    :math:`\alpha = 0` is uniform, :math:`\alpha = 1` follows popularity; the +1 keeps every item drawable.
    """
    weights = (item_counts.double() + 1.0) ** alpha
    return (weights / weights.sum()).float()  # (n_items,)


def draw_negatives(q: torch.Tensor, n: int, generator=None, device=None) -> torch.Tensor:
    """``n`` item indices drawn with replacement from the distribution ``q`` (on the CPU, with ``generator``).

    Under ``torch.distributed`` the loop passes a :class:`~recsys_tutorial.training.ShardDraws`: the negatives
    are shared by every position of the *global* batch, so every rank draws the same ones from the shared
    generator (which then advances identically everywhere, as on one process).
    """
    generator = getattr(generator, "generator", generator)  # a ShardDraws' shared generator, or the generator
    return torch.multinomial(q.cpu(), n, replacement=True, generator=generator).to(device)


def sampled_softmax_loss(
    net: SASRecNet,
    h: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Sampled softmax cross-entropy with the log-Q correction, negatives shared by every position.

    Each real position t with target :math:`y_t` is scored against its target and the :math:`S` sampled
    ``negatives`` :math:`j_1, \dots, j_S` (drawn once per batch from a proposal :math:`q`):

    .. math::  \ell_t = -\,o_{t,y_t} + \log\Big(e^{o_{t,y_t}} + \sum_{s:\, j_s \neq y_t} e^{o_{t,j_s}}\Big),
               \qquad o_{t,i} = h_t^\top e_i - \log q(i)

    Subtracting :math:`\log q` from every candidate's logit, the target's included, weighs each sampled
    negative by :math:`1/q`, so that the sum over negatives estimates :math:`S` times the sum over all items
    of the full softmax (importance sampling [1]_ [2]_). Without it, popular items, drawn often as negatives,
    are pushed down too hard [3]_. A negative equal to the position's target (an *accidental hit*) is
    removed. With a uniform :math:`q` the correction is a constant that cancels, and with every item as a
    negative the loss is the full softmax's :func:`ce_loss`.

    Parameters
    ----------
    h : (B, T, D) hidden states; targets : (B, T) next-item tokens (0 = padding, ignored)
    negatives : (S,) item indices (0-based); log_q : (n_items,) log proposal, or None for no correction.

    References
    ----------
    .. [1] Y. Bengio and J.-S. Senecal, "Adaptive Importance Sampling to Accelerate Training of a Neural
           Probabilistic Language Model", IEEE Transactions on Neural Networks 19(4), 2008.
    .. [2] S. Jean, K. Cho, R. Memisevic and Y. Bengio, "On Using Very Large Target Vocabulary for Neural
           Machine Translation", ACL 2015.
    .. [3] X. Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large Corpus Item Recommendations",
           RecSys 2019.
    """
    real = targets != PAD  # (B, T)
    h, y = h[real], targets[real] - 1  # (N, D), (N,) item indices

    def loss_sum(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # One lookup of the candidates' embeddings, with a sparse gradient (CPU and CUDA have sparse kernels):
        # the backward pass then touches the candidates' rows only, not the whole item table.
        sparse = h.device.type in ("cpu", "cuda")
        e = F.embedding(torch.cat([y, negatives]) + 1, net.item.weight, sparse=sparse)  # (N + S, D), tokens items + 1
        positive = (h * e[: len(y)]).sum(-1, keepdim=True)  # (N, 1)
        negative = h @ e[len(y) :].T  # (N, S)
        if log_q is not None:
            positive, negative = positive - log_q[y][:, None], negative - log_q[negatives][None, :]
        negative = negative.masked_fill(negatives[None, :] == y[:, None], -torch.inf)  # accidental hits
        logits = torch.cat([positive, negative], dim=1)  # (N, 1 + S): the target is column 0
        return F.cross_entropy(logits, torch.zeros_like(y), reduction="sum")

    if len(h) <= batch_rows(1 + len(negatives), cap=len(h)):
        return loss_sum(h, y) / len(h)
    return _chunked_sum(loss_sum, h, y, 1 + len(negatives)) / len(h)


class SASRec(Recommender):
    """The SASRec recommender: trained on each user's sequence, scores from each user's history.

    ``fit(train, n_users, n_items, valid=valid)`` trains with early stopping on the validation item's
    NDCG@10 (full ranking, training items excluded). Afterwards the model's history for each user is
    train + valid, so ``score(users)`` predicts the item after the validation item: the test item.
    Use :meth:`set_history` to score from other histories. ``item_init`` (n_items, dim), e.g. MF item
    factors ``V_``, initialises the item embeddings (rescaled to the random initialisation's size): the
    hybrid of notebook 05; ``config.freeze_items`` keeps them fixed. With ``loss="sampled"`` (large
    catalogues, see :func:`sampled_softmax_loss`), ``proposal_`` holds the distribution negatives are drawn from.
    """

    Config = SASRecConfig
    epochs_field = "epochs"

    def __init__(self, config=None, *, item_init: torch.Tensor | None = None, device=None, progress=True, **overrides):
        super().__init__(config, device=device, progress=progress, **overrides)
        self.item_init = None if item_init is None else torch.as_tensor(item_init, dtype=torch.float32)

    def _init_kwargs(self) -> dict:
        return {"item_init": self.item_init}

    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> History:
        cfg = self.config
        generator = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)  # weight initialisation and dropout
        self.net_ = SASRecNet(self.n_items, self.n_users, cfg).to(self.device)
        if self.item_init is not None:
            self._set_item_embeddings(self.item_init)
        self.net_.item.weight.requires_grad_(not cfg.freeze_items)
        # foreach: the same updates as the default per-tensor loop, in fewer passes over the item table
        optimizer = torch.optim.Adam(
            [p for p in self.net_.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay,
            foreach=True,
        )  # fmt: skip
        users, inputs, targets = self._training_pairs(train)
        loss_fn = self._loss_fn(train)
        self.set_history(train)
        steps = GradientSteps(self.net_, optimizer)  # plain steps, or this rank's share under torch.distributed
        n_targets = (targets != PAD).sum(1)  # (N,) terms each window adds to a batch's mean loss

        def batch_loss(x, u, y, draws):
            h = self.net_(x.to(self.device), u.to(self.device))  # (B, T', D)
            return loss_fn(self.net_, h, y.to(self.device), generator=draws)

        def run_epoch(epoch: int) -> float:
            self.net_.train()
            total = 0.0
            for batch in minibatches(len(users), cfg.batch_size, generator):
                mine, draws = steps.shard(batch, generator, n_targets)  # this rank's rows (all on one process)
                u, x, y = users[mine], inputs[mine], targets[mine]  # (B,), (B, T), (B, T)
                x, y = _trim(x, y)
                total += steps.step(batch_loss, x, u, y, draws) * len(batch)
            return total / len(users)

        history = run_epochs(
            run_epoch, cfg.epochs, self._ndcg_validator(valid), module=self.net_, patience=cfg.patience,
            desc=f"SASRec ({cfg.loss})", progress=self.progress, metric="NDCG@10",
        )  # fmt: skip
        self.net_.eval()
        self.set_history(train if valid is None else pd.concat([train, valid]))
        return history

    def _loss_fn(self, train: pd.DataFrame):
        """The configured loss as ``loss_fn(net, h, targets, generator=...)``; "sampled" sets ``proposal_``."""
        cfg = self.config
        if cfg.loss != "sampled":
            return ce_loss if cfg.loss == "ce" else bce_loss
        counts = torch.as_tensor(np.bincount(train["item"].to_numpy(), minlength=self.n_items))
        self.proposal_ = proposal(counts, cfg.proposal_alpha)  # (n_items,) q, on the CPU where negatives are drawn
        log_q = self.proposal_.log().to(self.device) if cfg.logq_correction else None

        def loss_fn(net, h, targets, generator=None):
            negatives = draw_negatives(self.proposal_, cfg.n_negatives, generator, h.device)  # (S,)
            return sampled_softmax_loss(net, h, targets, negatives, log_q)

        return loss_fn

    def _set_item_embeddings(self, V: torch.Tensor) -> None:
        if V.shape != (self.n_items, self.config.dim):
            raise ValueError(
                f"item_init has shape {tuple(V.shape)}, expected ({self.n_items}, {self.config.dim}): "
                f"fit the factors with rank={self.config.dim} or set SASRecConfig(dim={V.shape[-1]})"
            )
        with torch.no_grad():  # same overall scale as the random initialisation, std D^-1/2
            self.net_.item.weight[1:] = (V / V.std() * self.config.dim**-0.5).to(self.device)

    def _training_pairs(self, train_df: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs s_1..s_{n-1} and targets s_2..s_n cut into windows of at most T, left-padded, each (N, T).

        A history longer than T gives several windows (the last one ends on the most recent item), so
        every training interaction is a target once and no batch is mostly padding.
        """
        seqs = user_sequences(train_df, self.n_users)
        T, n = self.config.max_len, np.array([len(s) for s in seqs])  # (n_users,) history lengths
        per_user = np.maximum(n - 1 + T - 1, 0) // T  # windows per user: ceil((n - 1) / T)
        if per_user.sum() == 0:
            raise ValueError("no user has two training interactions: nothing to learn a sequence from")
        users = np.repeat(np.arange(len(seqs)), per_user)  # (N,)
        newest_first = np.arange(len(users)) - np.repeat(np.cumsum(per_user) - per_user, per_user)  # (N,)
        end = n[users] - 1 - T * newest_first  # (N,) index of each window's last target in its user's history
        t = end[:, None] - (T - 1) + np.arange(T)  # (N, T) target indices, left-padded where < 1
        real = t >= 1
        flat = np.concatenate(seqs).astype(np.int64) + 1  # tokens: item index + 1 (0 = padding)
        at = np.where(real, (np.cumsum(n) - n)[users][:, None] + t, 0)  # (N, T) positions in flat
        targets = np.where(real, flat[at], PAD)
        inputs = np.where(real, flat[np.maximum(at - 1, 0)], PAD)  # each target's predecessor
        return torch.from_numpy(users), torch.from_numpy(inputs), torch.from_numpy(targets)  # (N,), (N, T), (N, T)

    def set_history(self, interactions: pd.DataFrame) -> SASRec:
        """Use these interactions (encoded, with timestamps) as every user's history and seen items."""
        self._check_frame(interactions, "interactions")
        self.tokens_ = left_pad(user_sequences(interactions, self.n_users), self.config.max_len)  # (n_users, T)
        return self.set_seen(interactions)

    def _hidden(self, users: torch.Tensor) -> torch.Tensor:
        tokens = _trim(self.tokens_[users.cpu()])[0].to(self.device)  # (B, T')
        return self.net_(tokens, users)  # (B, T', D)

    def _last_hidden(self, users: torch.Tensor, group: int = 256) -> torch.Tensor:
        """(B, D) outputs at the last position, users run in groups of similar history length.

        Each group is trimmed to its longest history, so short histories are not padded to ``max_len``:
        with a long tail of light users this is most of the cost of scoring everyone.
        """
        lengths = (self.tokens_[users.cpu()] != PAD).sum(1)  # (B,)
        order = torch.argsort(lengths, stable=True).to(users.device)
        out = torch.empty(len(users), self.config.dim, device=self.device)
        for lo in range(0, len(users), group):
            rows = order[lo : lo + group]
            out[rows] = self._hidden(users[rows])[:, -1]  # (G, D)
        return out

    def _score(self, users: torch.Tensor, contexts) -> torch.Tensor:
        training = self.net_.training
        self.net_.eval()
        scores = self.net_.logits(self._last_hidden(users))  # (B, n_items) from the last position
        self.net_.train(training)
        return scores

    def attention_maps(self, user: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Attention weights of every block for one user's history: a list of (H, T_u, T_u), and the items.

        ``T_u`` is the user's number of history items (at most ``max_len``); row t shows how much the
        output at position t reads each earlier item.
        """
        self._users([user])
        tokens = self.tokens_[user]
        real = tokens != PAD
        self.net_.eval()
        with torch.no_grad():
            self.net_(tokens[real][None].to(self.device), torch.tensor([user], device=self.device))
        maps = [b.attn.weights[0].cpu() for b in self.net_.encoder.blocks]  # each (H, T_u, T_u)
        return maps, tokens[real] - 1


def _trim(*batches: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Drop the leading columns that are padding in every row (left padding makes them a prefix)."""
    first = batches[0]
    used = (first != PAD).any(dim=0).nonzero()
    start = int(used[0]) if len(used) else first.shape[1] - 1
    return tuple(b[:, start:] for b in batches)
