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

import textwrap
from collections.abc import Sequence

import matplotlib
import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from attnbook.explain.postprocess import upsample
from attnbook.viz.plots import PANEL_WIDTH, figure_png, to_numpy_image
from attnbook.viz.style import HEAT, MIN_FONT, PAGE_WIDTH, RC, colorbar, house_style

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


RGB_LEGEND = (("map 1", "red"), ("map 2", "green"), ("map 3", "blue"))


def _rgb_legend(fig: Figure, **kwargs: object) -> None:
    handles = [plt.Line2D([], [], marker="s", ls="", ms=9, color=color, label=label) for label, color in RGB_LEGEND]
    fig.legend(handles=handles, frameon=False, **kwargs)


def rgb_panel_png(image: torch.Tensor, rgb: torch.Tensor, title: str, mask: torch.Tensor | None = None,
                  size: float = PANEL_WIDTH, dpi: int = 100) -> bytes:
    """One widget view: the input (object outlined) beside :func:`rgb_overlay`, with a legend of the three
    colours (map 1/2/3 = red/green/blue); PNG bytes, ≈ 440 px wide."""
    with matplotlib.rc_context(RC):
        fig, axes = plt.subplots(1, 2, figsize=(size, size / 2 + 0.35), layout="constrained")
        axes[0].imshow(to_numpy_image(image))
        axes[0].set_title("input")
        axes[1].imshow(rgb_overlay(image, rgb))
        axes[1].set_title(title)
        for ax in axes:
            if mask is not None and mask.any():
                ax.contour(mask.float().cpu().numpy(), levels=[0.5], colors="white", linewidths=1.0)
            ax.axis("off")
        _rgb_legend(fig, loc="outside right center", ncols=1, handletextpad=0.2)
        return figure_png(fig, dpi=dpi)


@house_style
def picture_grid(rows: Sequence[Sequence[np.ndarray]], column_titles: Sequence[str], size: float = 1.3,
                 heat_columns: int = 0, rgb_columns: int = 0) -> Figure:
    """A grid of ready-made ``[H, W, 3]`` pictures: one row per image, one column per method, at most
    :data:`~attnbook.viz.style.PAGE_WIDTH` wide. ``heat_columns`` columns after the first are heat-map overlays
    (:data:`~attnbook.viz.style.HEAT`, min–max normalised): one shared colour bar; the last ``rgb_columns``
    are RGB maps: a legend of the three colours."""
    if not rows or any(len(row) != len(column_titles) for row in rows):
        raise ValueError(f"rows must be a non-empty [images][{len(column_titles)} columns] grid of pictures")
    cols = len(column_titles)
    extra = 0.8 if heat_columns else 0.0
    size = min(size, (PAGE_WIDTH - extra) / cols)
    chars = max(6, int(size * 100 / 8))  # ~8 px per 9 pt character at 100 dpi, margins included: wrap to the panel
    fig, axes = plt.subplots(len(rows), cols, figsize=(cols * size + extra, len(rows) * size + 0.9),
                             squeeze=False, layout="constrained")
    for i, row in enumerate(rows):
        for j, picture in enumerate(row):
            axes[i, j].imshow(np.clip(picture, 0, 1))
            axes[i, j].axis("off")
            if i == 0:
                axes[i, j].set_title(textwrap.fill(column_titles[j], chars), fontsize=MIN_FONT)
    if heat_columns:
        colorbar(fig, HEAT, axes[:, 1:1 + heat_columns].ravel().tolist(), "attention (per map)", shrink=0.6,
                 aspect=25)
    if rgb_columns:
        _rgb_legend(fig, loc="outside lower center", ncols=3, title="RGB columns")
    return fig
