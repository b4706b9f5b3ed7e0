"""Chapter 0's pipeline: the benchmark, the baseline trained on its biased split, post-hoc explainers
on the same objects in both test splits, scored against the ground truth.

Chapter: ``nbs/00_testbed.ipynb``. Configuration: :mod:`attnbook.chapters.testbed.config`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from attnbook import metrics
from attnbook.chapters.testbed.config import SPLITS, TestbedConfig
from attnbook.config import device_for
from attnbook.data import records as R
from attnbook.data.synthetic import Benchmark, make_benchmark, spec_for
from attnbook.devices import training_processes
from attnbook.explain import explain
from attnbook.models.backbones import Classifier, build_classifier
from attnbook.seeding import seed_everything
from attnbook.train import History, TrainConfig, fit, predict


def make_data(config: TestbedConfig) -> Benchmark:
    """The benchmark for ``config`` (data seed 0, so every training seed sees the same images)."""
    return make_benchmark(spec_for(config.preset, num_classes=config.num_classes,
                                   train_per_class=config.train_per_class, test_per_class=config.test_per_class,
                                   resolution=config.resolution, p_bias=config.p_bias, seed=0))


def train_config(config: TestbedConfig) -> TrainConfig:
    """The baseline's :class:`TrainConfig`: Adam with a cosine schedule, on the device ``config`` asks for."""
    return TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                       weight_decay=config.weight_decay, optimizer="adam", scheduler="cosine", seed=config.seed,
                       device=device_for(config), devices=training_processes(config.devices))


def checkpoint_context(config: TestbedConfig, bench: Benchmark, context: Mapping[str, Any] | None = None) -> dict:
    """What a baseline checkpoint must match besides its training config, model and code version: the
    resolved chapter config and the benchmark spec, plus the caller's ``context``
    (``recorder.checkpoint_context``)."""
    return {"config": config, "data": bench.spec, "data_key": bench.spec.key(), **(context or {})}


def train_baseline(config: TestbedConfig, bench: Benchmark, checkpoint_dir: Path | None,
                   context: Mapping[str, Any] | None = None) -> tuple[Classifier, History]:
    """A backbone + GAP head trained from scratch on the biased training split. Resumes from
    ``checkpoint_dir`` only a checkpoint of the same chapter config, data and code
    (:func:`checkpoint_context`); another one is refused, not resumed."""
    seed_everything(config.seed)
    model = build_classifier(config.arch, bench.spec.num_classes, small_input=config.small_input)
    history = fit(model, bench.train, train_config(config), checkpoint_dir=checkpoint_dir,
                  context=checkpoint_context(config, bench, context),
                  eval_data={"aligned": bench.test_aligned, "conflicting": bench.test_conflicting})
    return model.eval(), history


def split_correctness(model: Classifier, bench: Benchmark) -> dict[str, torch.Tensor]:
    """Per-image correctness (bool) on the training split and both test splits."""
    out = {}
    for split in ("train",) + SPLITS:
        data = bench.split(split)
        out[split] = predict(model, data).argmax(1) == data.tensors[R.LABEL]
    return out


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


