"""Chapter 6's data and models: per training seed one plain CNN (the small trunk of chapter 1 + a GAP head,
trained end to end), then every attention head of :data:`~.config.HEADS` trained on that seed's frozen trunk
(features cached once), so the heads differ in how they pool and attend, not in the features they read.

Chapter: ``nbs/06_compare.ipynb``. Configuration: :mod:`attnbook.chapters.compare.config`.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
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

    def attend(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> Attention:
        """The head's :class:`~attnbook.methods.base.Attention` on the trunk's features of ``images``, its maps
        replaced by ``extras[scored]`` when the head has one; ``labels`` go to a class-aware head's ``attend``
        (Sharpen Focus: the map of that class instead of the prediction's)."""
        features = self.trunk(images)
        att = self.head.attend(features) if labels is None else self.head.attend(features, labels=labels)
        if self.scored is None:
            return att
        return Attention(att.logits, att.extras[self.scored], (self.scored,), att.extras)

    def part_maps(self, images: torch.Tensor) -> torch.Tensor:
        """The head's own maps ``[B, N, h, w]`` (feature resolution), whatever map this chapter scores."""
        return self.head.attend(self.trunk(images)).maps


class SharedTrunk(nn.Module):
    """The plain CNN's frozen trunk shared by every head of one seed, with a cache of its features by input
    *content* (outside autograd only): the heads' maps and their counterfactual logits read the same rendered
    images, so the trunk runs once per distinct batch instead of once per head. The key holds the wrapper's
    identity and its parameters' version counters, so a deep copy whose layers are re-initialised (the
    randomisation checks) never reads stale features."""

    def __init__(self, trunk: nn.Module, capacity: int = 64) -> None:
        super().__init__()
        self.trunk, self.capacity = trunk, capacity
        self._cache: dict[tuple, tuple[torch.Tensor, int]] = {}

    def __deepcopy__(self, memo: dict) -> SharedTrunk:
        """A copy of the trunk with an empty cache (the randomisation checks copy, then re-initialise)."""
        return SharedTrunk(copy.deepcopy(self.trunk, memo), self.capacity).train(self.training)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The trunk's features of ``images`` (cached when no gradient is recorded; a cached tensor that was
        changed in place since is recomputed)."""
        if torch.is_grad_enabled() or self.training:
            return self.trunk(images)
        contiguous = images.detach().contiguous()
        key = (id(self), tuple(images.shape), images.dtype, str(images.device),
               tuple(p._version for p in self.trunk.parameters()),
               hashlib.sha1(contiguous.cpu().numpy().tobytes()).hexdigest())
        hit = self._cache.get(key)
        if hit is None or hit[0]._version != hit[1]:
            if hit is None and len(self._cache) >= self.capacity:
                self._cache.pop(next(iter(self._cache)))
            out = self.trunk(images)
            self._cache[key] = (out, out._version)
            return out
        return hit[0]


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
    ``l_c + l_a``; Region Grouping: CE + 0.5·L_W, §3.4 with the CUB code's weight), returned on ``plain``'s trunk
    (one :class:`SharedTrunk` for every head of the seed) so the model takes images."""
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
    return CompareModel(shared_trunk(plain), head, SCORED_EXTRAS.get(kind)).eval().to(next(plain.parameters()).device)


def shared_trunk(plain: CompareModel) -> SharedTrunk:
    """One :class:`SharedTrunk` per plain CNN (made on the first call), holding the plain CNN's trunk module."""
    if not hasattr(plain, "_shared_trunk"):
        object.__setattr__(plain, "_shared_trunk", SharedTrunk(plain.trunk))
    return plain._shared_trunk


def random_label_split(data: SyntheticSplit, seed: int) -> SyntheticSplit:
    """Adebayo et al. §3.2's data randomisation: ``data`` with its labels permuted
    (:func:`attnbook.evaluate.permuted_labels`, same generator) and each image's attributes moved with its label,
    so every image-label link is broken while the class frequencies stay."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    tensors = dict(data.tensors)
    tensors[R.LABEL] = data.tensors[R.LABEL][order]
    if R.ATTRIBUTES in tensors:
        tensors[R.ATTRIBUTES] = data.tensors[R.ATTRIBUTES][order]
    return SyntheticSplit(f"{data.name}-random-labels", tensors, data.habitats)


def train_seed(config: CompareConfig, bench: Benchmark, seed: int, checkpoint_dir: Path | None,
               context: Mapping[str, Any] | None = None, random_labels: bool = False) -> dict[str, CompareModel]:
    """Every model of one seed: ``{"gap": plain CNN, head kind: trunk + head}``; ``random_labels``: the same
    models trained on :func:`random_label_split` (the label-randomisation check)."""
    data = dataclasses.replace(bench, train=random_label_split(bench.train, seed)) if random_labels else bench
    directory = _directory(checkpoint_dir, "random-labels") if random_labels else checkpoint_dir
    plain = train_plain(config, data, seed, directory, context)
    features = cached_features(plain.trunk, data.train)
    models = {"gap": plain}
    for kind in config.heads:
        models[kind] = train_head(config, data, plain, features, kind, seed, directory, context)
    return models


def train_all(config: CompareConfig, bench: Benchmark, checkpoint_dir: Path | None,
              context: Mapping[str, Any] | None = None,
              random_labels: bool = False) -> dict[int, dict[str, CompareModel]]:
    """``{seed: {model kind: model}}`` for every training seed (``random_labels``: on permuted labels)."""
    return {s: train_seed(config, bench, s, checkpoint_dir, context, random_labels) for s in seeds(config)}
