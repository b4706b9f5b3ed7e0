"""Post-processing shared by every explainer and metric: resize maps, normalise them per sample.

Conventions follow the oracles the tests compare against: bilinear resizing with
``align_corners=False`` (captum's ``LayerAttribution.interpolate``, OpenCV's ``cv2.resize``) and
per-sample min-max normalisation ``(m - min) / (max - min + eps)`` (pytorch-grad-cam's
``scale_cam_image``, eps = 1e-7).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_maps(maps: torch.Tensor, name: str = "maps") -> None:
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(maps).__name__}")
    if maps.ndim not in (3, 4):
        raise ValueError(
            f"{name} must be [B, h, w] or [B, C, h, w], got shape {tuple(maps.shape)}; "
            "add a batch dimension with maps.unsqueeze(0) for a single map"
        )


def upsample(maps: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize ``[B, h, w]`` (or ``[B, C, h, w]``) maps to ``size`` bilinearly (align_corners=False).

    Despite the name it also downsamples (without antialiasing, like ``cv2.resize`` with
    ``INTER_LINEAR``). Differentiable; keeps the input's dtype.
    """
    _check_maps(maps)
    size = (size, size) if isinstance(size, int) else tuple(size)
    if len(size) != 2:
        raise ValueError(f"size must be an int or (H, W), got {size}")
    if tuple(maps.shape[-2:]) == size:
        return maps
    squeeze = maps.ndim == 3
    x = maps.unsqueeze(1) if squeeze else maps  # [B, C, h, w]
    out = F.interpolate(x, size=size, mode="bilinear", align_corners=False)  # [B, C, H, W]
    return out.squeeze(1) if squeeze else out


def normalize(maps: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Per-sample min-max normalisation to [0, 1]: ``(m - min) / (max - min + eps)``.

    Each sample (and, for ``[B, C, h, w]``, each channel) is scaled independently; a constant map
    becomes all zeros. ``eps`` keeps the division finite and matches pytorch-grad-cam's 1e-7.
    """
    _check_maps(maps)
    flat = maps.flatten(-2)  # [..., h*w]
    shifted = flat - flat.min(dim=-1, keepdim=True).values
    out = shifted / (shifted.max(dim=-1, keepdim=True).values + eps)
    return out.view_as(maps)
