"""Matplotlib helpers shared by the chapters: overlays of attention on images and sample grids."""
from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from attnbook.viz.style import HEAT, MIN_FONT, PAGE_WIDTH, RC, colorbar, house_style


def to_numpy_image(image: torch.Tensor) -> np.ndarray:
    """``[3,H,W]`` float in [0,1] → ``[H,W,3]`` numpy for imshow."""
    return image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def overlay(image: torch.Tensor, heat: torch.Tensor, alpha: float = 0.5, cmap: str = HEAT) -> np.ndarray:
    """Blend a heat map (any scale; min-max normalised here) onto an image; returns ``[H,W,3]``."""
    heat = heat.detach().float().cpu()
    if heat.shape != image.shape[-2:]:
        heat = torch.nn.functional.interpolate(heat[None, None], size=image.shape[-2:], mode="bilinear",
                                               align_corners=False)[0, 0]
    lo, hi = heat.min(), heat.max()
    heat = (heat - lo) / (hi - lo) if hi > lo else torch.zeros_like(heat)
    colored = matplotlib.colormaps[cmap](heat.numpy())[..., :3]
    return (1 - alpha) * to_numpy_image(image) + alpha * colored


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render a figure to PNG bytes and close it (for widgets)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


PANEL_WIDTH = 4.6  # inches: a widget panel (input | map | colour bar) ≈ 440 px at 100 dpi


def map_panel_png(image: torch.Tensor, heat: torch.Tensor | None, title: str, mask: torch.Tensor | None = None,
                  size: float = PANEL_WIDTH, dpi: int = 100) -> bytes:
    """One widget view: the input (object outlined) beside the heat map overlaid on it, with a colour bar
    (the map min–max normalised: low … high); ``heat=None`` shows the input alone. PNG bytes, ≈ 440 px wide."""
    with matplotlib.rc_context(RC):
        fig, axes = plt.subplots(1, 2, figsize=(size, size / 2 + 0.35), layout="constrained")
        axes[0].imshow(to_numpy_image(image))
        axes[0].set_title("input")
        axes[1].imshow(overlay(image, heat) if heat is not None else to_numpy_image(image))
        axes[1].set_title(title if heat is not None else f"{title} (no map)")
        for ax in axes:
            if mask is not None and mask.any():
                ax.contour(mask.float().cpu().numpy(), levels=[0.5], colors="white", linewidths=1.0)
            ax.axis("off")
        colorbar(fig, HEAT, list(axes), "attention", shrink=0.8, aspect=15)
        return figure_png(fig, dpi=dpi)


@house_style
def image_grid(images: Sequence[torch.Tensor], titles: Sequence[str] | None = None, ncols: int = 8,
               size: float = 1.6) -> Figure:
    """A grid of ``[3,H,W]`` images with optional titles (at most :data:`PAGE_WIDTH` wide)."""
    n = len(images)
    ncols = max(1, min(ncols, n))
    size = min(size, PAGE_WIDTH / ncols)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + 0.25)), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(to_numpy_image(images[k]))
            if titles is not None:
                ax.set_title(titles[k], fontsize=MIN_FONT)
    fig.tight_layout()
    return fig


@house_style
def maps_table(images: Sequence[torch.Tensor], maps: Mapping[str, torch.Tensor],
               masks: Sequence[torch.Tensor] | None = None, size: float = 1.3) -> Figure:
    """Rows = images, columns = input + one overlay per method (``maps[name]`` is ``[N,h,w]``); each map min–max
    normalised and overlaid in :data:`~attnbook.viz.style.HEAT`, one shared colour bar."""
    names = list(maps)
    n = len(images)
    cols = len(names) + 1
    size = min(size, (PAGE_WIDTH - 0.8) / cols)
    fig, axes = plt.subplots(n, cols, figsize=(cols * size + 0.8, n * size + 0.5), squeeze=False,
                             layout="constrained")
    for i in range(n):
        axes[i, 0].imshow(to_numpy_image(images[i]))
        if masks is not None:
            axes[i, 0].contour(masks[i].float().numpy(), levels=[0.5], colors="white", linewidths=0.8)
        for j, name in enumerate(names, start=1):
            axes[i, j].imshow(overlay(images[i], maps[name][i]))
            if i == 0:
                axes[i, j].set_title(textwrap.fill(name.replace("_", " "), 10), fontsize=MIN_FONT)
        if i == 0:
            axes[i, 0].set_title("input", fontsize=MIN_FONT)
        for ax in axes[i]:
            ax.axis("off")
    colorbar(fig, HEAT, axes[:, 1:].ravel().tolist(), "attention (per map)", shrink=0.6, aspect=25)
    return fig


def compact_png(data: bytes, min_saving: float = 0.2) -> bytes:
    """A smaller PNG of the same picture, for the book's pages (the run's own files stay as they are).

    An opaque picture with at most 256 colours becomes an exact palette PNG; one with more (photos,
    heat-map overlays) a 256-colour palette PNG with Floyd–Steinberg dithering (no banding at 100 %
    zoom), typically 3× smaller. Pictures with transparency, and re-encodings that save less than
    ``min_saving``, are returned unchanged.
    """
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    if image.mode not in ("RGB", "RGBA", "P", "L"):
        return data
    if image.mode in ("RGBA", "P") and image.convert("RGBA").getextrema()[3][0] < 255:
        return data  # transparency: keep it exact
    rgb = image.convert("RGB")
    if rgb.getcolors(256) is not None:
        small = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)  # exact: ≤ 256 colours
    else:
        palette = rgb.quantize(256, method=Image.Quantize.MEDIANCUT)
        small = rgb.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return out.getvalue() if len(out.getvalue()) <= (1 - min_saving) * len(data) else data
