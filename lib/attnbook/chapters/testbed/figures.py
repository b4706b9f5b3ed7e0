"""Chapter 0's figures, tables and explorer widget. Chapter: ``nbs/00_testbed.ipynb``."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from attnbook.chapters.testbed.config import SPLITS
from attnbook.chapters.testbed.pipeline import Explanations
from attnbook.data import records as R
from attnbook.data.synthetic import Benchmark
from attnbook.train import History
from attnbook.viz.plots import map_panel_png, maps_table, to_numpy_image
from attnbook.viz.style import PAGE_WIDTH, colorbar, house_style
from attnbook.viz.widgets import image_method_explorer


@house_style
def figure_samples(bench: Benchmark, n: int = 8, per_row: int = 4) -> Figure:
    """Pairs of rows, ``per_row`` objects each: the images, and under them the part masks in colour,
    landmarks (dots), box (yellow) and discriminative part (white outline)."""
    t = bench.train.tensors
    n = min(n, len(bench.train))
    idx = torch.linspace(0, len(bench.train) - 1, n).long()
    ncols = min(per_row, n)
    blocks = -(-n // ncols)
    size = min(1.75, PAGE_WIDTH / ncols)
    legend = 0.3 * -(-len(bench.info.part_names) // 4) + 0.15  # inches under the grid for the parts' legend
    height = 2 * blocks * (size + 0.2) + legend
    fig, grid = plt.subplots(2 * blocks, ncols, figsize=(ncols * size, height), squeeze=False)
    palette = plt.get_cmap("tab10")
    for k, i in enumerate(idx.tolist()):
        block, col = divmod(k, ncols)
        axes = grid[2 * block:2 * block + 2]
        axes[0, col].imshow(to_numpy_image(t[R.IMAGE][i]))
        axes[0, col].set_title(bench.info.class_names[int(t[R.LABEL][i])])
        parts = t[R.PART_MASKS][i]  # [P, H, W]
        canvas = np.ones((*parts.shape[1:], 3)) * 0.15
        for p in range(parts.shape[0]):
            canvas[parts[p].numpy()] = palette(p)[:3]
        axes[1, col].imshow(canvas)
        if t[R.DISC_MASK][i].any():
            axes[1, col].contour(t[R.DISC_MASK][i].float().numpy(), levels=[0.5], colors="white", linewidths=1.2)
        pts, vis = t[R.LANDMARKS][i], t[R.LANDMARK_VISIBLE][i]
        axes[1, col].scatter(pts[vis, 0] - 0.5, pts[vis, 1] - 0.5, s=10, c="white", edgecolors="black",
                             linewidths=0.5)
        x0, y0, x1, y1 = t[R.BBOX][i].tolist()
        axes[1, col].add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="yellow",
                                             lw=0.8))
    for ax in grid.flat:
        ax.axis("off")
    handles = [plt.Line2D([], [], marker="s", ls="", color=palette(p)[:3], label=name)
               for p, name in enumerate(bench.info.part_names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), frameon=False)
    fig.tight_layout(rect=(0, legend / height, 1, 1))
    return fig


@house_style
def figure_attribute_matrix(bench: Benchmark) -> Figure:
    """The class × attribute matrix (CUB's 200 × 312 analog): black = the class has the attribute; red ticks
    mark the attributes that separate a confusable pair."""
    attrs = bench.class_attributes.numpy()
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH, 0.3 * attrs.shape[0] + 2.2))
    ax.imshow(attrs, cmap="Greys", aspect="auto", interpolation="nearest", vmin=0, vmax=1)
    ax.set_yticks(range(attrs.shape[0]), bench.info.class_names)
    names = bench.info.attribute_names
    starts = [k for k, n in enumerate(names) if k == 0 or n.split("::")[0] != names[k - 1].split("::")[0]]
    ax.set_xticks(starts, [names[k].split("::")[0] for k in starts], rotation=90)
    for c, partner in enumerate(bench.confusers.tolist()):
        if partner > c:
            diff = np.nonzero(attrs[c] != attrs[partner])[0]
            ax.scatter(diff, [c + 0.5] * len(diff), marker="|", s=200, color="red")
    ax.set_title("class × attribute matrix\n(black: has the attribute; red ticks: separate a confusable pair)")
    fig.tight_layout()
    return fig


def confusable_pairs_table(bench: Benchmark) -> pd.DataFrame:
    """One row per confusable pair: the part and attribute group that tell the classes apart."""
    rows = []
    names = bench.info.attribute_names
    for c, partner in enumerate(bench.confusers.tolist()):
        if partner > c:
            diff = (bench.class_attributes[c] != bench.class_attributes[partner]).nonzero()[:, 0].tolist()
            rows.append({"class": bench.info.class_names[c], "confuser": bench.info.class_names[partner],
                         "discriminative part": bench.info.part_names[int(bench.disc_part[c])],
                         "difference": " vs ".join(names[k].split("::")[1] for k in diff),
                         "attribute group": names[diff[0]].split("::")[0]})
    return pd.DataFrame(rows)


@house_style
def figure_bias(bench: Benchmark, n: int = 6) -> Figure:
    """Top: training co-occurrence of class and habitat (counts, with a colour bar). Bottom: the same objects
    on their own habitat (bias-aligned test split) and on another (bias-conflicting)."""
    fig = plt.figure(figsize=(PAGE_WIDTH, 2.6 + 2 * PAGE_WIDTH / n))
    grid = fig.add_gridspec(3, n, height_ratios=(2.2, 1, 1))
    ax = fig.add_subplot(grid[0, :])
    counts = torch.zeros(bench.spec.num_classes, len(bench.backgrounds))
    counts.index_put_((bench.train.tensors[R.LABEL], bench.train.habitats), torch.ones(len(bench.train)),
                      accumulate=True)
    counts_image = ax.imshow(counts.numpy(), cmap="viridis", aspect="auto", vmin=0)
    colorbar(fig, counts_image, ax, "training images")
    ax.set_xticks(range(counts.shape[1]))
    ax.set_yticks(range(counts.shape[0]))
    ax.set_xlabel("habitat (background texture)")
    ax.set_ylabel("class")
    ax.set_title(f"training split: class × habitat counts (p_bias = {bench.spec.p_bias})")
    for col in range(n):
        for row, split in enumerate(SPLITS, start=1):
            a = fig.add_subplot(grid[row, col])
            a.imshow(to_numpy_image(bench.split(split).tensors[R.IMAGE][col]))
            a.axis("off")
            if col == 0:
                a.set_title("aligned" if row == 1 else "conflicting", loc="left")
    fig.tight_layout()
    return fig


@house_style
def figure_history(history: History) -> Figure:
    """Loss (left) and accuracy (right) per epoch on the training split and both test splits."""
    frame = pd.DataFrame(history)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 3))
    for split, style in (("train", "-"), ("aligned", "--"), ("conflicting", ":")):
        ax_loss.plot(frame["epoch"], frame[f"{split}_loss"], style, marker="o", ms=3, label=split)
        ax_acc.plot(frame["epoch"], frame[f"{split}_acc"], style, marker="o", ms=3, label=split)
    ax_loss.set(xlabel="epoch", ylabel="loss")
    ax_loss.set_ylim(bottom=0)
    ax_acc.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1))
    ax_acc.legend()
    fig.tight_layout()
    return fig


def figure_maps(ex: Explanations, split: str, n: int = 4) -> Figure:  # styled by maps_table
    """Rows: the first ``n`` images of ``split`` (object mask outlined); columns: each explainer's map."""
    t = ex.truth[split]
    names = [name for name in ex.maps[split] if len(ex.maps[split][name]) >= n]
    return maps_table([t[R.IMAGE][i] for i in range(n)], {k: ex.maps[split][k][:n] for k in names},
                      masks=[t[R.MASK][i] for i in range(n)])


def explorer(ex: Explanations, bench: Benchmark, n: int) -> object:
    """Widget: image slider (alternating bias-aligned / bias-conflicting versions of each object) ×
    explainer buttons; every view precomputed, so it works in the static book."""
    names = list(ex.maps[SPLITS[0]])
    per_split = min(n // 2, *(len(m) for by in ex.maps.values() for m in by.values()))
    panels, captions = [], []
    for i in range(per_split):
        for split in SPLITS:
            t = ex.truth[split]
            label, pred = int(t[R.LABEL][i]), int(ex.predicted[split][i])
            captions.append(f"object {i}, {split.replace('test_', 'bias-')} — true {bench.info.class_names[label]}, "
                            f"predicted {bench.info.class_names[pred]}")
            panels.append([map_panel_png(t[R.IMAGE][i], ex.maps[split][name][i], name, mask=t[R.MASK][i])
                           for name in names])
    return image_method_explorer(panels, names, captions, title="Post-hoc explainers on the testbed")


