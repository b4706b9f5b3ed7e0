"""Classifier heads that turn a backbone feature map ``[B, C, h, w]`` into logits ``[B, K]``.

Every method in attnbook is a head on the same backbones; this module holds the plain one.
"""
from __future__ import annotations

import torch
from torch import nn


class GAPHead(nn.Module):
    """Global average pooling → dropout → linear: the standard CNN head (and CAM's premise).

    ``fc`` is exposed by name because CAM (Zhou et al. 2016) reads its weights.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # [B, C, h, w] -> [B, K]
        pooled = features.mean(dim=(2, 3))
        return self.fc(self.dropout(pooled))
