"""Chapter 6's figures: a FunnyBirds-layout spider plot per method, and the explorer (image × intervention ×
method) of the static book. Chapter: ``nbs/06_compare.ipynb``."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from attnbook.chapters.compare.evaluation import INTERVENTIONS
from attnbook.viz.plots import map_panel_png
from attnbook.viz.style import PAGE_WIDTH, house_style
from attnbook.viz.widgets import image_method_explorer

# FunnyBirds' spider layout (Hesse et al. 2023, Fig. 5): the completeness quantities, then correctness,
# contrastivity and background independence.
SPIDER_AXES = ("csdc", "pc", "dc", "d", "sd", "ts", "bi")
SPIDER_LABELS = ("CSDC", "PC", "DC", "D", "SD", "TS", "BI")


@house_style
def figure_spiders(table: pd.DataFrame, reference: dict[str, float] | None = None, cols: int = 4) -> Figure:
    """One polar panel per method: seed means of FunnyBirds' quantities (0 at the centre, 1 at the rim; a NaN
    quantity drawn at 0 and its label marked "n/a"); the published reference row dashed in every panel."""
    means = table.groupby("method", sort=False)[list(SPIDER_AXES)].mean()
    means = means[np.isfinite(means.to_numpy(dtype=float)).any(axis=1)]  # landmark-only baselines have none
    rows = math.ceil(len(means) / cols)
    angles = np.linspace(0, 2 * np.pi, len(SPIDER_AXES), endpoint=False)
    closed = np.append(angles, angles[0])
    fig, axes = plt.subplots(rows, cols, figsize=(PAGE_WIDTH, PAGE_WIDTH / cols * rows * 1.15),
                             subplot_kw={"projection": "polar"}, squeeze=False)
    for ax in axes.flat[len(means):]:
        ax.set_visible(False)
    for ax, (method, row) in zip(axes.flat, means.iterrows()):
        values = row.to_numpy(dtype=float)
        labels = [lab if np.isfinite(v) else f"{lab} n/a" for lab, v in zip(SPIDER_LABELS, values)]
        values = np.nan_to_num(values, nan=0.0)
        if reference is not None:
            ref = np.array([reference[k] for k in SPIDER_AXES])
            ax.plot(closed, np.append(ref, ref[0]), color="0.5", linestyle="--", linewidth=0.8)
        ax.plot(closed, np.append(values, values[0]), color="C0", linewidth=1.2)
        ax.fill(closed, np.append(values, values[0]), color="C0", alpha=0.25)
        ax.set_ylim(0, 1)
        ax.set_xticks(angles)
        ax.set_xticklabels(labels, fontsize=6)
        ax.set_yticks([0.5, 1.0])
        ax.set_yticklabels([])
        ax.set_title(method, fontsize=8, pad=8)
    fig.tight_layout()
    return fig


def explorer(examples: dict, n: int | None = None) -> object:
    """Widget: the slider walks through (image, intervention) pairs — the bias-aligned test image, its habitat
    swapped, its discriminative part drawn as the confuser's, and the part removed — and the buttons pick the
    method; each view shows the true class's map. Every view precomputed (static book)."""
    images, masks, maps, methods = examples["images"], examples["masks"], examples["maps"], examples["methods"]
    n = images.shape[0] if n is None else min(n, images.shape[0])
    panels, captions = [], []
    for i in range(n):
        for v, intervention in enumerate(INTERVENTIONS):
            panels.append([map_panel_png(images[i, v], maps[i, v, m], name, mask=masks[i, v])
                           for m, name in enumerate(methods)])
            captions.append(f"image {i}: {intervention}")
    return image_method_explorer(panels, list(methods), captions,
                                 title="Where each method looks, under in-domain interventions")
