r"""Transformer building blocks for sequential recommenders: masked attention and pre-LayerNorm blocks.

.. math::  \operatorname{attn}(Q, K, V) = \operatorname{softmax}\Big(\frac{QK^\top}{\sqrt{d}} + M\Big) V

where the mask :math:`M` is :math:`-\infty` for keys in the future (causal) and for padding keys.
:class:`SequenceEncoder` stacks the blocks over input embeddings (B, T, D); :mod:`.sasrec` and the
feature-aware transformer put their own embeddings in front of it.

References
----------
.. [1] A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
.. [2] R. Xiong et al., "On Layer Normalization in the Transformer Architecture", ICML 2020.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..sequences import PAD

__all__ = ["attention_mask", "attention", "CausalSelfAttention", "Block", "SequenceEncoder"]


def attention_mask(tokens: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """Boolean (B, 1, T, T) mask, True where query t may attend to key s: s is not padding (and s <= t if causal).

    Each position may always attend to itself, so a padding query is never left with no key at all
    (its output is ignored anyway; a fully masked row would make softmax return NaN). ``causal=False``
    drops the causal part, only to show what goes wrong without it.
    """
    T = tokens.shape[1]
    real_key = (tokens != PAD)[:, None, None, :]  # (B, 1, 1, T)
    itself = torch.eye(T, dtype=torch.bool, device=tokens.device)  # (T, T)
    mask = real_key | itself  # (B, 1, T, T)
    if causal:
        mask = mask & torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()  # (T, T): s <= t
    return mask


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Scaled dot-product attention :math:`\operatorname{softmax}(QK^\top/\sqrt{d} + M)V`.

    Parameters
    ----------
    q, k, v : (B, H, T, d) tensors
    mask : boolean tensor broadcastable to (B, H, T, T); True = may attend.

    Returns
    -------
    out : (B, H, T, d) and weights : (B, H, T, T), each query's row summing to 1.
    Same result as ``torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)``.
    """
    logits = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, T, T)
    weights = logits.masked_fill(~mask, float("-inf")).softmax(dim=-1)  # (B, H, T, T)
    return weights @ v, weights  # (B, H, T, d)


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


class SequenceEncoder(nn.Module):
    """Learned recency positions, dropout, ``n_blocks`` masked blocks and a final LayerNorm: (B, T, D) -> (B, T, D).

    Positions are counted from the most recent item (0 = last), so extra left padding never moves a real
    item to another position embedding. Padding positions stay zero between blocks.
    """

    def __init__(self, dim: int, max_len: int, n_blocks: int, n_heads: int, dropout: float, causal: bool = True):
        super().__init__()
        self.max_len, self.causal = max_len, causal
        self.position = nn.Embedding(max_len, dim)  # 0 = most recent item
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, n_heads, dropout) for _ in range(n_blocks))
        self.ln = nn.LayerNorm(dim)
        nn.init.normal_(self.position.weight, std=dim**-0.5)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``x`` (B, T, D) input embeddings of ``tokens`` (B, T) (0 = padding) -> hidden states (B, T, D)."""
        T = tokens.shape[1]
        if T > self.max_len:
            raise ValueError(f"sequences of length {T} exceed max_len={self.max_len}: left_pad them first")
        recency = torch.arange(T - 1, -1, -1, device=tokens.device)  # (T,) 0 = last position
        real = (tokens != PAD).unsqueeze(-1)  # (B, T, 1)
        x = self.drop((x + self.position(recency)) * real)  # (B, T, D)
        mask = attention_mask(tokens, self.causal)  # (B, 1, T, T)
        for block in self.blocks:
            x = block(x, mask) * real  # (B, T, D) padding stays zero between blocks
        return self.ln(x)  # (B, T, D)
