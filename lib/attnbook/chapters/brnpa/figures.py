"""Chapter 5's tables, figures and explorer widget: Tables 1, 4, 5, 6 (analogs), Fig. 8 (gradient norms),
the §4.4 importance hierarchy on ground truth, Figs. 1/3/5 (maps beside post-hoc explainers) and Fig. 9
(cost). Paper: BR-NPA (Gomez et al.).

Chapter: ``nbs/05_brnpa.ipynb``. Tables are pandas frames (the notebook records them in ``metrics.json``);
figures are matplotlib figures; the explorer is a kernel-free ipywidget over precomputed panels.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from attnbook import metrics, stats
from attnbook.chapters.brnpa.config import ABLATIONS, DISC, KIND_NAMES, KINDS, OBJECT, RESOLUTIONS
from attnbook.chapters.brnpa.evaluation import Evaluation, per_seed, per_seed_on_grid, pooled, subset_hits
from attnbook.chapters.brnpa.explanations import Examples
from attnbook.chapters.brnpa.pipeline import ImageTask
from attnbook.chapters.brnpa.studies import ResolutionStudy
from attnbook.viz.plots import map_panel_png, overlay, to_numpy_image
from attnbook.viz.rgb_maps import picture_grid, rgb_overlay, rgb_panel_png
from attnbook.viz.style import PAGE_WIDTH, house_style
from attnbook.viz.widgets import image_method_explorer

# --- Tables 1 and 6, Fig. 8 ---------------------------------------------------------------------------


SPARSITY_COLUMNS = ("sparsity", "sparsity on low-res grid", "normalised sparsity")


def resolution_table(study: ResolutionStudy) -> pd.DataFrame:
    """Table 6 analog, each value mean ± s.e. over seeds per kind and resolution: accuracy; the paper's
    sparsity (max / mean, bounded by the map's h·w cells); the sparsity at equal cell count (the map resampled
    by area onto the low-resolution grid); and the normalised sparsity (max / mean − 1) / (h·w − 1). The plain
    CNN (GAP: a uniform map, so its sparsity is that of the feature norms) is the control."""
    rows = []
    for kind in KINDS:
        grid = study.of(kind, "low")[0].map_size
        for resolution in RESOLUTIONS:
            evals = study.of(kind, resolution)
            row = {"model": KIND_NAMES[kind], "resolution": resolution, "map": "×".join(map(str, evals[0].map_size)),
                   "cells": evals[0].cells, "distilled": resolution == "high", "seeds": len(evals)}
            values = {"accuracy": per_seed(evals, "hits"), "sparsity": per_seed(evals, "sparsity"),
                      "sparsity on low-res grid": per_seed_on_grid(evals, grid),
                      "normalised sparsity": per_seed(evals, "sparsity_normalised")}
            for column, by_seed in values.items():
                by_seed = by_seed[np.isfinite(by_seed)]
                row[column], row[f"{column} s.e."] = stats.mean_se(by_seed) if by_seed.size else (np.nan, np.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def table1(studies: Mapping[str, ResolutionStudy]) -> pd.DataFrame:
    """Table 1 analog: accuracy (mean ± s.e. over seeds) of the distilled high-resolution models per dataset."""
    tables = {name: resolution_table(study) for name, study in studies.items()}
    frame = pd.concat(tables, names=["dataset", "row"]).reset_index("dataset").reset_index(drop=True)
    return frame[frame.resolution == "high"][["dataset", "model", "map", "seeds", "accuracy", "accuracy s.e."]]


@house_style
def figure_resolution(table: pd.DataFrame) -> Figure:
    """Bars: accuracy and the three sparsities of :func:`resolution_table` per model at low and high
    (distilled) resolution (Table 6), in a 2 × 2 grid."""
    fig, grid = plt.subplots(2, 2, figsize=(PAGE_WIDTH, 6.0))
    axes = grid.ravel()
    models = list(dict.fromkeys(table["model"]))
    x = np.arange(len(models))
    for ax, column in zip(axes, ("accuracy", *SPARSITY_COLUMNS)):
        for offset, resolution in ((-0.2, "low"), (0.2, "high")):
            part = table[table.resolution == resolution].set_index("model").loc[models]
            label = f"{resolution} ({part['map'].iloc[0]}{', distilled' if resolution == 'high' else ''})"
            ax.bar(x + offset, part[column], 0.4, yerr=part[f"{column} s.e."], capsize=3, label=label)
        ax.set_xticks(x, models)
        ax.set_title(column)
        ax.set_ylim(bottom=0)
    axes[0].set_ylim(0, 1)
    axes[2].set_title("sparsity on the low-res grid\n(equal cells)")
    axes[3].set_title("normalised sparsity\n(max/mean − 1) / (h·w − 1)")
    axes[0].legend()
    fig.tight_layout()
    return fig


def grad_variance_table(study: ResolutionStudy) -> pd.DataFrame:
    """Fig. 8 analog: per (kind, seed, conv) the mean, variance and coefficient of variation of ‖∂L/∂W‖."""
    rows = []
    for (kind, seed), by_layer in study.grad_norms.items():
        for layer, values in by_layer.items():
            arr = np.asarray(values)
            rows.append({"model": KIND_NAMES[kind], "kind": kind, "seed": seed, "layer": layer, "steps": len(arr),
                         "mean": arr.mean(), "variance": arr.var(ddof=1), "cv": arr.std(ddof=1) / arr.mean()})
    return pd.DataFrame(rows)


@house_style
def figure_grad_norms(study: ResolutionStudy, seed: int) -> Figure:
    """Gradient norm of the last three convs during training, per head (one seed). Paper: Fig. 8."""
    layers = list(study.grad_norms[KINDS[0], seed])
    fig, axes = plt.subplots(1, len(layers), figsize=(PAGE_WIDTH, 3), squeeze=False, sharey=True)
    for ax, layer in zip(axes[0], layers):
        for kind in KINDS:
            ax.plot(study.grad_norms[kind, seed][layer], lw=1, label=KIND_NAMES[kind])
        ax.set(title=layer, xlabel="training step", yscale="log")
    axes[0, 0].set_ylabel("‖∂L/∂W‖")
    axes[0, 0].legend()
    fig.tight_layout()
    return fig


# --- Tables 4 and 5, and the authors' code vs the paper ----------------------------------------------

def ablation_table(ablations: Mapping[str, Sequence[Evaluation]], names: Sequence[str]) -> pd.DataFrame:
    """Accuracy, sparsity, how often an anchor repeats, and map 1's share on the discriminative part
    (Table 4/7 and the paper's rules against the authors' code)."""
    rows = []
    for name in names:
        evals = ablations[name]
        acc = [e.accuracy for e in evals]
        row = {"variant": ABLATIONS[name][0], "seeds": len(evals),
               "accuracy": stats.mean_se(acc)[0], "accuracy s.e.": stats.mean_se(acc)[1],
               "sparsity": float(torch.nanmean(pooled(evals, "sparsity"))),
               "repeated anchor": float(pooled(evals, "repeats").float().mean())}
        if evals[0].mass is not None:
            row["map 1 on disc. part"] = float(torch.nanmean(pooled(evals, "mass")[:, 0, 1]))
        rows.append(row)
    return pd.DataFrame(rows)


def subset_table(evaluations: Sequence[Evaluation]) -> pd.DataFrame:
    """Table 5 analog: accuracy of the classifier on each subset of ranked vectors (main = {1, 2, 3})."""
    rows = []
    for subset, hits in subset_hits(evaluations).items():
        acc = [float(h.float().mean()) for h in hits]
        rows.append({"vectors": "{" + ", ".join(map(str, subset)) + "}", "subset": subset, "seeds": len(hits),
                     "accuracy": stats.mean_se(acc)[0], "accuracy s.e.": stats.mean_se(acc)[1]})
    return pd.DataFrame(rows)


@house_style
def figure_ablations(table4: pd.DataFrame, table5: pd.DataFrame, code: pd.DataFrame) -> Figure:
    """Bars: Table 4 variants, Table 5 subsets, and the authors' code vs the paper's rules (one row each,
    the same accuracy axis, cut to the values' range)."""
    fig, axes = plt.subplots(3, 1, figsize=(PAGE_WIDTH, 9.0))
    values = pd.concat([t["accuracy"] for t in (table4, table5, code)])
    low, high = max(0.0, values.min() - 0.15), min(1.0, values.max() + 0.05)
    for ax, table, label, title in ((axes[0], table4, "variant", "Table 4: selection × refinement"),
                                    (axes[1], table5, "vectors", "Table 5: vector subsets"),
                                    (axes[2], code, "variant", "paper's rules vs the authors' code")):
        bars = ax.bar(range(len(table)), table["accuracy"], yerr=table["accuracy s.e."], capsize=3)
        ax.bar_label(bars, fmt="%.3f", padding=2)
        ax.set_xticks(range(len(table)), table[label], rotation=20, ha="right")
        ax.set(ylim=(low, high), title=title, ylabel="accuracy (axis cut)")
    fig.tight_layout()
    return fig


# --- the importance hierarchy on ground truth (§4.4, Fig. 5) ------------------------------------------

def hierarchy_table(study: ResolutionStudy, resolution: str = "high") -> pd.DataFrame:
    """Mean share of each map's norm-weighted mass on the object, the discriminative part and every
    part, plus the pointing game on the discriminative part, per model and map rank (pooled seeds).
    B-CNN's map index carries no rank: its rows are the control."""
    rows: list[dict[str, Any]] = []
    if any(e.mass is None for e in study.evaluations.values()):
        return pd.DataFrame(rows)  # no part masks in this dataset
    for kind in ("brnpa", "bcnn"):
        mass, pointing = study.pooled(kind, resolution, "mass"), study.pooled(kind, resolution, "pointing")
        regions = next(e.regions for (k, _, _), e in study.evaluations.items() if k == kind)
        for k in range(mass.shape[1]):
            row = {"model": KIND_NAMES[kind], "map": k + 1,
                   **{region: float(torch.nanmean(mass[:, k, r])) for r, region in enumerate(regions)},
                   "pointing on disc. part": float(torch.nanmean(pointing[:, k]))}
            rows.append(row)
    return pd.DataFrame(rows)


@house_style
def figure_hierarchy(table: pd.DataFrame, areas: Mapping[str, float]) -> Figure:
    """Heat map: rows = (model, map rank), columns = regions; numbers = share of the map's mass, colour =
    that share over the region's area (1 = no preference, as a uniform map)."""
    if table.empty:
        fig, ax = plt.subplots(figsize=(5, 1))
        ax.text(0.5, 0.5, "no part masks in this dataset", ha="center", va="center")
        ax.axis("off")
        return fig
    regions = list(areas)
    mass = table[regions].to_numpy(dtype=float)
    enrichment = mass / np.asarray(list(areas.values()))[None]
    labels = [f"{m} map {k}" for m, k in zip(table["model"], table["map"])]
    fig, ax = plt.subplots(figsize=(min(PAGE_WIDTH, 0.9 * len(regions) + 3.2), 0.45 * len(labels) + 1.9))
    top = np.nanmax(enrichment) if np.isfinite(enrichment).any() else 1.0
    image = ax.imshow(enrichment, cmap="magma", aspect="auto", vmin=0, vmax=max(top, 1.0))
    ax.set_xticks(range(len(regions)), [f"{r}\n(area {areas[r]:.3f})" for r in regions], rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for (i, j), value in np.ndenumerate(mass):
        ax.text(j, i, "—" if np.isnan(value) else f"{value:.2f}", ha="center", va="center",
                color="white" if np.isfinite(enrichment[i, j]) and enrichment[i, j] <= 0.6 * top else "black")
    fig.colorbar(image, ax=ax, label="share of mass ÷ share of area")
    ax.set_title("where the ranked maps put their mass\n(norm-weighted, high resolution, all seeds)")
    fig.tight_layout()
    return fig


# --- Figures 1 / 3 / 5: maps beside post-hoc explainers ----------------------------------------------

def localization_table(examples: Examples) -> pd.DataFrame:
    """Every method's map against the ground truth: share of its mass and pointing game on the object
    and on the discriminative part, sparsity (max / mean); means over the images where defined."""
    if examples.masks is None or examples.disc is None:
        return pd.DataFrame()
    rows = []
    for name, maps in {**examples.heat, **examples.weighted}.items():
        row: dict[str, Any] = {"method": name}
        for region, mask in ((OBJECT, examples.masks), (DISC, examples.disc)):
            row[f"mass on {region}"] = float(torch.nanmean(metrics.mass_in_region(maps, mask)))
            row[f"pointing on {region}"] = float(torch.nanmean(metrics.pointing_game(maps, mask)))
        row["sparsity"] = float(torch.nanmean(metrics.sparsity(maps[:, None], torch.ones_like(maps))))
        rows.append(row)
    return pd.DataFrame(rows)


def _pictures(examples: Examples, i: int) -> list[np.ndarray]:
    image = examples.images[i]
    return ([overlay(image, heat[i]) for heat in examples.heat.values()]
            + [rgb_overlay(image, rgb[i]) for rgb in examples.rgb.values()])


def figure_maps(examples: Examples, n: int) -> Figure:
    """Paper Figs. 1/3/5: input, post-hoc maps (magma, one colour bar), B-CNN and BR-NPA maps in RGB
    (map 1/2/3 = R/G/B, legend)."""
    rows = [[to_numpy_image(examples.images[i]), *_pictures(examples, i)] for i in range(min(n, len(examples.images)))]
    return picture_grid(rows, ["input", *examples.heat, *examples.rgb], heat_columns=len(examples.heat),
                        rgb_columns=len(examples.rgb))


def explorer(examples: Examples, task: ImageTask, n: int) -> Any:
    """Widget: image slider × method buttons over precomputed panels (works without a kernel)."""
    methods = [*examples.heat, *examples.rgb]
    panels, captions = [], []
    for i in range(min(n, len(examples.images))):
        image = examples.images[i]
        mask = None if examples.masks is None else examples.masks[i]
        panels.append([map_panel_png(image, examples.heat[m][i], m, mask=mask) for m in examples.heat]
                      + [rgb_panel_png(image, examples.rgb[m][i], m, mask=mask) for m in examples.rgb])
        captions.append(f"test image {i}: {task.info.class_names[int(examples.labels[i])]}")
    return image_method_explorer(panels, methods, captions,
                                 title="BR-NPA vs B-CNN vs post-hoc explainers (RGB = maps 1, 2, 3)")


# --- efficiency (Fig. 9, App. B.4) ------------------------------------------------------------------

@house_style
def figure_efficiency(long: pd.DataFrame) -> Figure:
    """Bars: ms per training step and extra peak memory per backbone and head (Fig. 9)."""
    ok = long[long["ms_per_step"].notna()] if "ms_per_step" in long else long
    archs, heads = list(dict.fromkeys(ok["backbone"])), list(dict.fromkeys(ok["head"]))
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 3.2))
    width = 0.8 / len(heads)
    panels = ((axes[0], "ms_per_step", "training step (ms)"), (axes[1], "peak_mib", "extra peak memory (MiB)"))
    for ax, column, title in panels:
        for j, head in enumerate(heads):
            values = ok[ok["head"] == head].set_index("backbone").reindex(archs)[column]
            ax.bar(np.arange(len(archs)) + (j - (len(heads) - 1) / 2) * width, values, width,
                   label=KIND_NAMES[head])
        ax.set_xticks(range(len(archs)), archs)
        ax.set_title(title)
    axes[0].legend()
    fig.tight_layout()
    return fig
