"""Chapter 2's figures: the three attentions side by side on one image, the target's and the confuser's maps before
and after training with the losses, the gains per seed beside the paper's, and an explorer.
Chapter: ``nbs/02_sharpen_focus.ipynb``."""
from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from attnbook import stats
from attnbook.chapters.sharpen_focus.claims import Evals
from attnbook.chapters.sharpen_focus.config import (
    ATTENTION_LABELS,
    ATTENTIONS,
    LABELS,
    LAYERS,
    PAPER_GAIN,
    TRAINED,
)
from attnbook.viz.plots import figure_png, overlay, to_numpy_image
from attnbook.viz.style import HEAT, PAGE_WIDTH, RC, colorbar, house_style
from attnbook.viz.widgets import image_method_explorer


def _outline(ax, disc: torch.Tensor | None) -> None:
    if disc is not None and disc.any():
        ax.contour(disc.float().numpy(), levels=[0.5], colors="white", linewidths=1.0)


def _class_name(c: int) -> str:
    return f"class {int(c)}"


@house_style
def figure_three_attentions(evals: Evals, seed: int, kind: str = "baseline", index: int = 0) -> Figure:
    """One test image; rows: the inner and the last layer; columns: the image, then Grad-CAM, A_ch and A_px of
    the true class (white outline: the discriminative part)."""
    ex = evals[kind][seed].examples
    image, disc = ex["images"][index], ex["disc"][index] if ex["disc"] is not None else None
    fig, axes = plt.subplots(2, 4, figsize=(PAGE_WIDTH, PAGE_WIDTH / 4 * 2 + 0.4), squeeze=False)
    for r, layer in enumerate(LAYERS):
        axes[r, 0].imshow(to_numpy_image(image))
        axes[r, 0].set_title("image" if r == 0 else "")
        axes[r, 0].set_ylabel(f"{layer} layer")
        for c, attention in enumerate(ATTENTIONS, start=1):
            axes[r, c].imshow(overlay(image, ex["maps"][attention][layer][index, 0]))
            axes[r, c].set_title(f"{ATTENTION_LABELS[attention]}, {layer}")
        for ax in axes[r]:
            _outline(ax, disc)
            ax.set_xticks([])
            ax.set_yticks([])
    colorbar(fig, HEAT, list(axes.ravel()), "attention", shrink=0.8)
    return fig


@house_style
def figure_target_vs_confuser(evals: Evals, seed: int, kinds: tuple[str, ...] = ("baseline", "channelwise"),
                              attention: str = "channelwise", layer: str = "inner", n: int = 3) -> Figure:
    """Rows: test images (titled "true class vs partner"); per model two columns, the map of the true class
    (target) and of its confusable partner (confuser), ``attention`` at ``layer``; white outline: the
    discriminative part."""
    ex0 = evals[kinds[0]][seed].examples
    n = min(n, len(ex0["images"]))
    cols = 1 + 2 * len(kinds)
    fig, axes = plt.subplots(n, cols, figsize=(PAGE_WIDTH, PAGE_WIDTH / cols * n * 1.15 + 0.3), squeeze=False)
    for i in range(n):
        image = ex0["images"][i]
        disc = ex0["disc"][i] if ex0["disc"] is not None else None
        axes[i, 0].imshow(to_numpy_image(image))
        pair = f"{int(ex0['labels'][i])} vs {int(ex0['confusers'][i])}"
        axes[i, 0].set_title(f"classes\n{pair}" if i == 0 else pair)
        for m, kind in enumerate(kinds):
            ex = evals[kind][seed].examples
            for k, who in enumerate(("target", "confuser")):
                ax = axes[i, 1 + 2 * m + k]
                ax.imshow(overlay(image, ex["maps"][attention][layer][i, k]))
                if i == 0:
                    ax.set_title(f"{LABELS[kind]}\n{who}")
        for ax in axes[i]:
            _outline(ax, disc)
            ax.axis("off")
    colorbar(fig, HEAT, list(axes.ravel()), f"{ATTENTION_LABELS[attention]} ({layer} layer)", shrink=0.6)
    return fig


@house_style
def figure_gains(table: pd.DataFrame) -> Figure:
    """Per trained model: each seed's accuracy gain over the baseline (points, dots), their mean with its 95 % CI,
    and the paper's CIFAR-100 gain (diamond)."""
    base = table[table.model == "baseline"].sort_values("seed").accuracy.to_numpy()
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH * 0.8, 3.6))
    for y, kind in enumerate(TRAINED):
        gain = 100 * (table[table.model == kind].sort_values("seed").accuracy.to_numpy() - base)
        jitter = np.linspace(-0.12, 0.12, len(gain))
        ax.scatter(gain, y + jitter, s=14, color="0.55", label="one seed" if y == 0 else None, zorder=2)
        ev = stats.paired(np.zeros_like(gain), gain)
        ax.errorbar(ev.effect, y + 0.3, xerr=[[ev.effect - ev.ci[0]], [ev.ci[1] - ev.effect]], fmt="o", color="C0",
                    capsize=3, label="ours: mean, 95 % CI" if y == 0 else None, zorder=3)
        ax.scatter(PAPER_GAIN[kind], y + 0.3, marker="D", color="C3", s=36, zorder=4,
                   label="paper (CIFAR-100)" if y == 0 else None)
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_yticks(range(len(TRAINED)), [LABELS[k] for k in TRAINED])
    ax.set_xlabel("accuracy gain over the baseline (points)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.45, -0.22), ncol=3, frameon=False)
    fig.tight_layout()
    return fig


def _panel_png(image: torch.Tensor, maps: dict[str, torch.Tensor], title: str, disc: torch.Tensor | None) -> bytes:
    """input | target & confuser at the last layer | target & confuser at the inner layer, one PNG."""
    with matplotlib.rc_context(RC):
        fig, axes = plt.subplots(1, 5, figsize=(7.0, 1.9), layout="constrained")
        axes[0].imshow(to_numpy_image(image))
        axes[0].set_title("input")
        for c, (layer, k) in enumerate(((name, k) for name in ("last", "inner") for k in (0, 1)), start=1):
            axes[c].imshow(overlay(image, maps[layer][k]))
            axes[c].set_title(f"{'target' if k == 0 else 'confuser'}, {layer}")
        for ax in axes:
            _outline(ax, disc)
            ax.axis("off")
        fig.suptitle(title)
        colorbar(fig, HEAT, list(axes), "attention", shrink=0.8, aspect=15)
        return figure_png(fig)


def explorer(evals: Evals, seed: int, n: int = 4) -> object:
    """Widget: the slider picks a test image, the buttons a model × attention (each trained model with the
    attention it was trained on; the baseline with all three); each view shows the target's and the confuser's
    maps at both layers. Every view precomputed (static book)."""
    views = [("baseline", a) for a in ATTENTIONS] + [(k, k) for k in TRAINED]
    names = [f"{LABELS[k]} · {ATTENTION_LABELS[a]}" for k, a in views]
    ex0 = evals["baseline"][seed].examples
    n = min(n, len(ex0["images"]))
    panels, captions = [], []
    for i in range(n):
        disc = ex0["disc"][i] if ex0["disc"] is not None else None
        row = []
        for (kind, attention), name in zip(views, names):
            maps = evals[kind][seed].examples["maps"][attention]
            row.append(_panel_png(ex0["images"][i], {layer: maps[layer][i] for layer in LAYERS}, name, disc))
        panels.append(row)
        captions.append(f"test image {i}: {_class_name(ex0['labels'][i])} vs its partner "
                        f"{_class_name(ex0['confusers'][i])}")
    return image_method_explorer(panels, names, captions, title="Target vs confuser, inner and last layer")

