"""BR-NPA's RGB rendering of ranked attention maps: maps 1, 2, 3 → red, green, blue, scaled by feature norm.

Paper: BR-NPA (Gomez et al.) §4.1: "The red, green, and blue channels of each pixel are used to
represent its contribution w.r.t. the 1st, 2nd and 3rd attention maps. The three channels are also
multiplied by the norm of the corresponding feature vector, to make salient pixels brighter."
Chapter: nbs/05_brnpa.ipynb (Figures 1, 3 and 5 re-made).

Here channel k of a position is ``w^(k)_i · ‖f_i‖`` — map k times the norm of the feature vector at
that position — and each image is divided by its maximum over all channels and positions, so the
three maps keep their relative brightness (a map over low-norm vectors stays dark, as the paper's
invisible blue map on birds, §4.4). A pixel attended by maps 1 and 2 is yellow, by 1 and 3 magenta.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from attnbook.explain.postprocess import upsample
from attnbook.viz.plots import figure_png, to_numpy_image

MAX_MAPS = 3  # one per colour channel


def rgb_attention(maps: torch.Tensor, norms: torch.Tensor, size: int | tuple[int, int] | None = None,
                  eps: float = 1e-12) -> torch.Tensor:
    """Ranked maps ``[B, N, h, w]`` (N ≤ 3) and feature norms ``[B, h, w]`` → RGB images ``[B, 3, H, W]``.

    Channel k = map k × norm (missing channels stay 0), resized bilinearly to ``size`` if given, then
    divided by the image's maximum over channels and positions (an all-zero image stays black).
    """
    if maps.ndim != 4 or not 1 <= maps.shape[1] <= MAX_MAPS:
        raise ValueError(f"maps must be [B, N, h, w] with 1 ≤ N ≤ {MAX_MAPS} (one map per colour), "
                         f"got shape {tuple(maps.shape)}")
    if norms.shape != (maps.shape[0], *maps.shape[2:]):
        raise ValueError(f"norms must be [B, h, w] = {[maps.shape[0], *maps.shape[2:]]} to match the maps, "
                         f"got {list(norms.shape)}")
    if (maps < 0).any() or (norms < 0).any():
        raise ValueError("maps and norms must be non-negative (attention weights and vector norms)")
    weighted = maps.detach().float() * norms.detach().float()[:, None]  # [B, N, h, w]
    rgb = torch.cat([weighted, weighted.new_zeros(maps.shape[0], MAX_MAPS - maps.shape[1], *maps.shape[2:])], 1)
    if size is not None:
        rgb = upsample(rgb, size).clamp(min=0)  # [B, 3, H, W]
    peak = rgb.flatten(1).amax(dim=1).clamp(min=eps)  # [B]
    return rgb / peak[:, None, None, None]


def rgb_overlay(image: torch.Tensor, rgb: torch.Tensor, alpha: float = 0.75) -> np.ndarray:
    """Blend an RGB attention image ``[3, H, W]`` onto a dimmed input image ``[3, H, W]`` → ``[H, W, 3]``."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if rgb.shape != image.shape:
        raise ValueError(f"rgb {tuple(rgb.shape)} and image {tuple(image.shape)} must have the same shape; "
                         "pass size=image.shape[-2:] to rgb_attention")
    return (1 - alpha) * to_numpy_image(image) + alpha * to_numpy_image(rgb)


def rgb_panel_png(image: torch.Tensor, rgb: torch.Tensor, title: str, mask: torch.Tensor | None = None,
                  size: float = 2.6, dpi: int = 80) -> bytes:
    """One picture for a widget: :func:`rgb_overlay` with the object outlined (white); PNG bytes."""
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rgb_overlay(image, rgb))
    if mask is not None and mask.any():
        ax.contour(mask.float().cpu().numpy(), levels=[0.5], colors="white", linewidths=0.8)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    return figure_png(fig, dpi=dpi)


def picture_grid(rows: Sequence[Sequence[np.ndarray]], column_titles: Sequence[str], size: float = 1.6) -> Figure:
    """A grid of ready-made ``[H, W, 3]`` pictures: one row per image, one column per method."""
    if not rows or any(len(row) != len(column_titles) for row in rows):
        raise ValueError(f"rows must be a non-empty [images][{len(column_titles)} columns] grid of pictures")
    fig, axes = plt.subplots(len(rows), len(column_titles), figsize=(len(column_titles) * size, len(rows) * size),
                             squeeze=False)
    for i, row in enumerate(rows):
        for j, picture in enumerate(row):
            axes[i, j].imshow(np.clip(picture, 0, 1))
            axes[i, j].axis("off")
            if i == 0:
                axes[i, j].set_title(column_titles[j], fontsize=8)
    fig.tight_layout()
    return fig
