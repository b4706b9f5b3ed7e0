"""Chapter 3's figures: parts in colour over the images (Figs. 3/5 style) beside the attribution ``Q^T a`` (Fig. 1
style) and the post-hoc maps of the plain backbone; the K × P overlap matrices; landmark and pointing errors
over seeds; the explorer. Chapter: ``nbs/03_region_grouping.ipynb``."""
from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from attnbook import metrics
from attnbook.chapters.region_grouping.claims import Evals
from attnbook.viz.plots import figure_png, map_panel_png, overlay, to_numpy_image
from attnbook.viz.style import HEAT, PAGE_WIDTH, RC, SEQUENTIAL, colorbar, house_style
from attnbook.viz.widgets import image_method_explorer

PART_COLOURS = "tab10"
METHOD_LABELS = {"full": "Region Grouping", "no_prior": "w/o prior", "no_attention": "w/o attention",
                 "inat_prior": "iNat prior", "layer4": "grouping on layer4", "lr20": "20x lr (new modules)",
                 "activation": "activation channels", "kmeans": "K-means (DFF-style)",
                 "uniform": "no parts (image centre)",
                 "cam": "CAM", "gradcam": "Grad-CAM", "guided_gradcam": "guided Grad-CAM"}


def parts_picture(image: torch.Tensor, assign: torch.Tensor, alpha: float = 0.6) -> np.ndarray:
    """Soft part colouring ``Σ_k q_k · colour_k`` (maps upsampled to the image) blended onto it: ``[H, W, 3]``."""
    q = metrics.resize_to(assign[None].float(), image[0][None])[0].clamp(min=0)  # [K, H, W]
    q = q / q.sum(0, keepdim=True).clamp(min=1e-12)
    colours = torch.tensor(matplotlib.colormaps[PART_COLOURS].colors[:q.shape[0]], dtype=torch.float32)  # [K, 3]
    painted = torch.einsum("khw,kc->hwc", q, colours).numpy()
    return (1 - alpha) * to_numpy_image(image) + alpha * painted


def _columns(evals: Evals, seed: int) -> list[tuple[str, str, str]]:
    """(title, kind, example key) of the columns the figures and the explorer show, as far as trained."""
    cols = [("RG parts", "full", "assign"), ("RG Q^T a", "full", "attribution")]
    if "no_prior" in evals:
        cols.append(("w/o prior parts", "no_prior", "assign"))
    cols += [("K-means parts", "plain", "kmeans"), ("Grad-CAM (plain)", "plain", "gradcam")]
    return cols


@house_style
def figure_parts(evals: Evals, seed: int, n: int = 4) -> Figure:
    """Rows: test images (white dots: the true landmarks); columns: the image, Region Grouping's K parts in colour
    and its attribution ``Q^T a``, the parts without the prior, K-means parts of the plain backbone, and Grad-CAM of
    the plain backbone."""
    full = evals["full"][seed].examples
    cols = _columns(evals, seed)
    n = min(n, len(full["images"]))
    size = PAGE_WIDTH / (len(cols) + 1)
    fig, axes = plt.subplots(n, len(cols) + 1, figsize=(PAGE_WIDTH, size * n + 0.6), squeeze=False,
                             layout="constrained")
    for i in range(n):
        image = full["images"][i]
        axes[i, 0].imshow(to_numpy_image(image))
        points = full["landmarks"][i].numpy()
        axes[i, 0].scatter(points[:, 0], points[:, 1], s=6, c="white", edgecolors="black", linewidths=0.4)
        for j, (_, kind, key) in enumerate(cols, start=1):
            maps = evals[kind][seed].examples[key][i]
            picture = overlay(image, maps) if maps.ndim == 2 else parts_picture(image, maps)
            axes[i, j].imshow(picture)
    for j, title in enumerate(["image"] + [c[0] for c in cols]):
        axes[0, j].set_title(title, fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    colorbar(fig, HEAT, axes.ravel().tolist(), "attention", shrink=0.6)
    return fig


@house_style
def figure_overlap(evals: Evals, seed: int, part_names: tuple[str, ...]) -> Figure:
    """The K × P overlap matrices (mean soft Dice of each learned part with each true part's mask, test split)
    of Region Grouping, without the prior and of K-means parts; framed cells: the one-to-one matching."""
    from scipy.optimize import linear_sum_assignment

    panels = [("full", "full")] + ([("no_prior", "no_prior")] if "no_prior" in evals else []) + [("plain", "kmeans")]
    fig, axes = plt.subplots(1, len(panels), figsize=(PAGE_WIDTH, 2.8), squeeze=False, layout="constrained")
    if not evals["full"][seed].overlap:  # a real data set: landmarks, no part masks
        for ax in axes[0]:
            ax.axis("off")
        axes[0, 0].text(0, 0.5, "no part masks in this data set: no overlap matrix", fontsize=9)
        return fig
    vmax = max(float(evals[k][seed].overlap[m].max()) for k, m in panels)
    for ax, (kind, method) in zip(axes[0], panels):
        table = evals[kind][seed].overlap[method].numpy()
        image = ax.imshow(table, cmap=SEQUENTIAL, vmin=0, vmax=vmax)
        for r, c in zip(*linear_sum_assignment(table, maximize=True)):
            ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
        ax.set_xticks(range(len(part_names)), part_names, rotation=45)
        ax.set_yticks(range(table.shape[0]), [f"part {k + 1}" for k in range(table.shape[0])])
        ax.set_title(f"{METHOD_LABELS[method]}: {evals[kind][seed].matching[method]:.2f}")
    colorbar(fig, image, axes[0].tolist(), "soft Dice", shrink=0.8)
    return fig


@house_style
def figure_errors(table: pd.DataFrame) -> Figure:
    """Per-seed landmark error (left) and pointing-game error on boxes (right) of every method; bars: the mean."""
    with matplotlib.rc_context(RC):
        fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 3.0), layout="constrained")
    part = any(c.startswith("pd_") for c in table.columns)
    for ax, prefix, label in ((axes[0], "lm_", "landmark error (% of box)"),
                              (axes[1], "pd_" if part else "pe_", "pointing-game error (discriminative part)" if part
                               else "pointing-game error (object boxes)")):
        columns = [c for c in table.columns if c.startswith(prefix) and table[c].notna().any()]
        if part and prefix == "pd_" and "chance_disc" in table:
            ax.axhline(float(table["chance_disc"].mean()), color="0.4", linestyle="--", linewidth=0.8)
            ax.text(len(columns) - 0.5, float(table["chance_disc"].mean()), "random peak", fontsize=7, ha="right",
                    va="bottom", color="0.3")
        names = [METHOD_LABELS.get(c[len(prefix):], c[len(prefix):]) for c in columns]
        for j, column in enumerate(columns):
            values = table[column].dropna().to_numpy(float)
            ax.bar(j, values.mean(), color="0.85")
            ax.scatter(np.full(len(values), j) + np.linspace(-0.2, 0.2, len(values)), values, s=8, color="C0")
        ax.set_xticks(range(len(columns)), names, rotation=35, ha="right")
        ax.set_ylabel(label)
    return fig


@house_style
def figure_snapshots(snapshots: torch.Tensor | None, images: torch.Tensor, max_columns: int = 9) -> Figure:
    """Rows: fixed test images; columns: Region Grouping's K assignment maps in colour before training (epoch 0)
    and after each epoch (at most ``max_columns`` epochs, evenly spaced, the last always shown) — first seed."""
    if snapshots is None:
        fig, ax = plt.subplots(figsize=(PAGE_WIDTH, 0.8))
        ax.axis("off")
        ax.text(0, 0.5, "no snapshots: the model was resumed from a checkpoint", fontsize=9)
        return fig
    n, steps = snapshots.shape[:2]
    columns = sorted(set(np.linspace(0, steps - 1, min(steps, max_columns)).round().astype(int).tolist()))
    size = PAGE_WIDTH / (len(columns) + 1)
    fig, axes = plt.subplots(n, len(columns) + 1, figsize=(PAGE_WIDTH, size * n + 0.4), squeeze=False,
                             layout="constrained")
    for i in range(n):
        axes[i, 0].imshow(to_numpy_image(images[i]))
        for j, epoch in enumerate(columns, start=1):
            axes[i, j].imshow(parts_picture(images[i], snapshots[i, epoch]))
    for j, title in enumerate(["image"] + [f"epoch {e}" for e in columns]):
        axes[0, j].set_title(title, fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    return fig


@house_style
def figure_ablations(table: pd.DataFrame, kinds: tuple[str, ...]) -> Figure:
    """Per-seed differences ablation − full model (left: landmark error, right: accuracy), one dot per seed the
    ablation was trained on; bars at the mean; the dashed band: the equivalence margin."""
    from attnbook.chapters.region_grouping.config import ACCURACY_MARGIN, LANDMARK_MARGIN

    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 2.8), layout="constrained")
    for ax, prefix, label, margin in ((axes[0], "lm_", "landmark error − full (% of box)", LANDMARK_MARGIN),
                                      (axes[1], "acc_", "accuracy − full", ACCURACY_MARGIN)):
        shown = [k for k in kinds if f"{prefix}{k}" in table]
        for j, kind in enumerate(shown):
            diff = (table[f"{prefix}{kind}"] - table[f"{prefix}full"]).dropna().to_numpy(float)
            ax.bar(j, diff.mean(), color="0.85")
            ax.scatter(np.full(len(diff), j) + np.linspace(-0.2, 0.2, len(diff)), diff, s=8, color="C0")
        ax.axhspan(-margin, margin, color="C2", alpha=0.12, linewidth=0)
        ax.axhline(0, color="0.3", linewidth=0.6)
        ax.set_xticks(range(len(shown)), [METHOD_LABELS.get(k, k) for k in shown], rotation=20, ha="right")
        ax.set_ylabel(label)
    return fig


def _parts_png(image: torch.Tensor, assign: torch.Tensor, title: str) -> bytes:
    with matplotlib.rc_context(RC):
        fig, axes = plt.subplots(1, 2, figsize=(4.6, 2.65), layout="constrained")
        axes[0].imshow(to_numpy_image(image))
        axes[0].set_title("input")
        axes[1].imshow(parts_picture(image, assign))
        axes[1].set_title(title)
        for ax in axes:
            ax.axis("off")
        return figure_png(fig)


def explorer(evals: Evals, seed: int) -> object:
    """Widget: the slider picks a test image, the buttons a view — Region Grouping's parts and attribution, the parts
    without the prior, K-means parts, and CAM / Grad-CAM / guided Grad-CAM of the plain backbone. Precomputed."""
    full, plain = evals["full"][seed].examples, evals["plain"][seed].examples
    views = _columns(evals, seed)[:-1] + [(f"{METHOD_LABELS[m]} (plain)", "plain", m)
                                          for m in ("cam", "gradcam", "guided_gradcam")]
    panels = []
    for i in range(len(full["images"])):
        image, row = full["images"][i], []
        for title, kind, key in views:
            maps = (plain if kind == "plain" else evals[kind][seed].examples)[key][i]
            row.append(map_panel_png(image, maps, title, mask=full["masks"][i]) if maps.ndim == 2
                       else _parts_png(image, maps, title))
        panels.append(row)
    return image_method_explorer(panels, [v[0] for v in views], [f"test image {i}" for i in range(len(panels))],
                                 title="Region Grouping: parts, attribution and the plain backbone's post-hoc maps")
