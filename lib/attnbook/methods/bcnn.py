"""The B-CNN attention baseline of the BR-NPA paper (its variant of Hu et al.'s bilinear attention).

Paper: BR-NPA (Gomez et al.) §4.1 "To adapt B-CNN [21] for visualization"; App. B.4 (efficiency).
Chapter: nbs/05_brnpa.ipynb.

features f [B, C, h, w] → ResNet BasicBlock(C, C) → 1×1 conv (C → C') → ReLU = C' attention maps
m; each map multiplies the feature volume, the products are mean-pooled over positions, and the C'
vectors are concatenated → linear (the "softmax layer")::

    v_k = mean_i ( m_k,i · f_i ),   logits = W [v_1; …; v_C'] + b

C' defaults to 3: the paper visualises "the 3 attention maps obtained with BR-NPA or B-CNN", and the
authors' code uses ``nb_parts`` (3) maps. That code's 1×1 conv actually outputs C' + 1 channels and
discards the last one; the discarded channel never reaches the loss, so it is left out here.

``materialize=True`` (default) computes the product as the paper describes it, materialising the
``[B, C', C, h, w]`` tensor that Appendix B.4 blames for B-CNN's memory and time cost. ``False``
computes the same numbers with one einsum contraction (``bkhw,bchw->bkc``) that never builds it —
the cost the paper measures belongs to the straightforward implementation, not to the maths.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from attnbook.methods.base import Attention, check_features


class BCNNHead(nn.Module):
    """Attention maps from a conv module, bilinear pooling, linear classifier. Paper: BR-NPA §4.1.

    ``forward`` returns the logits; :meth:`attend` an :class:`~attnbook.methods.base.Attention` with the C'
    non-negative maps (named "channel 1" …: unranked) and ``extras["vectors"]`` [B, C', C].
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        n_maps: int = 3,
        dropout: float = 0.0,
        materialize: bool = True,
    ) -> None:
        super().__init__()
        if n_maps < 1:
            raise ValueError(f"n_maps must be at least 1, got {n_maps}")
        self.in_channels, self.n_maps, self.materialize = in_channels, n_maps, materialize
        self.attention = nn.Sequential(
            BasicBlock(in_channels, in_channels),  # 2×(3×3 conv, BN), ReLU, residual, ReLU
            nn.Conv2d(in_channels, n_maps, kernel_size=1, bias=False),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(n_maps * in_channels, num_classes)

    def attend(self, features: torch.Tensor) -> Attention:
        """Maps m, vectors ``v_k = mean_i(m_k,i · f_i)``, logits (BR-NPA §4.1). ``[B,C,h,w] -> maps [B,C',h,w]``."""
        check_features(features, self.in_channels)
        maps = self.attention(features)  # [B, C', h, w]
        if self.materialize:
            product = maps.unsqueeze(2) * features.unsqueeze(1)  # [B, C', C, h, w]
            vectors = product.mean(dim=(3, 4))  # [B, C', C]
        else:
            positions = maps.shape[2] * maps.shape[3]
            vectors = torch.einsum("bkhw,bchw->bkc", maps, features) / positions  # [B, C', C]
        logits = self.fc(self.dropout(vectors.flatten(1)))  # [B, K]
        names = tuple(f"channel {k + 1}" for k in range(self.n_maps))
        return Attention(logits, maps, names, {"vectors": vectors})

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, C, h, w] -> [B, K]`` logits (those of :meth:`attend`)."""
        return self.attend(features).logits
