"""Chapter 1's models and training: a small CNN trunk ``f_img`` (or a torchvision ResNet's stages) and either the
base head (``c = c_p``), EAT's heads (Eq. 1–7) or an ablation of them, over several training seeds, on the data of
:mod:`attnbook.chapters.eat.data`.

Chapter: ``nbs/01_eat.ipynb``. Configuration: :mod:`attnbook.chapters.eat.config`.
"""
from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnbook.chapters.eat.config import ABLATIONS, MODELS, EATConfig
from attnbook.chapters.eat.data import EATTask
from attnbook.config import device_for
from attnbook.data import records as R
from attnbook.devices import training_processes
from attnbook.methods.eat import EATHead, EATOutput, eat_losses
from attnbook.models.backbones import build_backbone
from attnbook.seeding import seed_everything
from attnbook.train import History, StepOutput, TrainConfig, fit, model_input


def seeds(config: EATConfig) -> list[int]:
    """The training seeds of this run: ``seed … seed + n_seeds − 1``."""
    return [config.seed + k for k in range(config.n_seeds)]


def small_trunk(width: int) -> nn.Sequential:
    """``f_img``: four 3×3 conv-BN-ReLU blocks (width, 2·width, 4·width, 4·width), 2×2 max-pooling after the
    first three → a ``[B, 4·width, H/8, W/8]`` map; its last block is the "last conv layer" of Grad-CAM."""
    widths = [3, width, 2 * width, 4 * width, 4 * width]
    layers: list[nn.Module] = []
    for k, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        if k < 3:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class EATModel(nn.Module):
    """``f_img`` (:func:`small_trunk`) + :class:`~attnbook.methods.eat.EATHead`; ``forward`` gives ``c``."""

    def __init__(self, trunk: nn.Module, head: EATHead) -> None:
        super().__init__()
        self.trunk, self.head = trunk, head

    def outputs(self, images: torch.Tensor) -> EATOutput:
        """Every output of the head on ``f_img(images)``."""
        return self.head.outputs(self.trunk(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> c`` ``[B, Nc]``."""
        return self.head(self.trunk(images))


def head_settings(config: EATConfig, kind: str) -> tuple[str | None, float, float, float]:
    """``(g_i, λ, η, weight of l_a)`` of a model kind: ``"base"`` is ``c = c_p`` trained with ``l_c`` only;
    ``"eat"`` is Eq. 1–6 with the config's λ, η and ``g_i``; an ablation (:data:`~.config.ABLATIONS`) changes
    ``g_i``/λ/η and keeps everything else of ``"eat"``."""
    if kind == "base":
        return None, 1.0, 0.0, 0.0
    if kind == "eat":
        return config.integrator, config.lam, config.eta, config.attribute_weight
    if kind in ABLATIONS:
        integrator, lam, eta = ABLATIONS[kind]
        return (integrator and config.integrator), lam, eta, config.attribute_weight
    raise ValueError(f"unknown model {kind!r}; choose one of {MODELS + tuple(ABLATIONS)}")


def model_kinds(config: EATConfig) -> tuple[str, ...]:
    """Every model kind this run trains: base, EAT, then the config's ablations."""
    return MODELS + tuple(config.ablations)


def build_model(config: EATConfig, kind: str, num_classes: int, num_attributes: int) -> EATModel:
    """The trunk (:func:`small_trunk`, or a torchvision ResNet's stages for ``arch="resnet…"``, ImageNet
    weights if ``pretrained``) and the head of a model kind (:func:`head_settings`)."""
    integrator, lam, eta, _ = head_settings(config, kind)
    if config.arch == "small":
        trunk, channels = small_trunk(config.width), 4 * config.width
    else:
        trunk = build_backbone(config.arch, pretrained=config.pretrained)
        channels = trunk.out_channels
    head = EATHead(channels, num_classes, num_attributes, embed_dim=config.embed_dim,
                   hidden=config.head_hidden, integrator=integrator, lam=lam, eta=eta, top_k=config.top_k)
    return EATModel(trunk, head)


def gradcam_layers(config: EATConfig) -> dict[str, str]:
    """Where FAR's Grad-CAM is taken: ``block4`` = the trunk's last block (the paper's "last conv layer", the map
    the heads read), ``block3`` = the block before it (the small CNN: before its pooling; a ResNet: layer3;
    AlexNet: conv4)."""
    if config.arch == "small":
        return {"block3": "trunk.10", "block4": "trunk.14"}
    if config.arch == "alexnet":
        return {"block3": "trunk.conv4", "block4": "trunk.conv5"}
    return {"block3": "trunk.layer3", "block4": "trunk.layer4"}


def eat_objective(model: EATModel, batch: Mapping[str, torch.Tensor], attribute_weight: float) -> StepOutput:
    """``l_c + w·l_a`` (Eq. 7) with the class-level attribute labels of each image's class."""
    out = model.outputs(model_input(batch))
    l_c, l_a = eat_losses(out, batch[R.LABEL], batch[R.ATTRIBUTES])
    loss = l_c + attribute_weight * l_a if attribute_weight else l_c  # the base model: no gradient through g_a
    return StepOutput(loss, out.logits, {"l_c": l_c.detach(), "l_a": l_a.detach()})


def train_config(config: EATConfig, seed: int) -> TrainConfig:
    """Adam with a cosine schedule, on the device ``config`` asks for."""
    return TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                       weight_decay=config.weight_decay, optimizer="adam", scheduler="cosine", seed=seed,
                       device=device_for(config), num_workers=config.num_workers,
                       devices=training_processes(config.devices))


def train(config: EATConfig, task: EATTask, kind: str, seed: int, checkpoint_dir: Path | None,
          context: Mapping[str, Any] | None = None) -> tuple[EATModel, History]:
    """Train one model (``"base"``, ``"eat"`` or an ablation) from scratch with training seed ``seed`` on the biased
    training split; checkpoints under ``checkpoint_dir/<kind>-seed<seed>`` resume (same config, data, code)."""
    seed_everything(seed)
    model = build_model(config, kind, task.num_classes, len(task.info.attribute_names))
    weight = head_settings(config, kind)[3]
    directory = None if checkpoint_dir is None else Path(checkpoint_dir) / f"{kind}-seed{seed}"
    history = fit(model, task.train, train_config(config, seed), objective=partial(eat_objective,
                  attribute_weight=weight), checkpoint_dir=directory,
                  context={"config": config, "data_key": task.key, "kind": kind, **(context or {})})
    return model.eval(), history


def train_pair(config: EATConfig, task: EATTask | None, checkpoint_dir: Path | None, n_seeds: int,
               context: Mapping[str, Any] | None = None) -> dict[str, dict[int, EATModel]]:
    """Base and EAT on the first ``n_seeds`` training seeds of ``task`` (the milder bias, SUN attributes):
    ``{kind: {seed: model}}``, empty without a task. Checkpoints under ``checkpoint_dir/<task.name>``."""
    if task is None or not n_seeds:
        return {}
    directory = None if checkpoint_dir is None else Path(checkpoint_dir) / task.name
    return {kind: {s: train(config, task, kind, s, directory, context)[0] for s in seeds(config)[:n_seeds]}
            for kind in MODELS}


def train_all(config: EATConfig, task: EATTask, checkpoint_dir: Path | None,
              context: Mapping[str, Any] | None = None) -> dict[str, dict[int, EATModel]]:
    """Every model × seed of this run: ``{kind: {seed: model}}``; the ablations on the first ``ablation_seeds``
    seeds only (paired with EAT on those)."""
    return {kind: {s: train(config, task, kind, s, checkpoint_dir, context)[0]
                   for s in seeds(config)[:None if kind in MODELS else config.ablation_seeds]}
            for kind in model_kinds(config)}
