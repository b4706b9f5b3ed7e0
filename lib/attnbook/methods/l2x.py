"""L2X-F: learning to explain (Chen et al. 2018) at the feature level.

Paper: BLA §3.3 ("Fixed size explanations: L2X-F"), §4.2 (baseline).
Chapter: nbs/04_bla.ipynb. The pooling machinery it shares with BLA: :mod:`attnbook.methods.pooling`.

L2X-F (this module). A selector scores each position, ``s_i = uᵀ f_i`` (1×1 conv, one filter).
Training draws k relaxed one-hot samples by the Gumbel-softmax trick (Jang et al. 2016) and combines
them by an element-wise max (a relaxed k-hot mask; Chen et al. 2018, as the BLA authors' code does)::

    w = max_{j<k} softmax(τ · (s + G_j)),     G_j ~ Gumbel(0, 1) i.i.d. over positions

Test time keeps exactly the k highest-scoring positions (k-hot δ), pooled uniformly. Defaults follow
the BLA authors' code: k = 8, τ = 0.1. **τ multiplies** there (Jang et al. and Chen et al. divide by
their temperature, so τ here is the reciprocal of theirs: Chen et al.'s τ = 0.1 is ``tau=10`` here).
The soft map used to explain is ``softmax(s)``, the distribution the Gumbel draws sample from.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from attnbook.methods.pooling import SelectionPoolingHead


class L2XFeatureHead(SelectionPoolingHead):
    """L2X-F: k Gumbel-softmax draws (max-combined) in training, exactly the top-k positions at test time.

    Paper: BLA §3.3, §4.2 (after Chen et al. 2018). ``k`` = explanation size (default 8, the authors'
    code); ``tau`` multiplies ``s + G`` (default 0.1, the authors' code; see the module docstring).
    """

    def __init__(
        self, in_channels: int, num_classes: int, dropout: float | None = None, *,
        k: int = 8, tau: float = 0.1, **kwargs,
    ) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k (the explanation size) must be a positive int, got {k!r}")
        if tau <= 0:
            raise ValueError(f"tau must be > 0 (it multiplies the Gumbel-perturbed scores), got {tau}")
        super().__init__(in_channels, num_classes, dropout, **kwargs)
        self.k = k
        self.tau = tau

    def _check_k(self, scores: torch.Tensor) -> None:
        n = scores.shape[1] * scores.shape[2]
        if self.k > n:
            raise ValueError(f"k={self.k} exceeds the {n} positions of the feature map; choose k ≤ {n}")

    def soft_weights(self, scores: torch.Tensor) -> torch.Tensor:
        """Relaxed k-hot mask ``max_j softmax(τ·(s + G_j))`` (BLA §3.3). ``[B,h,w] -> [B,h,w]``."""
        self._check_k(scores)
        flat = scores.flatten(1)  # [B, n]
        draws = flat.unsqueeze(1).expand(-1, self.k, -1).contiguous()  # [B, k, n]
        # F.gumbel_softmax divides by its tau: 1/τ gives softmax(τ·(s + G)) per draw.
        relaxed = F.gumbel_softmax(draws, tau=1.0 / self.tau, dim=-1)  # [B, k, n]
        return relaxed.amax(dim=1).view_as(scores)  # element-wise max over the k draws

    def hard_mask(self, scores: torch.Tensor) -> torch.Tensor:
        """Exactly the k highest-scoring positions (BLA §3.3, test time). ``[B,h,w] -> bool [B,h,w]``."""
        self._check_k(scores)
        flat = scores.flatten(1)  # [B, n]
        top = flat.topk(self.k, dim=1).indices  # [B, k]; ties broken by topk, so exactly k
        mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, top, True)
        return mask.view_as(scores)

    def soft_map(self, scores: torch.Tensor) -> torch.Tensor:
        """``softmax(s)`` over positions, the distribution the Gumbel draws sample from. ``[B,h,w] -> [B,h,w]``."""
        return scores.flatten(1).softmax(dim=1).view_as(scores)
