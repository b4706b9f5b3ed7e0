"""Classifier heads that turn a backbone feature map ``[B, C, h, w]`` into logits ``[B, K]``.

Every method in attnbook is a head on the same backbones and answers the same ``attend`` call
(:mod:`attnbook.methods.base`); this module holds the plain one.
"""
from __future__ import annotations

import torch
from torch import nn

from attnbook.methods.base import Attention, check_features, uniform_maps


class GAPHead(nn.Module):
    """Global average pooling → dropout → linear: the standard CNN head (and CAM's premise).

    ``fc`` is exposed by name because CAM (Zhou et al. 2016) reads its weights.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, C, h, w] -> [B, K]`` logits of the average-pooled features."""
        pooled = features.mean(dim=(2, 3))
        return self.fc(self.dropout(pooled))

    def attend(self, features: torch.Tensor) -> Attention:
        """Logits and GAP's pooling weights: one uniform map ``[B, 1, h, w]`` named ``"uniform"``."""
        check_features(features, self.fc.in_features)
        return Attention(self(features), uniform_maps(features), ("uniform",))
