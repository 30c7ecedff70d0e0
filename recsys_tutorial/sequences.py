"""Left-padded sequence batches for sequential recommenders.

Sequence models reserve token 0 for padding, so item index ``i`` becomes token ``i + 1``. Histories
are *left*-padded: the most recent item always sits in the last position, which is where a causal
model reads its prediction for "what comes next".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["PAD", "left_pad", "next_item_batches"]

PAD = 0


def left_pad(sequences: Sequence[np.ndarray], max_len: int, offset: int = 1) -> torch.Tensor:
    """Stack sequences into a (B, T) long tensor, keeping each one's last ``max_len`` items, padded on the left.

    ``offset`` is added to every item index so that 0 stays free for padding.

    >>> left_pad([np.array([4, 5]), np.array([1, 2, 3])], max_len=3)
    tensor([[0, 5, 6],
            [2, 3, 4]])
    """
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    out = torch.full((len(sequences), max_len), PAD, dtype=torch.long)  # (B, T)
    for row, seq in enumerate(sequences):
        tail = np.asarray(seq[-max_len:], dtype=np.int64)
        if tail.size and tail.min() < 0:
            raise ValueError(f"sequence {row} holds a negative item index {tail.min()}")
        if tail.size:
            out[row, max_len - tail.size :] = torch.from_numpy(tail + offset)
    return out


def next_item_batches(sequences: Sequence[np.ndarray], max_len: int, batch_size: int, seed: int | None = None):
    """Yield ``(users, inputs, targets)`` for next-item training, each (B,) / (B, T) / (B, T).

    ``inputs`` is a history without its last item and ``targets`` the same history shifted by one,
    both left-padded with 0, so position t is trained to predict the item at t + 1. Users with fewer
    than two items are skipped. Shuffled when ``seed`` is given.
    """
    users = np.array([u for u, s in enumerate(sequences) if len(s) >= 2])
    if seed is not None:
        users = np.random.default_rng(seed).permutation(users)
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        inputs = left_pad([sequences[u][:-1] for u in batch], max_len)  # (B, T)
        targets = left_pad([sequences[u][1:] for u in batch], max_len)  # (B, T)
        yield torch.from_numpy(batch), inputs, targets
