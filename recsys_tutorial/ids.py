"""The one id-range check of the series: every user, item, context or token id is validated here, at the boundary.

An out-of-range id reaching ``torch.nn.Embedding`` or an index on the GPU is a device-side assert with no
useful message; checked here first, it is a ``ValueError`` that names the id and the valid range.
"""

from __future__ import annotations

__all__ = ["check_ids"]


def check_ids(values, n: int, name: str, fix: str = "") -> None:
    """Raise ``ValueError`` unless every id in ``values`` lies in ``0..n-1``.

    ``values`` may be a NumPy array, a torch tensor or a sequence. The message names the first bad
    extreme and the range, e.g. ``"user id 943 is out of range: the model knows 943 users (0..942)"``,
    followed by ``fix`` when given.
    """
    if hasattr(values, "numel"):  # torch tensor (any device): two reductions, no copy to the host
        if values.numel() == 0:
            return
        lo, hi = int(values.min()), int(values.max())
    else:
        import numpy as np

        values = np.asarray(values)
        if values.size == 0:
            return
        lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= n:
        bad = hi if hi >= n else lo
        message = f"{name} id {bad} is out of range: the model knows {n} {name}s (0..{n - 1})"
        raise ValueError(f"{message}. {fix}" if fix else message)
