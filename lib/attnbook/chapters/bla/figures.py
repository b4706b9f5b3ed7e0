"""Chapter 4 (BLA): figures, tables and the explorer widget of ``nbs/04_bla.ipynb``.

Paper: BLA Figure 2 (input, soft q, hard δ, δ over the input), Figure 3 (error rate and loss over
seeds), Table 1 (mean, † and ∗ marks, ± SE × 100), Table 2 (LIME rank correlations); plus the §4.1
summary, the ground-truth table and figure (not in the paper) and the code-vs-paper threshold ablation.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

from attnbook import stats
from attnbook.chapters.bla.config import (
    CAM,
    CODE_THRESHOLD,
    DIGITS_PAIR,
    LABELS,
    PAPER_TABLE2,
    VARIANTS,
    BLAConfig,
)
from attnbook.chapters.bla.digits import DigitsResults, hard_explanation
from attnbook.chapters.bla.faithfulness import Faithfulness
from attnbook.chapters.bla.heads import TaskResults, explained_by, paired_seeds, soft_and_hard
from attnbook.chapters.bla.tasks import HeadTask
from attnbook.data import records as R
from attnbook.explain.cam import cam
from attnbook.train import FeatureDataset
from attnbook.viz.plots import map_panel_png, overlay, to_numpy_image
from attnbook.viz.style import PAGE_WIDTH, colorbar, house_style
from attnbook.viz.widgets import image_method_explorer


def _nearest(cells: Tensor, size: int) -> Tensor:
    """A ``[h, w]`` cell map blown up to ``[size, size]`` without smoothing (each cell a square)."""
    return F.interpolate(cells[None, None], size=(size, size), mode="nearest")[0, 0]


# --- §4.1 ----------------------------------------------------------------------------------------------

def digits_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean ± SE of accuracy and loss per model, and how many runs collapsed to one class (BLA §4.1)."""
    rows = []
    for name, group in scores.groupby("model", sort=False):
        rows.append({"model": LABELS.get(name, name), "runs": len(group),
                     "accuracy": stats.format_mean_se(group["acc"]), "loss": stats.format_mean_se(group["loss"]),
                     "collapsed runs": int(group["collapsed"].sum())})
    return pd.DataFrame(rows)


@house_style
def figure_digits(digits: DigitsResults, test: FeatureDataset, n: int = 8) -> Figure:
    """Test digits with BLA-T's prediction (top) and its hard explanation δ on the 7×7 map (bottom; first
    seed). Without a BLA-T model in the run: the baseline's predictions only."""
    model = digits.models.get("bla_t", digits.models["bl"])
    x = test.tensors[R.IMAGE][:n].to(next(model.parameters()).device)
    hard = hard_explanation(model, x)  # [n, 7, 7], or None for the baseline's GAP head
    with torch.no_grad():
        logits = model(x)[:, 0]
    explains = hard is not None
    size = min(1.3, PAGE_WIDTH / n)
    fig, axes = plt.subplots(2 if explains else 1, n, figsize=(n * size, (size + 0.35) * (2 if explains else 1)),
                             squeeze=False)
    for i in range(n):
        image = x[i].expand(3, -1, -1).cpu()
        axes[0, i].imshow(to_numpy_image(image))
        axes[0, i].set_title(f"pred {DIGITS_PAIR[int(logits[i] > 0)]}")
        if hard is not None:
            axes[1, i].imshow(overlay(image, _nearest(hard[i].float().cpu(), image.shape[-1]), alpha=0.45))
            axes[1, i].set_title(f"|δ| = {int(hard[i].sum())}")
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return fig


# --- §4.2: the datasets, Table 1, Figure 3, Figure 2 ------------------------------------------------------

def tasks_table(tasks: Sequence[HeadTask]) -> pd.DataFrame:
    """One row per §4.2 dataset: its design, classes, images, feature map and epochs."""
    return pd.DataFrame([{"dataset": t.title, "design": t.design, "classes": t.num_classes, "train": len(t.train),
                          "test": len(t.test),
                          "feature map": f"{t.channels} × {t.grid} × {t.grid}", "epochs": t.epochs} for t in tasks])


def table1(scores: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Table 1 laid out as the paper's: mean, marks, ± standard error × 100.

    The paper's marks: † = no significant difference to BL, ∗ = none to the column on the left (paired
    Wilcoxon signed-rank over seeds, p ≥ α; every seed tied counts as no difference). A mark says that no
    difference was *detected*, not that the two are equivalent: the ledger tests that by TOST."""
    present = [v for v in VARIANTS if v in set(scores["head"])]
    rows = []
    for metric, name in (("acc", "Accuracy"), ("loss", "Loss")):
        for task in scores["task"].unique():
            row = {"": f"{name} {task}"}
            for k, v in enumerate(present):
                values = scores[(scores.task == task) & (scores["head"] == v)][metric]
                mean, se = stats.mean_se(values)
                marks = ""
                if v != "bl":
                    marks += "†" if _not_different(paired_seeds(scores, task, "bl", v, metric), alpha) else ""
                    left = present[k - 1]
                    if left != "bl":
                        marks += "∗" if _not_different(paired_seeds(scores, task, left, v, metric), alpha) else ""
                row[LABELS[v]] = f"{mean:.4f}{marks} ± {100 * se:.2f}"
            rows.append(row)
    return pd.DataFrame(rows).set_index("")


def _not_different(evidence: stats.Evidence | None, alpha: float) -> bool:
    return evidence is not None and evidence.p_value >= alpha


@house_style
def figure3(scores: pd.DataFrame) -> Figure:
    """Figure 3: error rate (left) and loss (right) of the explanation variants over seeds, one row per
    dataset; dashed: the median of the uninterpretable baseline BL. Both axes start at 0."""
    tasks = list(scores["task"].unique())
    shown = [v for v in VARIANTS if v != "bl" and v in set(scores["head"])]
    fig, axes = plt.subplots(len(tasks), 2, figsize=(PAGE_WIDTH, 2.3 * len(tasks) + 0.3), squeeze=False)
    for row, task in enumerate(tasks):
        sub = scores[scores.task == task]
        for col, (metric, label) in enumerate((("acc", "error rate"), ("loss", "loss"))):
            ax = axes[row, col]
            value = (lambda s: 1 - s) if metric == "acc" else (lambda s: s)
            data = [value(sub[sub["head"] == v][metric]).to_numpy() for v in shown]
            if data:
                ax.boxplot(data, tick_labels=[LABELS[v] for v in shown])
            baseline = float(np.median(value(sub[sub["head"] == "bl"][metric])))
            ax.axhline(baseline, ls="--", color="grey", label="BL median")
            ax.set_title(f"{label}, {task}")
            ax.set_ylim(bottom=0)  # a rate and a loss are ≥ 0
            if metric == "acc":
                ax.set_ylim(top=min(1.0, max(ax.get_ylim()[1], 0.05)))
    axes[0, 0].legend()
    fig.tight_layout()
    return fig


@house_style
def figure2(results: Sequence[TaskResults], config: BLAConfig, per_task: int = 2) -> Figure:
    """Figure 2 re-made: input, soft explanation q, hard explanation δ, δ over the input (per dataset), for
    BLA-T (or, in a run restricted to another head, that head; CAM for ``method="bl"``)."""
    available = explained_by(results[0].heads)
    head = next(n for n in ("bla_t", "bla", "bla_ph", "l2x_f", CAM) if n in available)
    cols = [(r, i) for r in results for i in range(min(per_task, len(r.task.images)))]
    size = min(1.6, (PAGE_WIDTH - 1.4) / len(cols))
    fig, axes = plt.subplots(4, len(cols), figsize=(len(cols) * size + 1.4, 4 * size + 0.9), squeeze=False,
                             layout="constrained")
    explained = []
    for r, i in cols:
        features = r.task.shown_features()[i:i + 1].to(next(r.heads["bl"].parameters()).device)
        explained.append(soft_and_hard(r.heads, head, features, config.cam_threshold))
    top = max([float(soft.max()) for soft, _ in explained] + [1e-12])
    for col, ((r, i), (soft, hard)) in enumerate(zip(cols, explained)):
        image = r.task.images[i]
        axes[0, col].imshow(to_numpy_image(image))
        axes[0, col].set_title(r.task.key)
        q_image = axes[1, col].imshow(soft[0].cpu().numpy(), cmap="viridis", vmin=0, vmax=top)
        axes[2, col].imshow(hard[0].float().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        axes[3, col].imshow(overlay(image, _nearest(hard[0].float().cpu(), image.shape[-1]), alpha=0.45))
    for row, label in enumerate(("input", "soft q", "hard δ", "vis.")):
        axes[row, 0].set_ylabel(label)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.spines[:].set_visible(False)
    colorbar(fig, q_image, axes[1, :].tolist(), "q")
    bar = colorbar(fig, axes[2, 0].images[0], axes[2, :].tolist(), "δ")
    bar.set_ticks([0, 1], labels=["0 out", "1 in"])
    fig.suptitle(f"{LABELS[head]} explanations (first seed)")
    return fig


# --- ground truth (not in the paper) ----------------------------------------------------------------------

def truth_table(truth: pd.DataFrame, results: Sequence[TaskResults]) -> pd.DataFrame:
    """Per dataset and method: mean over seeds of explanation size, precision on the object, recall of
    the discriminative part and size-vs-object-area rank correlation; ``chance`` = the object's share."""
    chance = {r.task.key: float(r.task.object_area.mean()) for r in results if r.task.object_area is not None}
    table = truth.groupby(["task", "method"], sort=False)[
        ["size_mean", "size_sd", "object_precision", "disc_recall", "size_area_r"]].mean().reset_index()
    table["object_chance"] = table["task"].map(chance)
    table.insert(2, "label", table["method"].map(LABELS))
    return table


@house_style
def figure_truth(truth: pd.DataFrame, results: Sequence[TaskResults]) -> Figure:
    """One row per dataset. Left: share of each hard explanation on the object (mean ± SE over seeds; dashed:
    the object's share of the image). Right: distribution of explanation sizes over test images (first seed)."""
    methods = [m for m in ("l2x_f", "bla", "bla_t", "bla_ph", CAM) if m in set(truth["method"])]
    fig, axes = plt.subplots(len(results), 2, figsize=(PAGE_WIDTH, 2.6 * len(results) + 0.3), squeeze=False)
    for row, r in enumerate(results):
        ax_share, ax_size = axes[row]
        if r.task.object_area is None:  # real data without object masks: sizes only
            ax_share.axis("off")
            ax_share.text(0.5, 0.5, f"{r.task.key}: no object masks", ha="center", va="center")
        else:
            sub = truth[truth.task == r.task.key]
            ms = [stats.mean_se(sub[sub.method == m]["object_precision"]) for m in methods]
            ax_share.bar(range(len(methods)), [m for m, _ in ms], yerr=[s for _, s in ms], color="tab:blue")
            ax_share.axhline(float(r.task.object_area.mean()), ls="--", color="grey", label="object's share")
            ax_share.set_xticks(range(len(methods)), [LABELS[m] for m in methods], rotation=30, ha="right")
            ax_share.set(ylim=(0, 1), ylabel="share on the object", title=f"on the object, {r.task.key}")
            ax_share.legend()
        cells = r.task.grid**2
        bins = np.arange(0.5, cells + 1.5)
        for m in methods:
            ax_size.hist(r.sizes[m].numpy(), bins=bins, histtype="step", lw=1.4, label=LABELS[m])
        ax_size.set(xlabel="explanation size ‖δ‖₁ (cells)", ylabel="test images", title=f"sizes, {r.task.key}")
    axes[0, 1].legend()
    fig.tight_layout()
    return fig


# --- §4.3 Table 2 and the authors' code vs the paper -------------------------------------------------------

def table2(rows: pd.DataFrame) -> pd.DataFrame:
    """Table 2: mean Spearman ρ per dataset (NaN-skipping: a constant map has no ranks), the paper's beside."""
    means = rows.groupby("task")[["lime_cam", "lime_bla_t"]].mean()
    means["paper LIME/CAM"] = [PAPER_TABLE2[k][0] for k in means.index]
    means["paper LIME/BLA-T"] = [PAPER_TABLE2[k][1] for k in means.index]
    return means.rename(columns={"lime_cam": "LIME/CAM", "lime_bla_t": "LIME/BLA-T"})


def threshold_ablation(scores: pd.DataFrame) -> pd.DataFrame:
    """BLA-T with the paper's ``q·1[q > γ]`` (Eq. 2) vs the code's ``relu(q − γ)``: means over seeds and the
    paired Wilcoxon p-value, per dataset (NaN where this run lacks one of them or has a single seed)."""
    rows = []
    for task in scores["task"].unique():
        sub = scores[scores.task == task]
        row: dict[str, Any] = {"dataset": task}
        for metric in ("acc", "loss"):
            result = paired_seeds(scores, task, "bla_t", CODE_THRESHOLD, metric)
            row[f"{metric} paper"] = sub[sub["head"] == "bla_t"][metric].mean()
            row[f"{metric} code"] = sub[sub["head"] == CODE_THRESHOLD][metric].mean()
            row[f"{metric} p"] = np.nan if result is None else result.p_value
        rows.append(row)
    return pd.DataFrame(rows)


# --- explorer -----------------------------------------------------------------------------------------------

def explorer(results: Sequence[TaskResults], faith: Faithfulness, config: BLAConfig) -> object:
    """Widget over the first ``explorer_images`` kept test images of each dataset × every explanation
    (first seed), precomputed PNGs."""
    panels, captions, names = [], [], None
    for r in results:
        m = min(config.explorer_images, len(r.task.images))
        features = r.task.shown_features(m).to(next(r.heads["bl"].parameters()).device)
        views = _views(r, features, faith.lime_maps.get(r.task.key), config)
        names = names or list(views)
        with torch.no_grad():
            predicted = r.heads["bl"](features).argmax(1).tolist()
        for i in range(m):
            mask = None if r.task.masks is None else r.task.masks[i]
            label = int(r.task.test.tensors[R.LABEL][r.task.shown[i]])
            captions.append(f"{r.task.title} — image {i}: true {r.task.class_names[label]}, "
                            f"BL predicts {r.task.class_names[predicted[i]]}")
            panels.append([map_panel_png(r.task.images[i], None if v is None else v[i], n, mask=mask)
                           for n, v in views.items()])
    return image_method_explorer(panels, names, captions, title="BLA and its baselines, per image")


def _views(r: TaskResults, features: Tensor, lime_maps: Tensor | None, config: BLAConfig) -> dict[str, Tensor | None]:
    """Name → ``[m, g, g]`` map (None: the plain input) for the explorer: CAM of BL, each head's soft map q
    (not L2X-F's) and hard δ, and LIME's positive part."""
    views: dict[str, Tensor | None] = {"input": None}
    with torch.no_grad():
        base = r.heads["bl"]
        views["CAM (BL)"] = cam(features, base.fc.weight, base(features).argmax(1)).cpu()
        for name in ("l2x_f", "bla", "bla_t", "bla_ph"):
            if name in r.heads:
                soft, hard = soft_and_hard(r.heads, name, features, config.cam_threshold)
                if name != "l2x_f":
                    views[f"{LABELS[name]} q"] = soft.cpu()
                views[f"{LABELS[name]} δ"] = hard.float().cpu()
    enough = lime_maps is not None and len(lime_maps) >= len(features)
    views["LIME"] = lime_maps[:len(features)].clamp(min=0) if enough else None  # None: LIME not computed
    return views
