"""Chapter 2's paper profile beyond CIFAR-100: the protocols of Tables 3–6 (Caltech-256 N = 30 / 60 with ResNet-18
and VGG-19, ImageNet ResNet-18, CUB-200-2011 ResNet-50 / -101 at 448 px, VOC 2012 multi-label ResNet-18), each a
:class:`~attnbook.chapters.sharpen_focus.config.Study`: the baseline and the models trained with Eq. 9 on A_ch
(and A_px where the table has it) over ``study_seeds`` seeds, from the same initial weights, scored on the test
split (top-1; VOC: macro AP and ROC AUC on ``val``).

A study whose data set or ImageNet weights are missing stops before any training and reports what is missing
(:class:`StudyResult` ``why``; the ledger rows read "not run" with it) — the other studies still run. Weights are
never downloaded (:mod:`attnbook.models.weights`). Augmentation: horizontal flip + pad-and-crop
(:func:`~attnbook.chapters.sharpen_focus.pipeline.pad_crop_flip`, pad = side / 8), our stand-in for the paper's
"mirror and random cropping" (images are squashed to the protocol's square side by the loaders).

Chapter: ``nbs/02_sharpen_focus.ipynb``. Configuration: :mod:`attnbook.chapters.sharpen_focus.config`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from attnbook import metrics
from attnbook.chapters.sharpen_focus.config import STUDIES, SharpenFocusConfig, Study, study_seeds
from attnbook.chapters.sharpen_focus.pipeline import Augmented, options_for
from attnbook.config import device_for
from attnbook.devices import training_processes
from attnbook.methods.sharpen_focus import SharpenFocusHead, SharpenFocusModel, SharpenFocusObjective
from attnbook.seeding import seed_everything
from attnbook.train import TrainConfig, fit, predict

TEST_PER_CLASS_CALTECH = 25  # seed §4.1 (after Griffin et al.)


@dataclass
class StudyResult:
    """One study: its protocol as run, and per model (``baseline`` and the study's kinds) per seed the scores
    (``accuracy``, or ``ap`` and ``auc``); ``why`` (not empty) when it did not run."""

    name: str
    study: Study
    scores: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)
    why: str = ""
    n_train: int = 0
    n_test: int = 0

    @property
    def ran(self) -> bool:
        """Whether the study trained and scored its models."""
        return not self.why


def protocol(config: SharpenFocusConfig, name: str) -> Study:
    """The study ``name`` with the run's overrides (``study_epochs``, ``study_resolution``, ``study_batch_size``;
    0 keeps the protocol's); step milestones beyond the shortened schedule are dropped."""
    study = STUDIES[name]
    changes: dict[str, Any] = {}
    if config.study_epochs:
        changes["epochs"] = config.study_epochs
        changes["milestones"] = tuple(m for m in study.milestones if m < config.study_epochs) or (
            (max(1, config.study_epochs // 2),) if study.scheduler == "step" else ())
    if config.study_resolution:
        changes["resolution"] = config.study_resolution
    if config.study_batch_size:
        changes["batch_size"] = config.study_batch_size
    return replace(study, **changes)


def missing(study: Study) -> str:
    """Why ``study`` cannot run here ("" if it can): its data set (``attnbook data prepare …``) or its ImageNet
    weights (the fetch command), checked before any training."""
    from attnbook.data.catalog import require_dataset
    from attnbook.data.real.paths import DatasetMissingError
    from attnbook.models.weights import WeightsUnavailable, cache_path, verify, weights_url

    try:
        require_dataset(study.dataset)
    except DatasetMissingError as err:
        return str(err)
    if study.pretrained:
        path = cache_path(weights_url(study.arch))
        if not path.exists():
            return (f"ImageNet weights of {study.arch} not in the local cache ({path}); fetch them on a connected "
                    f"machine (e.g. ATTNBOOK_ALLOW_DOWNLOAD=1 python -c \"from attnbook.models.backbones import "
                    f"build_backbone; build_backbone('{study.arch}', pretrained=True)\") and copy the file there")
        try:
            verify(path)
        except WeightsUnavailable as err:
            return str(err)
    return ""


@lru_cache(maxsize=2)
def _splits(dataset: str, resolution: int, n_train: int) -> tuple[Dataset, Dataset]:
    from attnbook.data.catalog import load_dataset

    if dataset == "caltech256":
        kw: dict[str, Any] = {"n_train": n_train, "n_test": TEST_PER_CLASS_CALTECH, "seed": 0}
        return (load_dataset(dataset, split="train", size=resolution, **kw),
                load_dataset(dataset, split="test", size=resolution, **kw))
    if dataset == "cub":
        kw = {"landmarks": False, "bbox": False}
        return (load_dataset(dataset, split="train", size=resolution, **kw),
                load_dataset(dataset, split="test", size=resolution, **kw))
    test = "val"  # VOC 2012: the test labels are on the evaluation server only; ImageNet: the val set
    return load_dataset(dataset, split="train", size=resolution), load_dataset(dataset, split=test, size=resolution)


def load_splits(study: Study) -> tuple[Dataset, Dataset]:
    """Train and test split of the study's data set at its side (cached: the seeds and models share them)."""
    return _splits(study.dataset, study.resolution, study.n_train)


def build_model(study: Study, num_classes: int, seed: int) -> SharpenFocusModel:
    """The study's torchvision backbone (ImageNet weights if ``pretrained``, offline and verified) with a Sharpen
    Focus head (GAP + linear, initialised from ``seed``) and its inner / last layers."""
    from attnbook.models.backbones import build_backbone

    seed_everything(seed)
    backbone = build_backbone(study.arch, pretrained=study.pretrained)
    return SharpenFocusModel(backbone, SharpenFocusHead(backbone.out_channels, num_classes), *study.layers)


def train_config(config: SharpenFocusConfig, study: Study, seed: int) -> TrainConfig:
    """SGD (momentum 0.9) with the study's schedule, on the run's device(s) (``devices``: DDP over GPUs), images
    decoded in ``study_workers`` DataLoader processes."""
    return TrainConfig(epochs=study.epochs, batch_size=study.batch_size, lr=study.lr,
                       weight_decay=study.weight_decay, optimizer="sgd", scheduler=study.scheduler,
                       milestones=study.milestones, seed=seed, device=device_for(config), progress=False,
                       num_workers=config.study_workers, devices=training_processes(config.devices))


def labels_of(data: Dataset) -> torch.Tensor:
    """The labels of a real-data split without reading its images: ``[N]`` class indices or ``[N, K]`` multi-hot."""
    labels = data.labels
    return labels if isinstance(labels, torch.Tensor) else torch.as_tensor(labels)


def score(model: SharpenFocusModel, test: Dataset, multilabel: bool) -> dict[str, float]:
    """Top-1 accuracy, or (multi-label) macro AP and ROC AUC over classes, on ``test``."""
    logits, labels = predict(model, test), labels_of(test)
    if multilabel:
        return {"ap": metrics.mean_average_precision(logits, labels), "auc": metrics.mean_roc_auc(logits, labels)}
    return {"accuracy": float((logits.argmax(1) == labels).float().mean())}


def run_study(config: SharpenFocusConfig, name: str, checkpoint_dir: Path | None = None,
              context: Mapping[str, Any] | None = None) -> StudyResult:
    """Train and score the study's models over the study seeds, or report what is missing."""
    study = protocol(config, name)
    why = missing(study)
    if why:
        return StudyResult(name, study, why=why)
    train, test = load_splits(study)
    result = StudyResult(name, study, n_train=len(train), n_test=len(test))
    num_classes = train.info.num_classes
    for seed in study_seeds(config):
        for kind in ("baseline", *study.kinds):
            model = build_model(study, num_classes, seed).to(device_for(config))
            objective = Augmented(SharpenFocusObjective(options_for(config, kind), multilabel=study.multilabel,
                                                        enabled=kind != "baseline"), pad=max(1, study.resolution // 8))
            directory = None if checkpoint_dir is None else Path(checkpoint_dir) / f"study-{name}-{kind}-seed{seed}"
            fit(model, train, train_config(config, study, seed), objective=objective, checkpoint_dir=directory,
                context={"study": name, "kind": kind, "protocol": study, **(context or {})})
            result.scores.setdefault(kind, {})[seed] = score(model.eval(), test, study.multilabel)
    return result


def run_studies(config: SharpenFocusConfig, checkpoint_dir: Path | None = None,
                context: Mapping[str, Any] | None = None) -> dict[str, StudyResult]:
    """Every study of ``config.studies``, in order (empty outside the paper profile)."""
    return {name: run_study(config, name, checkpoint_dir, context) for name in config.studies}
