"""Chapter 0 — the testbed: the ground-truth benchmark, a baseline CNN trained on its biased split,
and every post-hoc explainer scored against the ground truth.

Chapter: ``nbs/00_testbed.ipynb``. Its numbers are the baselines the paper chapters compare with.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from attnbook import metrics, stats
from attnbook.chapters import Chapter
from attnbook.config import ChapterConfig, device_for, param
from attnbook.data import records as R
from attnbook.data.synthetic import PRESETS, Benchmark, make_benchmark, spec_for
from attnbook.explain import EXPLAINERS, explain
from attnbook.models.backbones import BACKBONES, Classifier, build_classifier
from attnbook.runs import RunRecorder
from attnbook.seeding import seed_everything
from attnbook.train import History, TrainConfig, fit, predict
from attnbook.viz.plots import map_panel_png, maps_table, to_numpy_image
from attnbook.viz.widgets import image_method_explorer

POST_HOC = ("cam", "activation", "gradcam", "gradcam++", "guided_backprop", "guided_gradcam", "lime")
SPLITS = ("test_aligned", "test_conflicting")


@dataclass(frozen=True)
class TestbedConfig(ChapterConfig):
    """Chapter 0 settings; the benchmark's data seed is fixed (0) so seeds vary training only."""

    preset: str = param("fine_grained", choices=tuple(PRESETS), help="benchmark preset (CUB analog)")
    num_classes: int = param(10, minimum=2, help="classes (pairs of confusable classes)")
    train_per_class: int = param(80, minimum=1)
    test_per_class: int = param(30, minimum=1)
    resolution: int = param(128, minimum=32, help="image side in pixels")
    p_bias: float = param(0.9, help="P(own habitat) in the training split")
    arch: str = param("resnet18", choices=tuple(BACKBONES), help="backbone, trained from scratch")
    small_input: bool = param(False, help="output stride 8 stem (costly on CPU)")
    epochs: int = param(5, minimum=1)
    batch_size: int = param(32, minimum=1)
    lr: float = param(1e-3)
    weight_decay: float = param(1e-4)
    explainers: tuple[str, ...] = param(POST_HOC, choices=tuple(EXPLAINERS), help="post-hoc explainers scored")
    n_explain: int = param(40, minimum=2, help="test objects explained (each seen in both test splits)")
    lime_images: int = param(16, minimum=1, help="of those, how many LIME explains (it is the slow one)")
    lime_samples: int = param(200, minimum=8, help="LIME perturbations per image (BLA §4.3 uses 1000)")
    lime_grid: int = param(8, minimum=2, help="LIME patch grid side")
    explorer_images: int = param(8, minimum=2, help="images in the explorer widget")


PROFILES = {
    "smoke": TestbedConfig(profile="smoke", num_classes=4, train_per_class=12, test_per_class=4, resolution=64,
                           epochs=1, n_explain=8, lime_images=4, lime_samples=24, lime_grid=4, explorer_images=4),
    "cpu": TestbedConfig(profile="cpu"),
    "gpu": TestbedConfig(profile="gpu", needs_gpu=True, num_classes=16, train_per_class=300, test_per_class=50,
                         resolution=224, epochs=30, n_explain=200, lime_images=100, lime_samples=1000, lime_grid=7),
    # The testbed has no paper of its own: `paper` is the GPU benchmark at the papers' 448 px.
    "paper": TestbedConfig(profile="paper", needs_gpu=True, num_classes=20, train_per_class=300, test_per_class=50,
                           resolution=448, epochs=30, batch_size=16, n_explain=200, lime_images=100,
                           lime_samples=1000, lime_grid=7),
}

CHAPTER = Chapter(
    notebook="00_testbed", title="The testbed", paper="— (shared benchmark and baselines)",
    profiles=PROFILES, parameters=("epochs", "arch", "p_bias", "resolution"),
    metrics={"accuracy/train": (0, 1), "accuracy/test_aligned": (0, 1), "accuracy/test_conflicting": (0, 1),
             "accuracy/bias_gap": (-1, 1), "data/bias_rate_train": (0, 1),
             **{f"explain/{name}/pointing_object": (0, 1) for name in POST_HOC}},
)


# --- data -------------------------------------------------------------------------------------------

def make_data(config: TestbedConfig) -> Benchmark:
    """The benchmark for ``config`` (data seed 0, so every training seed sees the same images)."""
    return make_benchmark(spec_for(config.preset, num_classes=config.num_classes,
                                   train_per_class=config.train_per_class, test_per_class=config.test_per_class,
                                   resolution=config.resolution, p_bias=config.p_bias, seed=0))


def figure_samples(bench: Benchmark, n: int = 8) -> Figure:
    """Top: images. Bottom: part masks in colour, landmarks (dots), box, discriminative part (white)."""
    t = bench.train.tensors
    n = min(n, len(bench.train))
    idx = torch.linspace(0, len(bench.train) - 1, n).long()
    fig, axes = plt.subplots(2, n, figsize=(1.8 * n, 3.8), squeeze=False)
    palette = plt.get_cmap("tab10")
    for col, i in enumerate(idx.tolist()):
        axes[0, col].imshow(to_numpy_image(t[R.IMAGE][i]))
        axes[0, col].set_title(bench.info.class_names[int(t[R.LABEL][i])], fontsize=7)
        parts = t[R.PART_MASKS][i]  # [P, H, W]
        canvas = np.ones((*parts.shape[1:], 3)) * 0.15
        for p in range(parts.shape[0]):
            canvas[parts[p].numpy()] = palette(p)[:3]
        axes[1, col].imshow(canvas)
        if t[R.DISC_MASK][i].any():
            axes[1, col].contour(t[R.DISC_MASK][i].float().numpy(), levels=[0.5], colors="white", linewidths=1.2)
        pts, vis = t[R.LANDMARKS][i], t[R.LANDMARK_VISIBLE][i]
        axes[1, col].scatter(pts[vis, 0] - 0.5, pts[vis, 1] - 0.5, s=10, c="white", edgecolors="black", linewidths=0.5)
        x0, y0, x1, y1 = t[R.BBOX][i].tolist()
        axes[1, col].add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="yellow", lw=0.8))
    for ax in axes.flat:
        ax.axis("off")
    handles = [plt.Line2D([], [], marker="s", ls="", color=palette(p)[:3], label=name)
               for p, name in enumerate(bench.info.part_names)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def figure_attribute_matrix(bench: Benchmark) -> Figure:
    """The class × attribute matrix (CUB's 200 × 312 analog), confusable pairs bracketed."""
    attrs = bench.class_attributes.numpy()
    fig, ax = plt.subplots(figsize=(min(16, 0.12 * attrs.shape[1] + 2), 0.3 * attrs.shape[0] + 1.5))
    ax.imshow(attrs, cmap="Greys", aspect="auto", interpolation="nearest")
    ax.set_yticks(range(attrs.shape[0]), bench.info.class_names, fontsize=7)
    names = bench.info.attribute_names
    starts = [k for k, n in enumerate(names) if k == 0 or n.split("::")[0] != names[k - 1].split("::")[0]]
    ax.set_xticks(starts, [names[k].split("::")[0] for k in starts], rotation=90, fontsize=7)
    for c, partner in enumerate(bench.confusers.tolist()):
        if partner > c:
            diff = np.nonzero(attrs[c] != attrs[partner])[0]
            ax.scatter(diff, [c + 0.5] * len(diff), marker="|", s=200, color="red")
    ax.set_title("class × attribute matrix (red ticks: the attributes that separate a confusable pair)", fontsize=9)
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


def figure_bias(bench: Benchmark, n: int = 6) -> Figure:
    """Top: training co-occurrence of class and habitat. Bottom: the same objects on their own habitat
    (bias-aligned test split) and on another (bias-conflicting)."""
    fig = plt.figure(figsize=(1.7 * n, 6.2))
    grid = fig.add_gridspec(3, n, height_ratios=(2.2, 1, 1))
    ax = fig.add_subplot(grid[0, :])
    counts = torch.zeros(bench.spec.num_classes, len(bench.backgrounds))
    counts.index_put_((bench.train.tensors[R.LABEL], bench.train.habitats), torch.ones(len(bench.train)), accumulate=True)
    ax.imshow(counts.numpy(), cmap="viridis", aspect="auto")
    ax.set_xlabel("habitat (background texture)")
    ax.set_ylabel("class")
    ax.set_title(f"training split: class × habitat counts (p_bias = {bench.spec.p_bias})", fontsize=9)
    for col in range(n):
        for row, split in enumerate(SPLITS, start=1):
            a = fig.add_subplot(grid[row, col])
            a.imshow(to_numpy_image(bench.split(split).tensors[R.IMAGE][col]))
            a.axis("off")
            if col == 0:
                a.set_title("aligned" if row == 1 else "conflicting", fontsize=8, loc="left")
    fig.tight_layout()
    return fig


# --- the baseline -----------------------------------------------------------------------------------

def train_config(config: TestbedConfig) -> TrainConfig:
    return TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                       weight_decay=config.weight_decay, optimizer="adam", scheduler="cosine", seed=config.seed,
                       device=device_for(config))


def train_baseline(config: TestbedConfig, bench: Benchmark, checkpoint_dir: Path | None) -> tuple[Classifier, History]:
    """A backbone + GAP head trained from scratch on the biased training split (resumes from checkpoints)."""
    seed_everything(config.seed)
    model = build_classifier(config.arch, bench.spec.num_classes, small_input=config.small_input)
    history = fit(model, bench.train, train_config(config), checkpoint_dir=checkpoint_dir,
                  eval_data={"aligned": bench.test_aligned, "conflicting": bench.test_conflicting})
    return model.eval(), history


def figure_history(history: History) -> Figure:
    frame = pd.DataFrame(history)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3))
    for split, style in (("train", "-"), ("aligned", "--"), ("conflicting", ":")):
        ax_loss.plot(frame["epoch"], frame[f"{split}_loss"], style, marker="o", ms=3, label=split)
        ax_acc.plot(frame["epoch"], frame[f"{split}_acc"], style, marker="o", ms=3, label=split)
    ax_loss.set(xlabel="epoch", ylabel="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1))
    ax_acc.legend(fontsize=8)
    fig.tight_layout()
    return fig


def split_correctness(model: Classifier, bench: Benchmark) -> dict[str, torch.Tensor]:
    """Per-image correctness (bool) on the training split and both test splits."""
    out = {}
    for split in ("train",) + SPLITS:
        data = bench.split(split)
        out[split] = predict(model, data).argmax(1) == data.tensors[R.LABEL]
    return out


# --- explainers against ground truth ----------------------------------------------------------------

@dataclass
class Explanations:
    """Maps of each explainer at image resolution on the same objects in both test splits."""

    maps: dict[str, dict[str, torch.Tensor]]  # split -> explainer -> [N, H, W] (ReLU'd)
    truth: dict[str, dict[str, torch.Tensor]]  # split -> records key -> [N, ...]
    predicted: dict[str, torch.Tensor]  # split -> [N]


def layer_names(model: Classifier) -> tuple[str, str]:
    """(last feature stage, linear classifier) as dotted names for the explainers."""
    return f"backbone.{model.backbone.stage_names[-1]}", "head.fc"


def explain_test_objects(config: TestbedConfig, model: Classifier, bench: Benchmark) -> Explanations:
    """Run every configured explainer on the first ``n_explain`` test objects of both test splits,
    explaining the true class. LIME runs on the first ``lime_images`` of them only."""
    layer, fc = layer_names(model)
    size = (config.resolution, config.resolution)
    maps: dict[str, dict[str, torch.Tensor]] = {}
    truth, predicted = {}, {}
    for split in SPLITS:
        t = bench.split(split).tensors
        n = min(config.n_explain, len(bench.split(split)))
        x, y = t[R.IMAGE][:n], t[R.LABEL][:n]
        truth[split] = {k: t[k][:n] for k in (R.IMAGE, R.LABEL, R.MASK, R.DISC_MASK, R.PART_MASKS)}
        with torch.no_grad():
            predicted[split] = model(x).argmax(1)
        maps[split] = {}
        for name in config.explainers:
            if name == "lime":
                m = min(config.lime_images, n)
                gen = torch.Generator().manual_seed(config.seed)
                raw = explain("lime", model, x[:m], y[:m], size=size, grid=config.lime_grid,
                              num_samples=config.lime_samples, generator=gen)
            else:
                raw = explain(name, model, x, y, layer=layer, fc=fc, size=size)
            maps[split][name] = raw.detach().clamp(min=0)  # positive evidence only
    return Explanations(maps, truth, predicted)


def score_explanations(ex: Explanations) -> pd.DataFrame:
    """One row per (explainer, split): median FAR, pointing game on the object and on the discriminative
    part, mass on the object and on the discriminative part, sparsity (max/mean) — each over the images
    where the metric is defined."""
    rows = []
    for split, by_name in ex.maps.items():
        for name, maps in by_name.items():
            n = len(maps)
            mask, disc = ex.truth[split][R.MASK][:n], ex.truth[split][R.DISC_MASK][:n]
            ones = torch.ones(n, *maps.shape[1:])
            rows.append({
                "explainer": name, "split": split, "images": n,
                "far_median": float(torch.nanmedian(metrics.far(maps, mask))),
                "pointing_object": float(torch.nanmean(metrics.pointing_game(maps, mask))),
                "pointing_disc_part": float(torch.nanmean(metrics.pointing_game(maps, disc))),
                "mass_object": float(torch.nanmean(metrics.mass_in_region(maps, mask))),
                "mass_disc_part": float(torch.nanmean(metrics.mass_in_region(maps, disc))),
                "sparsity": float(torch.nanmean(metrics.sparsity(maps[:, None], ones))),
                "object_area": float(mask.float().mean()),
            })
    return pd.DataFrame(rows)


def object_area(bench: Benchmark) -> float:
    """Mean fraction of the image the object covers — the mass a uniform map puts on it."""
    return float(bench.test_aligned.tensors[R.MASK].float().mean())


def figure_maps(ex: Explanations, split: str, n: int = 4) -> Figure:
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


# --- the ledger -------------------------------------------------------------------------------------

def record_claims(recorder: RunRecorder, correct: dict[str, torch.Tensor], ex: Explanations,
                  config: TestbedConfig) -> None:
    """Claims of the papers that the testbed itself can test (as synthetic analogs)."""
    setting = (f"synthetic {config.preset} analog, {config.resolution} px, {config.arch} from scratch, "
               f"p_bias={config.p_bias}, {config.profile} profile, seed {config.seed}")
    gap = stats.two_proportions(correct["test_conflicting"], correct["test_aligned"])
    recorder.claim(id="eat-habitat-bias", paper="EAT",
                   claim="a base model trained with habitat bias relies on the background (premise of EAT)",
                   paper_value="qualitative", ours=round(gap.effect, 4), setting=setting,
                   status=stats.verdict(gap, +1),
                   note=f"accuracy bias-aligned − bias-conflicting on the same objects; {gap}")
    split = "test_aligned"
    if {"gradcam", "guided_gradcam"} <= set(ex.maps[split]):
        mask = ex.truth[split][R.MASK]
        hits = {k: metrics.pointing_game(ex.maps[split][k], mask) == 1 for k in ("gradcam", "guided_gradcam")}
        test = stats.paired_binary(hits["gradcam"], hits["guided_gradcam"])
        recorder.claim(id="rg-table6-guided", paper="Region Grouping",
                       claim="Table 6: Guided Grad-CAM points at the object more often than Grad-CAM "
                             "(pointing error 8.2% vs 11.8%, iNat2017)",
                       paper_value="8.2% vs 11.8%",
                       ours=f"{1 - hits['guided_gradcam'].float().mean():.1%} vs {1 - hits['gradcam'].float().mean():.1%}",
                       setting=setting + ", boxes → object masks", status=stats.verdict(test, +1),
                       note=f"paired hits on {len(mask)} bias-aligned test images; {test}")
