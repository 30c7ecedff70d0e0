"""Left-padded sequence batches for sequential recommenders.

Sequence models reserve token 0 for padding, so item index ``i`` becomes token ``i + 1``. Histories
are *left*-padded: the most recent item always sits in the last position, which is where a causal
model reads its prediction for "what comes next".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["PAD", "left_pad"]

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
