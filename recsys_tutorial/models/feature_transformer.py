r"""A feature-aware sequential transformer: the "deep-learning recommender" of the blog posts, built to be measured.

Where :mod:`.sasrec` reads item ids only, this model reads what such descriptions list: item features, user
features, the context of the request and the history, each through an embedding layer. Item :math:`i` is

.. math::  e_i = m_i\, w_i + \sum_f E_f[x_{if}] + \frac{1}{|G_i|} \sum_{g \in G_i} E_{\text{genre}}[g]

(an id embedding :math:`w_i`, one embedding per single-valued feature such as the release-year bucket, and
the mean of its genre embeddings). A user's history, preceded by a learned start token ``BOS``, goes through
the same causal, left-padded :class:`~.transformer.SequenceEncoder` as SASRec; the output at position
:math:`t` is joined with the user's features and the context (time of day) :math:`c_{t+1}` of the step it
predicts, and scores every item with the same item representations (tied weights):

.. math::  q_t = h_t + \sum_f E^{\text{user}}_f[z_{uf}] + E^{\text{ctx}}[c_{t+1}], \qquad
           \hat y_{t,i} = q_t^\top e_i

Cold items. An item with no training interaction has no trained id embedding; :math:`m_i` is 0 for it, so
it is scored from its features alone (the id embeddings also start at zero, so nothing random leaks in).
During training each known item's id is dropped (:math:`m_i = 0`) with probability ``id_dropout`` per
step, the DropoutNet idea [2]_: the feature embeddings must then carry the ranking on their own. The
training softmax runs over the items known at training time only: an item that can never be a target
would otherwise be pushed down through its features, and with it every item that shares them.

Cold users. ``BOS`` makes the first item of every history a training target predicted from the user's
features and context alone, which is exactly the prediction for a user with no history.

Without a context, ``score(users)`` uses the context embedding averaged with the contexts' training
shares; since :math:`\hat y` is linear in :math:`E^{\text{ctx}}`, that is the share-weighted mean of the
per-context scores.

References
----------
.. [1] W.-C. Kang and J. McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.
.. [2] M. Volkovs, G. Yu and T. Poutanen, "DropoutNet: Addressing Cold Start in Recommender Systems",
       NeurIPS 2017.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..data.features import Features
from ..ids import check_ids
from ..sequences import PAD, left_pad
from ..splits import chronological
from ..training import History, minibatches, run_epochs
from .base import Recommender
from .sasrec import bce_loss, ce_loss
from .transformer import SequenceEncoder

__all__ = ["FeatureTransformerConfig", "FeatureTransformerNet", "FeatureTransformer"]


@dataclass(frozen=True)
class FeatureTransformerConfig:
    """Hyperparameters of :class:`FeatureTransformer`; the transformer's defaults are SASRec's."""

    max_len: int = 50  # T, counting the start token
    dim: int = 32  # D
    n_blocks: int = 2
    n_heads: int = 1
    dropout: float = 0.2
    loss: str = "ce"  # "ce": softmax over the known items; "bce": one sampled negative (SASRec's losses)
    # Chance per training step that a known item's id embedding is left out, so its features must rank it.
    # 0 trains ids and features jointly (cold items then get features that were never asked to work alone).
    id_dropout: float = 0.3
    use_item_features: bool = True  # False: ids only (with BOS and context), the ablation of the features
    use_user_features: bool = True
    use_context: bool = True  # False: no context embedding (the model is then context-free)
    context: str = "context_id"  # column of context ids in the frames passed to fit
    lr: float = 5e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    epochs: int = 40  # an upper bound, with early stopping on validation NDCG@10 as in SASRec
    patience: int = 5
    seed: int = 0

    def __post_init__(self):
        if self.loss not in ("ce", "bce"):
            raise ValueError(f"loss must be 'ce' or 'bce', got {self.loss!r}")
        if self.dim % self.n_heads:
            raise ValueError(f"dim={self.dim} must be divisible by n_heads={self.n_heads}")
        if self.max_len < 2:
            raise ValueError(f"max_len must be at least 2, got {self.max_len}")
        if not 0 <= self.id_dropout < 1:
            raise ValueError(f"id_dropout must lie in [0, 1), got {self.id_dropout}")


class _FeatureEmbedding(nn.Module):
    """Sum of one embedding per field and the mean embedding of each bag: codes of n rows -> (n, D)."""

    def __init__(self, features: Features, dim: int):
        super().__init__()
        self.kind = features.kind
        self.fields = nn.ModuleDict({k: nn.Embedding(len(features.vocab[k]), dim) for k in features.fields})
        self.bags = nn.ModuleDict({k: nn.Embedding(len(features.vocab[k]), dim) for k in features.bags})
        for k, codes in features.fields.items():
            self.register_buffer(f"field_{k}", codes.clone())  # (n,)
        for k, bag in features.bags.items():  # each row's mean over its values: (n, V), rows sum to 1 (or 0)
            self.register_buffer(f"bag_{k}", bag.float() / bag.sum(1, keepdim=True).clamp(min=1))
        for emb in (*self.fields.values(), *self.bags.values()):
            nn.init.normal_(emb.weight, std=dim**-0.5)

    def forward(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Feature embeddings of ``rows`` (all rows if None): (len(rows), D)."""
        out = 0
        for k, emb in self.fields.items():
            codes = getattr(self, f"field_{k}")
            out = out + emb(codes if rows is None else codes[rows])  # (n, D)
        for k, emb in self.bags.items():
            bag = getattr(self, f"bag_{k}")
            out = out + (bag if rows is None else bag[rows]) @ emb.weight  # (n, V) @ (V, D)
        return out


class FeatureTransformerNet(nn.Module):
    """Tokens (B, T) -> queries (B, T, D); :meth:`logits` scores every item with its full representation.

    Tokens are item index + 1, 0 = padding, ``n_items + 1`` = the start token ``BOS``.
    """

    def __init__(self, n_items: int, n_contexts: int, config, item_features=None, user_features=None):
        super().__init__()
        self.n_items, self.config, D = n_items, config, config.dim
        self.bos = n_items + 1
        self.item_id = nn.Embedding(n_items + 2, D, padding_idx=PAD)
        nn.init.zeros_(self.item_id.weight)  # ids start at zero: an item never trained adds nothing random
        nn.init.normal_(self.item_id.weight[self.bos : self.bos + 1], std=D**-0.5)
        self.item_features = None if item_features is None else _FeatureEmbedding(item_features, D)
        self.user_features = None if user_features is None else _FeatureEmbedding(user_features, D)
        self.context = nn.Embedding(n_contexts, D) if n_contexts > 1 else None
        if self.context is not None:
            nn.init.normal_(self.context.weight, std=D**-0.5)
        self.register_buffer("context_share", torch.full((max(n_contexts, 1),), 1.0 / max(n_contexts, 1)))
        self.register_buffer("known", torch.ones(n_items, dtype=torch.bool))  # items with training interactions
        self.register_buffer("id_keep", torch.ones(n_items, dtype=torch.bool))  # this step's id dropout mask
        self.encoder = SequenceEncoder(D, config.max_len, config.n_blocks, config.n_heads, config.dropout)

    def items(self) -> torch.Tensor:
        """Every item's representation e_i (n_items, D): id (where known and not dropped) + features."""
        keep = self.known & self.id_keep if self.training else self.known
        e = self.item_id.weight[1 : self.n_items + 1] * keep[:, None]  # (n_items, D)
        return e if self.item_features is None else e + self.item_features()

    def item(self, tokens: torch.Tensor) -> torch.Tensor:
        """Representations of tokens (any shape): items as :meth:`items`, BOS its own vector, padding 0."""
        table = torch.cat([torch.zeros_like(self.item_id.weight[:1]), self.items(), self.item_id.weight[self.bos :]])
        return table[tokens]  # (..., D)

    def forward(self, tokens: torch.Tensor, users: torch.Tensor, contexts: torch.Tensor | None = None):
        """Queries q_t (B, T, D) for ``tokens`` (B, T) of ``users`` (B,); ``contexts`` (B, T) of the next steps."""
        check_ids(tokens, self.n_items + 2, "item token", "Tokens are item index + 1 (0 = padding, n_items + 1 = BOS).")
        h = self.encoder(self.item(tokens) * self.config.dim**0.5, tokens)  # (B, T, D)
        if self.user_features is not None:
            h = h + self.user_features(users)[:, None, :]  # (B, T, D)
        if self.context is not None:
            if contexts is None:  # share-weighted mean context: the mean of the per-context scores
                h = h + self.context_share @ self.context.weight  # (D,) broadcast over (B, T, D)
            else:
                h = h + self.context(contexts)  # (B, T, D)
        return h

    def logits(self, q: torch.Tensor) -> torch.Tensor:
        """Scores (..., n_items) of queries (..., D); while training, items never trained on are left out."""
        scores = q @ self.items().T  # (..., n_items)
        return scores.masked_fill(~self.known, float("-inf")) if self.training else scores


class FeatureTransformer(Recommender):
    """The feature-aware transformer recommender (see the module docstring for the model).

    ``FeatureTransformer(item_features=..., user_features=...)`` takes :class:`~recsys_tutorial.data.features.
    Features` aligned with the encoded ids (either may be ``None``: a dataset without metadata then gives a
    model of ids, history and context). ``fit(train, n_users, n_items, n_contexts, valid=None)`` trains with
    SASRec's losses and early stopping on the validation NDCG@10; afterwards the history of each user is
    train + valid, as in :class:`~.sasrec.SASRec`. Without a context, ``score(users)`` averages the context
    embedding with the training shares of the contexts.
    """

    Config = FeatureTransformerConfig
    context_aware = True
    epochs_field = "epochs"
    without_context = "uses the context embedding averaged with the contexts' training shares"

    def __init__(self, config=None, *, item_features=None, user_features=None, device=None, progress=True, **kw):
        super().__init__(config, device=device, progress=progress, **kw)
        for features, kind in ((item_features, "item"), (user_features, "user")):
            if features is not None and (not isinstance(features, Features) or features.kind != kind):
                raise ValueError(f"{kind}_features must be {kind} Features (recsys_tutorial.data.features), or None")
        self.item_features, self.user_features = item_features, user_features

    def _init_kwargs(self) -> dict:
        return {"item_features": self.item_features, "user_features": self.user_features}

    @property
    def uses_context(self) -> bool:
        return self.config.use_context and super().uses_context

    def fit(self, train: pd.DataFrame, n_users: int, n_items: int, n_contexts: int, valid=None):
        """Train on encoded ``train`` (with the config's context column unless ``use_context`` is False)."""
        self._check_features(n_users, n_items)
        if self.config.use_context:
            for frame, name in ((train, "train"), (valid, "valid")):
                if frame is not None and len(frame) and self.config.context not in frame:
                    raise ValueError(f"{name} has no {self.config.context!r} column: add one with "
                                     "recsys_tutorial.data.add_context, or set use_context=False")  # fmt: skip
                if frame is not None and len(frame):
                    check_ids(frame[self.config.context].to_numpy(), n_contexts, "context",
                              "Pass n_contexts larger than the context ids.")  # fmt: skip
        return self._fit_checked(train, n_users, n_items, int(n_contexts), valid)

    def _check_features(self, n_users: int, n_items: int) -> None:
        for features, n, kind in ((self.item_features, n_items, "item"), (self.user_features, n_users, "user")):
            if features is not None and len(features) != n:
                raise ValueError(f"{kind} features have {len(features)} rows but fit got n_{kind}s={n}: "
                                 f"build them from the same IdMap as the encoded frames")  # fmt: skip

    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> History:
        cfg = self.config
        generator = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)  # weight initialisation and dropout
        self.net_ = self._build_net(train).to(self.device)
        optimizer = torch.optim.Adam(self.net_.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        users, inputs, targets, contexts = self._training_windows(train)
        loss_fn = ce_loss if cfg.loss == "ce" else bce_loss
        self.set_history(train)

        def run_epoch(epoch: int) -> float:
            self.net_.train()
            total = 0.0
            for batch in minibatches(len(users), cfg.batch_size, generator):
                x, y, c = _trim(inputs[batch], targets[batch], contexts[batch])  # each (B, T')
                keep = torch.rand(self.n_items, generator=generator) >= cfg.id_dropout
                self.net_.id_keep.copy_(keep.to(self.device))
                q = self.net_(x.to(self.device), users[batch].to(self.device), c.to(self.device))  # (B, T', D)
                loss = loss_fn(self.net_, q, y.to(self.device), generator=generator)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            self.net_.id_keep.fill_(True)
            return total / len(users)

        history = run_epochs(
            run_epoch, cfg.epochs, self._ndcg_validator(valid), module=self.net_, patience=cfg.patience,
            desc="FeatureTransformer", progress=self.progress, metric="NDCG@10",
        )  # fmt: skip
        self.net_.eval()
        self.set_history(train if valid is None else pd.concat([train, valid]))
        return history

    def _build_net(self, train: pd.DataFrame) -> FeatureTransformerNet:
        cfg = self.config
        n_contexts = (self.n_contexts or 1) if cfg.use_context else 1
        item_features = self.item_features if cfg.use_item_features else None
        user_features = self.user_features if cfg.use_user_features else None
        net = FeatureTransformerNet(self.n_items, n_contexts, cfg, item_features, user_features)
        net.known.copy_(torch.from_numpy(np.bincount(train["item"].to_numpy(), minlength=self.n_items) > 0))
        if n_contexts > 1:
            counts = np.bincount(train[cfg.context].to_numpy(), minlength=n_contexts)
            net.context_share.copy_(torch.from_numpy(counts / counts.sum()))
        return net

    def _sequences(self, frame: pd.DataFrame) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Each user's items and contexts in time order (the split's ``order`` column when there is one)."""
        df = frame.sort_values(["user", "order"], kind="stable") if "order" in frame else chronological(frame)
        bounds = np.cumsum(np.bincount(df["user"].to_numpy(), minlength=self.n_users))[:-1]
        ctx = df[self.config.context].to_numpy() if self.config.context in df else np.zeros(len(df), dtype=np.int64)
        return np.split(df["item"].to_numpy(), bounds), np.split(ctx, bounds)

    def _training_windows(self, train: pd.DataFrame):
        """Inputs BOS, s_1..s_{n-1}, targets s_1..s_n and their contexts, in windows of T: each (N, T).

        A history longer than T gives several windows, newest first; only the first carries BOS.
        """
        T, rows = self.config.max_len, ([], [], [], [])
        for u, (s, c) in enumerate(zip(*self._sequences(train), strict=True)):
            x = np.concatenate([[self.n_items], s])  # BOS is item index n_items, token n_items + 1
            for end in range(len(s), 0, -T):
                start = max(0, end - T)
                for out, value in zip(rows, (u, x[start:end], x[start + 1 : end + 1], c[start:end]), strict=True):
                    out.append(value)
        users, inputs, targets, contexts = rows
        return torch.tensor(users), left_pad(inputs, T), left_pad(targets, T), left_pad(contexts, T, offset=0)

    def set_history(self, interactions: pd.DataFrame) -> FeatureTransformer:
        """Use these interactions (encoded, with timestamps) as every user's history and seen items."""
        self._check_frame(interactions, "interactions")
        items, _ = self._sequences(interactions)
        with_bos = [np.concatenate([[self.n_items], s]) for s in items]  # BOS first: users without history too
        self.tokens_ = left_pad(with_bos, self.config.max_len)  # (n_users, T)
        return self.set_seen(interactions)

    def _score(self, users: torch.Tensor, contexts: torch.Tensor | None) -> torch.Tensor:
        training = self.net_.training
        self.net_.eval()
        tokens = _trim(self.tokens_[users.cpu()])[0].to(self.device)  # (B, T')
        ctx = None if contexts is None else contexts[:, None].expand(-1, tokens.shape[1])  # (B, T')
        scores = self.net_.logits(self.net_(tokens, users, ctx)[:, -1])  # (B, n_items) from the last position
        self.net_.train(training)
        return scores


def _trim(*batches: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Drop the leading columns that are padding in every row of the first batch (left padding: a prefix)."""
    used = (batches[0] != PAD).any(dim=0).nonzero()
    start = int(used[0]) if len(used) else batches[0].shape[1] - 1
    return tuple(b[:, start:] for b in batches)
