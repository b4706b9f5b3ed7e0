"""The CIFAR ResNets of He et al. (CVPR 2016, §4.2): ResNet-20/32/44/56/110 — the paper's CIFAR-100 network of
Sharpen Focus (Wang et al. ICCV 2019, Tables 1–2: ResNet-110, 1.7 M parameters).

torchvision has none, so it is written here: a 3×3 conv (16 channels) + BN + ReLU, then three stages of ``n``
basic blocks (two 3×3 conv-BN, identity shortcut) at 16, 32 and 64 channels (maps 32², 16², 8² for a 32 px
image; the first block of stages 2 and 3 has stride 2), global average pooling and a linear layer:
``depth = 6n + 2`` weighted layers (ResNet-110: n = 18, 54 blocks).

* **Shortcuts** where the shape changes: ``"A"`` (default, the paper's CIFAR choice, §4.2: "identity shortcuts
  in all cases", parameter-free) subsamples by 2 and zero-pads the new channels; ``"B"`` uses a 1×1 conv + BN
  projection (torchvision's ImageNet ResNets).
* **Initialisation** as He et al.: Kaiming-normal (fan-out) convolutions, BN γ = 1, β = 0.
* **Stages** are named ``stem``, ``layer1``, ``layer2``, ``layer3`` and the network is an
  :class:`attnbook.models.backbones.Backbone` (its first step is the book's fixed normalisation, ImageNet
  statistics — the paper subtracts the per-pixel mean; with BN after the first conv the two differ by a fixed
  affine map of the input), so ``Backbone.features``, Grad-CAM hooks (``"layer2"``) and
  :class:`~attnbook.models.backbones.Classifier` work as for the torchvision backbones. Sharpen Focus's inner
  layer ("the last conv layer of the penultimate block") is ``layer2``, its last layer ``layer3``.
* ``widths`` scales the three stages (the chapter's CPU profiles use narrower, shallower ResNets of the same
  shape, e.g. ResNet-8 with 8/16/32 channels).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from attnbook.models.backbones import Backbone, Classifier
from attnbook.models.heads import GAPHead

SHORTCUTS = ("A", "B")
STAGES = ("stem", "layer1", "layer2", "layer3")
PAPER_WIDTHS = (16, 32, 64)


def blocks_per_stage(depth: int) -> int:
    """``n`` of ``depth = 6n + 2`` (ResNet-110: 18); any other depth is a ``ValueError``."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has depth 6n + 2 with n ≥ 1 (8, 14, 20, 32, 44, 56, 110 …), got {depth!r}")
    return (depth - 2) // 6


class PadShortcut(nn.Module):
    """Option A (He et al. §4.2): ``x[:, :, ::2, ::2]`` zero-padded from ``in_channels`` to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option A pads channels, it cannot reduce {in_channels} to {out_channels}")
        self.extra, self.stride = out_channels - in_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C + extra, H/stride, W/stride]``."""
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x


class BasicBlock(nn.Module):
    """``ReLU(BN(conv3×3(ReLU(BN(conv3×3(x))))) + shortcut(x))`` (He et al. 2016, Fig. 2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, shortcut: str = "A") -> None:
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = (PadShortcut(in_channels, out_channels, stride) if shortcut == "A" else nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in, H, W] -> [B, C_out, H/stride, W/stride]`` (no in-place ops: hooked maps stay intact)."""
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def cifar_resnet(depth: int = 110, *, widths: tuple[int, int, int] = PAPER_WIDTHS, shortcut: str = "A") -> Backbone:
    """The trunk of a CIFAR ResNet (no pooling, no classifier): a :class:`Backbone` with stages ``stem``,
    ``layer1`` … ``layer3``; ``[B, 3, H, W] -> [B, widths[2], H/4, W/4]``. Paper: He et al. 2016 §4.2."""
    n = blocks_per_stage(depth)
    if len(widths) != 3 or any(not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"widths must be three positive channel counts, got {widths!r}")
    stages: OrderedDict[str, nn.Module] = OrderedDict(stem=nn.Sequential(OrderedDict(
        conv=nn.Conv2d(3, widths[0], 3, padding=1, bias=False), bn=nn.BatchNorm2d(widths[0]), relu=nn.ReLU())))
    channels = widths[0]
    for k, width in enumerate(widths):
        blocks = [BasicBlock(channels if b == 0 else width, width, stride=2 if (k > 0 and b == 0) else 1,
                             shortcut=shortcut) for b in range(n)]
        stages[f"layer{k + 1}"] = nn.Sequential(*blocks)
        channels = width
    backbone = Backbone(f"cifar_resnet{depth}", stages)
    for m in backbone.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return backbone


def cifar_resnet_classifier(depth: int = 110, num_classes: int = 100, *, widths: tuple[int, int, int] = PAPER_WIDTHS,
                            shortcut: str = "A") -> Classifier:
    """:func:`cifar_resnet` + global average pooling + linear (``GAPHead``): He et al.'s CIFAR network
    (ResNet-110 on CIFAR-100: 1.7 M parameters, as Sharpen Focus's Table 2 lists)."""
    backbone = cifar_resnet(depth, widths=widths, shortcut=shortcut)
    return Classifier(backbone, GAPHead(backbone.out_channels, num_classes))
