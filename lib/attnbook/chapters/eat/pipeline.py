"""Chapter 1's data, models and training: the fine-grained testbed with a habitat bias, a small CNN trunk
``f_img`` and either the base head (``c = c_p``) or EAT's heads (Eq. 1–7), over several training seeds.

Chapter: ``nbs/01_eat.ipynb``. Configuration: :mod:`attnbook.chapters.eat.config`.
"""
from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnbook.chapters.eat.config import MODELS, EATConfig
from attnbook.config import device_for
from attnbook.data import records as R
from attnbook.data.synthetic import Benchmark, make_benchmark, spec_for
from attnbook.methods.eat import EATHead, EATOutput, eat_losses
from attnbook.seeding import seed_everything
from attnbook.train import History, StepOutput, TrainConfig, fit, model_input


def make_data(config: EATConfig) -> Benchmark:
    """The fine-grained benchmark for ``config`` (data seed 0: every training seed sees the same images).

    The ``paper`` profile (CUB-200-2011 with its 312 class attributes) is not implemented yet and stops here."""
    if config.profile == "paper":
        raise NotImplementedError("the paper profile (CUB-200-2011, SUN attributes) is not implemented yet; "
                                  "run the cpu or gpu profile (the testbed analog)")
    return make_benchmark(spec_for("fine_grained", num_classes=config.num_classes,
                                   train_per_class=config.train_per_class, test_per_class=config.test_per_class,
                                   resolution=config.resolution, p_bias=config.p_bias, seed=0))


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


def build_model(config: EATConfig, kind: str, num_classes: int, num_attributes: int) -> EATModel:
    """``kind="base"``: ``c = c_p`` (no ``g_i``; trained with ``l_c`` only); ``kind="eat"``: Eq. 1–6."""
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}; choose one of {MODELS}")
    eat = kind == "eat"
    head = EATHead(4 * config.width, num_classes, num_attributes, embed_dim=config.embed_dim,
                   hidden=config.head_hidden, integrator=config.integrator if eat else None,
                   lam=config.lam if eat else 1.0, eta=config.eta, top_k=config.top_k)
    return EATModel(small_trunk(config.width), head)


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
                       device=device_for(config))


def train(config: EATConfig, bench: Benchmark, kind: str, seed: int, checkpoint_dir: Path | None,
          context: Mapping[str, Any] | None = None) -> tuple[EATModel, History]:
    """Train one model (``"base"`` or ``"eat"``) from scratch with training seed ``seed`` on the biased
    training split; checkpoints under ``checkpoint_dir/<kind>-seed<seed>`` resume (same config, data, code)."""
    seed_everything(seed)
    model = build_model(config, kind, bench.spec.num_classes, len(bench.info.attribute_names))
    weight = config.attribute_weight if kind == "eat" else 0.0
    directory = None if checkpoint_dir is None else Path(checkpoint_dir) / f"{kind}-seed{seed}"
    history = fit(model, bench.train, train_config(config, seed), objective=partial(eat_objective,
                  attribute_weight=weight), checkpoint_dir=directory,
                  context={"config": config, "data_key": bench.spec.key(), "kind": kind, **(context or {})})
    return model.eval(), history


def train_all(config: EATConfig, bench: Benchmark, checkpoint_dir: Path | None,
              context: Mapping[str, Any] | None = None) -> dict[str, dict[int, EATModel]]:
    """Every model × seed of this run: ``{kind: {seed: model}}``."""
    return {kind: {s: train(config, bench, kind, s, checkpoint_dir, context)[0] for s in seeds(config)}
            for kind in MODELS}
