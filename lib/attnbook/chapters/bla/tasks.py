"""Chapter 4 (BLA), §4.2 data: the frozen backbone F and the datasets A, B, C as cached features.

Paper: BLA §4.2 — heads on a frozen ImageNet EfficientNet-B0, datasets cats vs dogs (A), Stanford Dogs
(B) and CUB (C). Offline: three synthetic analogs (A → ``two_class``, B → ``many_class``, C →
``fine_grained``) on a ResNet-18 pretrained on a *separate* synthetic task — the ImageNet stand-in
(ImageNet weights cannot be downloaded here), each analog's design calibrated so that BL is neither at a
ceiling nor near chance (``config.DATASETS_42``, ``BLAConfig.bl_band``). ``data="real"`` uses the paper's
datasets and weights. On the analogs each task also carries the ground truth per feature cell (object,
discriminative part).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from attnbook.chapters.bla.config import (
    DATASETS_42,
    PRETEXT_DATA_SEED,
    PRETEXT_PRESET,
    PRETEXT_TRAIN_SEED,
    BLAConfig,
    Dataset42,
    epochs_for,
)
from attnbook.config import device_for
from attnbook.data import records as R
from attnbook.data.synthetic import GROUPS, BenchmarkSpec, class_table, generate_split, spec_for
from attnbook.files import atomic_torch_save
from attnbook.metrics import cell_fractions
from attnbook.models.backbones import Backbone, build_backbone, build_classifier
from attnbook.seeding import seed_everything
from attnbook.train import (
    FEATURES,
    FeatureDataset,
    TrainConfig,
    autocast,
    autocast_dtype,
    cache_features,
    fit,
    freeze,
    resolve_device,
)


def unbiased(spec: BenchmarkSpec) -> BenchmarkSpec:
    """``spec`` with p_bias = 1/K: every habitat equally likely whatever the class (no background cue)."""
    return dataclasses.replace(spec, p_bias=1.0 / spec.num_habitats)


def pretext_spec(config: BLAConfig) -> BenchmarkSpec:
    """The ImageNet stand-in: a synthetic task with *other* classes (data seed 1) than the three analogs."""
    return unbiased(spec_for(PRETEXT_PRESET, seed=PRETEXT_DATA_SEED, num_classes=config.pretext_classes,
                             train_per_class=config.pretext_per_class, test_per_class=5, resolution=config.resolution))


def _pretext_key(config: BLAConfig) -> str:
    """A hash of everything the pretrained stand-in depends on (its cache file's name)."""
    recipe = {"spec": pretext_spec(config).key(), "arch": config.arch, "stride_one": list(config.stride_one),
              "epochs": config.pretext_epochs, "amp": config.amp, "seed": PRETEXT_TRAIN_SEED,
              "torch": torch.__version__}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def pretrain_backbone(config: BLAConfig, cache: Path | None = None) -> tuple[Backbone, dict[str, Any]]:
    """The frozen feature extractor F and how it was obtained (BLA §4.2).

    ``pretrained=True`` (paper): torchvision's ImageNet weights. Otherwise a backbone trained on the
    pretext task (:func:`pretext_spec`, Adam 1e-3, fixed seed — the same F for every run, as published
    weights are), loaded from ``cache`` (e.g. :func:`attnbook.files.cache_dir`) when it holds one for
    this recipe and saved there otherwise. Frozen with batch-norm in inference mode, as the authors'
    code keeps EfficientNet's.
    """
    device = resolve_device(device_for(config))
    if config.pretrained:
        backbone = build_backbone(config.arch, pretrained=True, stride_one=config.stride_one)
        return freeze(backbone.to(device)), {"source": "ImageNet (torchvision IMAGENET1K_V1)"}
    spec = pretext_spec(config)
    seed_everything(PRETEXT_TRAIN_SEED)
    model = build_classifier(config.arch, spec.num_classes, stride_one=config.stride_one)
    path = None if cache is None else Path(cache) / f"bla-pretext-{_pretext_key(config)}.pt"
    if path is not None and path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        info = state["info"]
    else:
        train, test = generate_split(spec, "train"), generate_split(spec, "test_aligned")
        history = fit(model, train, TrainConfig(epochs=config.pretext_epochs, seed=PRETEXT_TRAIN_SEED, amp=config.amp,
                                                device=str(device), progress=False), eval_data={"test": test})
        info = {"source": f"synthetic pretext task ({spec.num_classes} classes, data seed {PRETEXT_DATA_SEED})",
                "train_images": len(train), "pretext_train_acc": history[-1]["train_acc"],
                "pretext_test_acc": history[-1]["test_acc"]}
        if path is not None:
            atomic_torch_save(path, {"model": model.state_dict(), "info": info})
    return freeze(model.backbone.to(device)), info


@dataclass
class HeadTask:
    """One §4.2 dataset as the heads see it: cached features plus, on the analogs, ground truth per cell."""

    key: str  # paper letter: A, B, C
    title: str
    design: str  # what the data are (the analog's design, or the real dataset)
    class_names: tuple[str, ...]
    epochs: int
    train: FeatureDataset  # features [N, C, h, w], label
    test: FeatureDataset
    shown: Tensor  # [m] indices of the test images kept for LIME and pictures, spread over the test set
    images: Tensor  # [m, 3, H, W] those images
    masks: Tensor | None = None  # [m, H, W] their object masks
    object_cells: Tensor | None = None  # [N_test, h, w] fraction of each cell on the object
    disc_cells: Tensor | None = None  # [N_test, h, w] fraction of each cell on the discriminative part
    object_area: Tensor | None = None  # [N_test] fraction of the image on the object

    @property
    def channels(self) -> int:
        """C of the cached feature map."""
        return self.train.tensors[FEATURES].shape[1]

    @property
    def grid(self) -> int:
        """The side h = w of the cached feature map."""
        return self.train.tensors[FEATURES].shape[-1]

    @property
    def num_classes(self) -> int:
        """K, the dataset's classes."""
        return len(self.class_names)

    def shown_features(self, m: int | None = None) -> Tensor:
        """Cached features ``[m, C, h, w]`` of the first ``m`` kept images."""
        return self.test.tensors[FEATURES][self.shown[:m]]


def backbone_autocast(config: BLAConfig, device: torch.device) -> AbstractContextManager:
    """The frozen backbone's autocast (``config.amp``; bf16 is fast on AVX512-BF16 CPUs)."""
    return autocast(device, autocast_dtype(config.amp, device))


def _features(backbone: Backbone, data: Dataset, config: BLAConfig) -> FeatureDataset:
    """``{"features", "label"}``: F(x) for every record of ``data``, once (``cache_features`` under the
    backbone's autocast; the images are not kept)."""
    with backbone_autocast(config, next(backbone.parameters()).device):
        cached = cache_features(backbone, data).tensors
    return FeatureDataset({FEATURES: cached[FEATURES], R.LABEL: cached[R.LABEL]})


def shown_indices(n_test: int, config: BLAConfig) -> Tensor:
    """Evenly spaced test indices (so the pictures show many classes) for LIME, figures and the explorer."""
    keep = min(n_test, max(config.lime_images, config.explorer_images, 2))
    return torch.linspace(0, n_test - 1, keep).round().long()


def analog_spec(dataset: Dataset42, config: BLAConfig) -> BenchmarkSpec:
    """The benchmark spec of one §4.2 analog: its preset with the dataset's calibrated design
    (``Dataset42.design``), ``config.analog_train`` / ``analog_test`` images per class, at ``resolution``."""
    index = DATASETS_42.index(dataset)
    spec = spec_for(dataset.preset, resolution=config.resolution, train_per_class=config.analog_train[index],
                    test_per_class=config.analog_test[index], **dict(dataset.design))
    return unbiased(spec) if config.unbiased else spec


def describe_analog(spec: BenchmarkSpec) -> str:
    """What an analog's classes are, in words: how many, on which parts, how they differ, the pixel noise."""
    table = class_table(spec)
    parts = ", ".join(spec.parts)
    if (table.confusers >= 0).any():
        slots = sorted({f"{spec.parts[p]} {GROUPS[g]}" for p, g in zip(table.disc_part.tolist(),
                                                                        table.disc_group.tolist()) if p >= 0})
        pairs = int((table.confusers >= 0).sum()) // 2
        how = (f"one confusable pair differing only in the {slots[0]}" if spec.num_classes == 2 else
               f"{pairs} confusable pairs, each differing in one part's attribute ({'; '.join(slots)})")
    else:
        how = "classes differing in several attributes"
    return f"{spec.num_classes} classes on {len(spec.parts)} parts ({parts}): {how}; pixel noise {spec.noise:g}"


def synthetic_task(dataset: Dataset42, config: BLAConfig, backbone: Backbone, epochs: int) -> HeadTask:
    """A testbed analog of one §4.2 dataset (:func:`analog_spec`; data seed 0)."""
    spec = analog_spec(dataset, config)
    train, test = generate_split(spec, "train"), generate_split(spec, "test_aligned")
    t = test.tensors
    train_feats, test_feats = (
        _features(backbone, FeatureDataset({R.IMAGE: d.tensors[R.IMAGE], R.LABEL: d.tensors[R.LABEL]}), config)
        for d in (train, test))
    grid, shown = test_feats.tensors[FEATURES].shape[-1], shown_indices(len(test), config)
    return HeadTask(key=dataset.key, title=f"{dataset.key}: {dataset.preset} analog of {dataset.paper_name}",
                    design=describe_analog(spec),
                    class_names=tuple(f"species_{c:02d}" for c in range(spec.num_classes)), epochs=epochs,
                    train=train_feats, test=test_feats, shown=shown, images=t[R.IMAGE][shown],
                    masks=t[R.MASK][shown], object_cells=cell_fractions(t[R.MASK], grid),
                    disc_cells=cell_fractions(t[R.DISC_MASK], grid), object_area=t[R.MASK].float().mean(dim=(1, 2)))


def real_task(dataset: Dataset42, config: BLAConfig, backbone: Backbone, epochs: int) -> HeadTask:
    """One of the paper's datasets, resized to ``resolution``² (BLA §4.2; paper profile)."""
    from attnbook.data.catalog import load_dataset  # only the paper profile reads real data

    splits = {s: load_dataset(dataset.real, split=s, size=config.resolution) for s in ("train", "test")}
    feats = {s: _features(backbone, d, config) for s, d in splits.items()}
    shown = shown_indices(len(feats["test"]), config)
    return HeadTask(key=dataset.key, title=f"{dataset.key}: {dataset.paper_name}", design="real images",
                    class_names=splits["train"].info.class_names, epochs=epochs, train=feats["train"],
                    test=feats["test"], shown=shown,
                    images=torch.stack([splits["test"][int(i)][R.IMAGE] for i in shown]))


def make_tasks(config: BLAConfig, backbone: Backbone) -> list[HeadTask]:
    """Datasets A, B, C — synthetic analogs, or the real ones with ``data="real"`` (BLA §4.2)."""
    build = real_task if config.data == "real" else synthetic_task
    return [build(d, config, backbone, epochs_for(config, e)) for d, e in zip(DATASETS_42, config.head_epochs)]

