r"""Tucker-style embedding model: a core tensor weighs every (user, item, context) factor interaction.

.. math:: \hat x_{uic} = \mu + b_u + b_i + \sum_{a,b,d} G_{abd}\, U_{ua}\, V_{ib}\, C_{cd}
          = \mu + b_u + b_i + (\mathcal{G} \times_1 U_u \times_2 V_i \times_3 C_c)

This is the "multiverse" recommender of Karatzoglou et al. [1]_, trained on observed entries only
(as :class:`~.cp.CPModel`). Each mode has its own rank, so the context mode can stay small. CP is
the special case of a superdiagonal core (:math:`G_{abd} = 1` iff :math:`a = b = d`). The core starts
so that the model is matrix factorisation, :math:`G_{abd} = \delta_{ab} / R_C` with :math:`C = 1`.

References
----------
.. [1] A. Karatzoglou, X. Amatriain, L. Baltrunas and N. Oliver, "Multiverse Recommendation:
   N-dimensional Tensor Factorization for Context-aware Collaborative Filtering", RecSys 2010.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .cp import ContextFactorModel, TensorModelConfig

__all__ = ["TuckerConfig", "TuckerModel"]


@dataclass(frozen=True)
class TuckerConfig(TensorModelConfig):
    """:class:`~.cp.TensorModelConfig` plus the core's context dimension."""

    context_rank: int | None = None  # R_C; None: n_contexts (no compression of the context mode)


class _TuckerNet(nn.Module):
    """Factors U (n_users, R), V (n_items, R), C (n_contexts, R_C), core G (R, R, R_C) and biases."""

    def __init__(self, n_users, n_items, n_contexts, cfg: TuckerConfig, generator):
        super().__init__()
        r, r_c, std = cfg.rank, cfg.context_rank or n_contexts, cfg.init_std
        self.U = nn.Parameter(torch.randn(n_users, r, generator=generator) * std)
        self.V = nn.Parameter(torch.randn(n_items, r, generator=generator) * std)
        self.C = nn.Parameter(1 + 0.01 * torch.randn(n_contexts, r_c, generator=generator))
        core = torch.eye(r)[:, :, None].expand(r, r, r_c) / r_c  # MF at the start: sum_d G_abd C_cd = delta_ab
        self.G = nn.Parameter(core + 0.01 * torch.randn(r, r, r_c, generator=generator))
        self.b_u, self.b_i = nn.Parameter(torch.zeros(n_users)), nn.Parameter(torch.zeros(n_items))
        self.mu = nn.Parameter(torch.zeros(()))

    def query(self, users, contexts) -> torch.Tensor:
        return torch.einsum("na,abd,nd->nb", self.U[users], self.G, self.C[contexts])  # (B, R)


class TuckerModel(ContextFactorModel):
    r"""Tucker recommender: ``fit(train, n_users, n_items, n_contexts)``, ``score(users, contexts)``.

    ``config.context_rank`` (default: ``n_contexts``) sets the core's context dimension; the user and item
    ranks are ``config.rank``. :meth:`tucker_tensor` returns ``(G, [U, V, C])`` for ``tl.tucker_to_tensor``.
    """

    Config = TuckerConfig
    _net_class = _TuckerNet

    def tucker_tensor(self):
        """``(G, [U, V, C])``, the bias-free interaction tensor's Tucker form."""
        net = self.net_
        return net.G.detach(), [net.U.detach(), net.V.detach(), net.C.detach()]
