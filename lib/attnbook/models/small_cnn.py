"""The small MNIST CNN of the BLA paper's 3-vs-8 experiment.

Paper: BLA §4.1 (imitating Chen et al. 2018's L2X MNIST network). Three 5×5 convolutions with 8, 16
and 16 filters, each followed by ReLU; 2×2 max-pooling after the first two; then the head.

* Padding is ``same`` (2): with unpadded convolutions a 28×28 input shrinks to 24 → 12 → 8 → 4 → 0,
  so the stack only works padded, giving a 7×7 map — the n = 49 behind the paper's γ = 1/49.
* The head: the paper ends in "a dense linear layer with a sigmoid output unit" and the BLA module
  replaces the head's pooling (§3), so the base head is :class:`GAPHead` with **one** output (a logit,
  ``[B, 1]``), trained with ``BCEWithLogitsLoss`` (sigmoid + the paper's cross-entropy); a positive
  logit predicts the second class (8). BLA's pooling is class-agnostic (one q map per image), so any
  explanation head maps onto it unchanged: it pools the 16-channel map and its ``fc`` gives the one logit.
"""
from __future__ import annotations

import torch
from torch import nn

from attnbook.models.heads import GAPHead


def _conv_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """5×5 convolution with ``same`` padding, then ReLU (BLA §4.1)."""
    return [nn.Conv2d(in_channels, out_channels, kernel_size=5, padding=2), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """conv5×5(8)-pool-conv5×5(16)-pool-conv5×5(16) trunk (``features``) + a replaceable ``head``.

    Paper: BLA §4.1. ``features(x)`` is the last conv map ``[B, 16, H/4, W/4]`` (7×7 for MNIST);
    ``head`` defaults to ``GAPHead(16, num_outputs, dropout)``; pass any head on that map (e.g.
    ``attnbook.methods.bla.build_head("bla", SmallCNN.feature_channels, 1)``) to replace it.
    """

    feature_channels = 16

    def __init__(
        self, in_channels: int = 1, num_outputs: int = 1, dropout: float = 0.0, head: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.features = nn.Sequential(
            *_conv_relu(in_channels, 8), nn.MaxPool2d(2),
            *_conv_relu(8, 16), nn.MaxPool2d(2),
            *_conv_relu(16, self.feature_channels),
        )
        self.head = GAPHead(self.feature_channels, num_outputs, dropout) if head is None else head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, in_channels, H, W] -> [B, num_outputs]``."""
        if images.ndim != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"images must be [B, {self.in_channels}, H, W], got shape {tuple(images.shape)}; "
                "set in_channels to match (1 for MNIST, 3 for RGB records)"
            )
        return self.head(self.features(images))  # [B, 16, H/4, W/4] -> [B, num_outputs]
