"""Chapter 2's calibration of the cpu analog: the baseline's fit diagnostics, computed from trained models.

Analogs must be calibrated so that a comparison can go either way (design.md): neither at the ceiling nor so noisy
over seeds that every paired test is inconclusive. Two diagnostics tell *why* a baseline is noisy, beside its test
accuracy:

* **training accuracy**: top-1 accuracy on the model's own training images; well below 1 = under-fitted;
* **pair accuracy**: the share of test images whose prediction falls in the right confusable pair (the true class
  or its designed partner, :attr:`attnbook.data.synthetic.Benchmark.confusers`); near 1 while test accuracy is
  low = the pair is found, the one-part cue that splits it is not.

The notebook computes them on its own baseline models (section "Calibrating the analog"); the grid of settings
tried while calibrating (:data:`SETTINGS`, changes from the first version) is re-run by
``benchmarks/calibrate_sharpen_focus.py``. Chapter: ``nbs/02_sharpen_focus.ipynb``.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from attnbook import parallel
from attnbook.chapters.sharpen_focus.config import SharpenFocusConfig
from attnbook.chapters.sharpen_focus.pipeline import Job, Task, make_data, train_one
from attnbook.data import records as R
from attnbook.train import predict

# The first cpu analog (10 classes × 60 training images, Adam lr 5e-3, batch 32, 7 epochs), as changes to the
# cpu profile; every other setting of the grid changes it further. "chosen" is the cpu profile itself.
FIRST: dict[str, Any] = {"num_classes": 10, "train_per_class": 60, "lr": 5e-3, "batch_size": 32, "epochs": 7}
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "first": ("first version: 10 classes × 60, Adam lr 5e-3, batch 32, 7 epochs", FIRST),
    "lr1e-3": ("lr 1e-3", {**FIRST, "lr": 1e-3}),
    "lr2e-2": ("lr 2e-2", {**FIRST, "lr": 2e-2}),
    "lr5e-2": ("lr 5e-2", {**FIRST, "lr": 5e-2}),
    "sgd": ("SGD lr 0.1", {**FIRST, "optimizer": "sgd", "lr": 0.1}),
    "14ep": ("14 epochs", {**FIRST, "epochs": 14}),
    "120img": ("120 images per class", {**FIRST, "train_per_class": 120}),
    "120img-4ep": ("120 images per class, 4 epochs (the same steps)", {**FIRST, "train_per_class": 120, "epochs": 4}),
    "width16": ("width 16", {**FIRST, "width": 16}),
    "colour": ("pairs differ in colour only", {**FIRST, "disc_groups": ("color",)}),
    "3parts": ("3 parts per bird (larger parts)", {**FIRST, "num_parts": 3}),
    "lr2e-2-14ep": ("lr 2e-2, 14 epochs", {**FIRST, "lr": 2e-2, "epochs": 14}),
    "lr2e-2-14ep-b64": ("lr 2e-2, 14 epochs, batch 64", {**FIRST, "lr": 2e-2, "epochs": 14, "batch_size": 64}),
    "lr2e-2-b16": ("lr 2e-2, batch 16", {**FIRST, "lr": 2e-2, "batch_size": 16}),
    "lr2e-2-6x100": ("lr 2e-2, 6 classes × 100", {**FIRST, "lr": 2e-2, "num_classes": 6, "train_per_class": 100}),
    "lr2e-2-8x75": ("lr 2e-2, 8 classes × 75", {**FIRST, "lr": 2e-2, "num_classes": 8, "train_per_class": 75}),
    "chosen": ("chosen (the cpu profile): lr 2e-2, batch 16, 8 classes × 75, 7 epochs", {}),
}
DIAGNOSTICS = ("test_accuracy", "train_accuracy", "pair_accuracy")


def _labels(data: Any) -> torch.Tensor:
    if hasattr(data, "tensors"):
        return data.tensors[R.LABEL]
    return torch.tensor([int(data[i][R.LABEL]) for i in range(len(data))])


def diagnostics(model: torch.nn.Module, task: Task) -> dict[str, float]:
    """Test accuracy, training accuracy (on the model's own training images) and pair accuracy (prediction ∈
    {true class, its designed partner}; NaN without a benchmark, e.g. CIFAR-100) of one trained model."""
    test_pred = predict(model, task.test).argmax(1)
    test_labels = _labels(task.test)
    train_pred = predict(model, task.train).argmax(1)
    out = {"test_accuracy": float((test_pred == test_labels).float().mean()),
           "train_accuracy": float((train_pred == _labels(task.train)).float().mean()),
           "pair_accuracy": math.nan}
    if task.bench is not None:
        partner = task.bench.confusers[test_labels]
        out["pair_accuracy"] = float(((test_pred == test_labels) | (test_pred == partner)).float().mean())
    return out


def summarize(by_seed: Mapping[int, Mapping[str, float]]) -> dict[str, float]:
    """Over seeds: ``n_seeds`` and, per diagnostic, its mean and its sample sd (``…_sd``; NaN with one seed)."""
    out: dict[str, float] = {"n_seeds": len(by_seed)}
    for key in DIAGNOSTICS:
        values = np.array([float(d[key]) for d in by_seed.values()])
        out[key] = float(values.mean()) if len(values) else math.nan
        out[f"{key}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan  # NaN in, NaN out
    return out


def per_seed(models: Mapping[int, torch.nn.Module], task: Task) -> dict[int, dict[str, float]]:
    """:func:`diagnostics` of each trained model ``{seed: model}`` (the run's baselines: no training here)."""
    return {seed: diagnostics(model, task) for seed, model in sorted(models.items())}


def numbers(per_seed_diagnostics: Mapping[int, Mapping[str, float]]) -> dict[str, float]:
    """The numbers the notebook records under ``diagnostics/``: training and pair accuracy, mean and sd over seeds.
    Test accuracy is left out (the chapter records it once, as ``accuracy/baseline``), and so is any NaN (pair
    accuracy without designed pairs, e.g. CIFAR-100): the recorder refuses non-finite numbers."""
    summary = summarize(per_seed_diagnostics)
    keys = [f"{k}{sd}" for k in ("train_accuracy", "pair_accuracy") for sd in ("", "_sd")]
    return {k: summary[k] for k in keys if math.isfinite(summary[k])}


def sentence(per_seed_diagnostics: Mapping[int, Mapping[str, float]]) -> str:
    """The run's baseline diagnostics as the sentence the chapter quotes (``diagnostics/summary``); pair accuracy
    only where the data set has designed pairs (the testbed analogs, not CIFAR-100)."""
    s = summarize(per_seed_diagnostics)
    text = (f"This run's baselines ({s['n_seeds']:.0f} seeds): test accuracy {s['test_accuracy']:.1%} "
            f"(sd over seeds {s['test_accuracy_sd']:.1%}), accuracy on their own training images "
            f"{s['train_accuracy']:.1%} (sd {s['train_accuracy_sd']:.1%})")
    if math.isfinite(s["pair_accuracy"]):
        text += (f", prediction in the right pair for {s['pair_accuracy']:.1%} of the test images "
                 f"(sd {s['pair_accuracy_sd']:.1%})")
    return text + "."


def table(per_seed_diagnostics: Mapping[int, Mapping[str, float]]) -> pd.DataFrame:
    """One row per seed (test, training and pair accuracy), then their mean and sd over seeds."""
    frame = pd.DataFrame.from_dict(per_seed_diagnostics, orient="index")[list(DIAGNOSTICS)]
    summary = summarize(per_seed_diagnostics)
    frame.loc["mean"] = [summary[k] for k in DIAGNOSTICS]
    frame.loc["sd"] = [summary[f"{k}_sd"] for k in DIAGNOSTICS]
    frame.index = [i if isinstance(i, str) else f"seed {i}" for i in frame.index]
    return frame.rename(columns={"test_accuracy": "test accuracy", "train_accuracy": "training accuracy",
                                 "pair_accuracy": "right pair"})


def setting_config(base: SharpenFocusConfig, setting: str) -> SharpenFocusConfig:
    """``base`` (the cpu profile) with the changes of one calibration setting (:data:`SETTINGS`)."""
    return dataclasses.replace(base, **SETTINGS[setting][1])


def _seed_diagnostics(item: tuple[SharpenFocusConfig, int]) -> dict[str, float]:
    """One baseline trained from scratch (one worker process) and its diagnostics."""
    config, seed = item
    model, _ = train_one(config, Job("main", "baseline", seed))
    return diagnostics(model, make_data(config))


def calibrate(base: SharpenFocusConfig, settings: Sequence[str], n_seeds: int,
              workers: int | None = None) -> list[dict[str, Any]]:
    """Train the baseline of every setting × seeds ``base.seed …`` in one pool of one-thread processes
    (:func:`attnbook.parallel.process_map`); one row per setting: its name, description and :func:`summarize`."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
    items = [(setting_config(base, s), base.seed + k) for s in settings for k in range(n_seeds)]
    results = parallel.process_map(_seed_diagnostics, items, workers)
    rows = []
    for i, setting in enumerate(settings):
        chunk = results[i * n_seeds:(i + 1) * n_seeds]
        rows.append({"setting": setting, "description": SETTINGS[setting][0],
                     **summarize({base.seed + k: d for k, d in enumerate(chunk)})})
    return rows

