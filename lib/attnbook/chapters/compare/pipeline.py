"""Chapter 6's data and models: per training seed one plain CNN (the small trunk of chapter 1 + a GAP head,
trained end to end), then every attention head of :data:`~.config.HEADS` trained on that seed's frozen trunk
(features cached once), so the heads differ in how they pool and attend, not in the features they read.

Chapter: ``nbs/06_compare.ipynb``. Configuration: :mod:`attnbook.chapters.compare.config`.
"""
from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnbook.chapters.compare.config import SCORED_EXTRAS, CompareConfig
from attnbook.chapters.eat.pipeline import EATModel, eat_objective, small_trunk
from attnbook.chapters.region_grouping.pipeline import RegionGroupingModel, region_objective
from attnbook.config import device_for
from attnbook.data import records as R
from attnbook.data.synthetic import Benchmark, SyntheticSplit, make_benchmark, spec_for
from attnbook.methods.base import Attention
from attnbook.methods.eat import EATHead
from attnbook.methods.region_grouping import RegionGroupingHead
from attnbook.methods.registry import make_head
from attnbook.seeding import seed_everything
from attnbook.train import TrainConfig, cross_entropy, fit

RG_PRIOR_WEIGHT = 0.5  # weight of Region Grouping's L_W beside CE (chapter 3's CUB setting)
LAST_BLOCK = "trunk.14"  # the small trunk's last ReLU: Grad-CAM's "last conv layer" (chapter 1's block 4)


def seeds(config: CompareConfig) -> list[int]:
    """The training seeds of this run: ``seed … seed + n_seeds − 1``."""
    return [config.seed + k for k in range(config.n_seeds)]


def make_data(config: CompareConfig) -> Benchmark:
    """The fine-grained testbed with the habitat bias ``p_bias`` (data seed 0: every training seed sees the same
    images); its two test splits hold the same objects on their own and on another habitat."""
    return make_benchmark(spec_for("fine_grained", num_classes=config.num_classes,
                                   train_per_class=config.train_per_class, test_per_class=config.test_per_class,
                                   resolution=config.resolution, p_bias=config.p_bias, seed=0))


class CompareModel(nn.Module):
    """``trunk`` + a head of the attention interface (methods/base.py); ``attend`` takes images. ``scored`` names
    the extras entry that is the map this chapter scores, for heads whose ``maps`` are not (:data:`SCORED_EXTRAS`)."""

    def __init__(self, trunk: nn.Module, head: nn.Module, scored: str | None = None) -> None:
        super().__init__()
        self.trunk, self.head, self.scored = trunk, head, scored

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, K]`` logits."""
        return self.head(self.trunk(images))

    def attend(self, images: torch.Tensor) -> Attention:
        """The head's :class:`~attnbook.methods.base.Attention` on the trunk's features of ``images``, its maps
        replaced by ``extras[scored]`` when the head has one."""
        att = self.head.attend(self.trunk(images))
        if self.scored is None:
            return att
        return Attention(att.logits, att.extras[self.scored], (self.scored,), att.extras)


def train_config(config: CompareConfig, seed: int, epochs: int) -> TrainConfig:
    """Adam with a cosine schedule on the device ``config`` asks for."""
    return TrainConfig(epochs=epochs, batch_size=config.batch_size, lr=config.lr, weight_decay=config.weight_decay,
                       optimizer="adam", scheduler="cosine", seed=seed, device=device_for(config))


def _directory(checkpoint_dir: Path | None, name: str) -> Path | None:
    return None if checkpoint_dir is None else Path(checkpoint_dir) / name


def train_plain(config: CompareConfig, bench: Benchmark, seed: int, checkpoint_dir: Path | None,
                context: Mapping[str, Any] | None = None) -> CompareModel:
    """The plain CNN of one seed (small trunk + GAP → linear), trained end to end with cross-entropy on the
    biased training split; the post-hoc explainers explain it and every head reuses its trunk."""
    seed_everything(seed)
    model = CompareModel(small_trunk(config.width), make_head("gap", 4 * config.width, bench.info.num_classes))
    fit(model, bench.train, train_config(config, seed, config.epochs),
        checkpoint_dir=_directory(checkpoint_dir, f"gap-seed{seed}"),
        context={"config": config, "data_key": bench.spec.key(), "kind": "gap", **(context or {})})
    return model.eval()


def cached_features(trunk: nn.Module, data: SyntheticSplit, batch_size: int = 256) -> SyntheticSplit:
    """``data`` with its images replaced by the frozen trunk's features (``model_input`` reads them)."""
    device = next(trunk.parameters()).device
    trunk.eval()
    with torch.no_grad():
        features = torch.cat([trunk(data.tensors[R.IMAGE][i:i + batch_size].to(device)).cpu()
                              for i in range(0, len(data), batch_size)])
    keep = {k: v for k, v in data.tensors.items() if k in (R.LABEL, R.ATTRIBUTES, R.INDEX)}
    return SyntheticSplit(f"{data.name}-features", {**keep, "features": features}, data.habitats)


def build_head(config: CompareConfig, kind: str, bench: Benchmark) -> nn.Module:
    """The head of ``kind`` on the trunk's ``4·width`` channels: EAT with the class-level attributes
    (chapter 1's settings: g_i a 3-layer CNN, λ = η = 1), Region Grouping with chapter 3's CUB settings (K = 5,
    Beta(1, 1e-3) prior), every other kind from the registry's defaults."""
    channels, k = 4 * config.width, bench.info.num_classes
    if kind == "region_grouping":
        return RegionGroupingHead(channels, k, 5, out_channels=2 * channels)
    if kind == "eat":
        return EATHead(channels, k, bench.class_attributes.shape[1], embed_dim=16, hidden=16, integrator="cnn")
    return make_head(kind, channels, k)


def train_head(config: CompareConfig, bench: Benchmark, plain: CompareModel, features: SyntheticSplit, kind: str,
               seed: int, checkpoint_dir: Path | None, context: Mapping[str, Any] | None = None) -> CompareModel:
    """Head ``kind`` trained on the cached features of ``plain``'s frozen trunk (cross-entropy; EAT: Eq. 7's
    ``l_c + l_a``; Region Grouping: CE + 0.5·L_W, §3.4 with the CUB code's weight), returned on a copy of the
    trunk so the model takes images."""
    seed_everything(seed)
    head = build_head(config, kind, bench)
    if kind == "region_grouping":
        trainee: nn.Module = RegionGroupingModel(nn.Identity(), head)
        objective = partial(region_objective, weight=RG_PRIOR_WEIGHT)
    elif kind == "eat":
        trainee = EATModel(nn.Identity(), head)
        objective = partial(eat_objective, attribute_weight=1.0)
    else:
        trainee, objective = head, cross_entropy
    fit(trainee, features, train_config(config, seed, config.head_epochs), objective=objective,
        checkpoint_dir=_directory(checkpoint_dir, f"{kind}-seed{seed}"),
        context={"config": config, "data_key": bench.spec.key(), "kind": kind, **(context or {})})
    trunk = small_trunk(config.width)
    trunk.load_state_dict(plain.trunk.state_dict())
    return CompareModel(trunk, head, SCORED_EXTRAS.get(kind)).eval().to(next(plain.parameters()).device)


def train_seed(config: CompareConfig, bench: Benchmark, seed: int, checkpoint_dir: Path | None,
               context: Mapping[str, Any] | None = None) -> dict[str, CompareModel]:
    """Every model of one seed: ``{"gap": plain CNN, head kind: trunk + head}``."""
    plain = train_plain(config, bench, seed, checkpoint_dir, context)
    features = cached_features(plain.trunk, bench.train)
    models = {"gap": plain}
    for kind in config.heads:
        models[kind] = train_head(config, bench, plain, features, kind, seed, checkpoint_dir, context)
    return models


def train_all(config: CompareConfig, bench: Benchmark, checkpoint_dir: Path | None,
              context: Mapping[str, Any] | None = None) -> dict[int, dict[str, CompareModel]]:
    """``{seed: {model kind: model}}`` for every training seed."""
    return {s: train_seed(config, bench, s, checkpoint_dir, context) for s in seeds(config)}
