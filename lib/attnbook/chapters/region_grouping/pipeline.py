"""Chapter 3's data, models and training: the fine-grained testbed (landmarks, part masks, boxes), a small CNN
trunk with ResNet-style stage names, and either the plain backbone (``layer4`` + GAP + linear) or Region Grouping
on ``layer3``'s output in place of ``layer4`` (the authors' code; §3.4), over several training seeds.

Chapter: ``nbs/03_region_grouping.ipynb``. Configuration: :mod:`attnbook.chapters.region_grouping.config`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attnbook.chapters.region_grouping.config import MODELS, RegionGroupingConfig, seeds
from attnbook.config import device_for
from attnbook.data import records as R
from attnbook.data.synthetic import Benchmark, SyntheticSplit, make_benchmark, spec_for
from attnbook.methods.region_grouping import RegionGroupingHead, RegionOutput
from attnbook.seeding import seed_everything
from attnbook.train import StepOutput, TrainConfig, fit, model_input

INAT_PRIOR = (2e-3, 1e-3)  # iNat2017's Beta(α, β) (§4.3)


def crop_to_objects(split: SyntheticSplit, size: int, margin: float) -> SyntheticSplit:
    """CUB-like framing: each image cropped to a square of ``margin`` × the longer side of its object's box (shifted
    to stay inside the image), resized to ``size``; masks (nearest), landmarks and the box follow."""
    t = split.tensors
    res = t[R.IMAGE].shape[-1]
    box = t[R.BBOX]
    side = (margin * (box[:, 2:] - box[:, :2]).amax(1)).clamp(max=res)  # [B]
    origin = ((box[:, :2] + box[:, 2:]) / 2 - side[:, None] / 2).clamp(min=0)
    origin = torch.minimum(origin, res - side[:, None])  # [B, 2] (x, y)
    steps = (torch.arange(size, dtype=torch.float32) + 0.5) / size  # output pixel centres in [0, 1]
    xs, ys = (origin[:, None, :] + steps[None, :, None] * side[:, None, None]).unbind(-1)  # [B, size] each
    grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), -1) * 2 / res - 1  # [B, s, s, 2]

    def sample(x: torch.Tensor, mode: str) -> torch.Tensor:
        return F.grid_sample(x.float(), grid, mode=mode, align_corners=False)

    out = dict(t)
    out[R.IMAGE] = sample(t[R.IMAGE], "bilinear")
    out[R.PART_MASKS] = sample(t[R.PART_MASKS], "nearest").bool()
    for key in (R.MASK, R.DISC_MASK):
        out[key] = sample(t[key][:, None], "nearest")[:, 0].bool()
    scale = (size / side)[:, None, None]
    out[R.LANDMARKS] = (t[R.LANDMARKS] - origin[:, None]) * scale
    out[R.BBOX] = ((box.view(-1, 2, 2) - origin[:, None]) * scale).clamp(0, size).view(-1, 4)
    return SyntheticSplit(split.name, out, split.habitats)


def make_data(config: RegionGroupingConfig) -> Benchmark:
    """The fine-grained testbed for ``config`` (data seed 0: every training seed sees the same images), rendered at
    ``source_resolution`` and, with ``crop > 0``, cropped around each object to ``resolution`` (CUB-like framing:
    the bird fills most of the image); ``crop = 0`` renders at ``resolution`` uncropped.

    Real data sets (``dataset`` = cub / celeba / inat2017) need a GPU and the data under ``data/raw``, which
    :meth:`Chapter.configure` checks first; their training loop is not written yet, and this says so."""
    if config.dataset != "synthetic":
        raise NotImplementedError(
            f"the {config.dataset} protocol of the paper profile is specified (config.PAPER_SETTINGS) but its "
            "training and evaluation on real images are not implemented yet; run the cpu or gpu profile "
            "(the testbed analog)")
    cropped = config.crop > 0
    bench = make_benchmark(spec_for("fine_grained", num_classes=config.num_classes,
                                    train_per_class=config.train_per_class, test_per_class=config.test_per_class,
                                    resolution=config.source_resolution if cropped else config.resolution,
                                    p_bias=config.p_bias, seed=0))
    if not cropped:
        return bench
    return replace(bench, **{name: crop_to_objects(bench.split(name), config.resolution, config.crop)
                             for name in ("train", "test_aligned", "test_conflicting")})


def _block(cin: int, cout: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*layers, nn.MaxPool2d(2)) if pool else nn.Sequential(*layers)


class Trunk(nn.Module):
    """``layer1`` … ``layer3`` of a small CNN: 3×3 conv-BN-ReLU stages (width, 2·width, 4·width, the last two
    convs), 2×2 max-pooling after the first two → ``[B, 4·width, H/4, W/4]``, the grouping stage."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.layer1 = _block(3, width, pool=True)
        self.layer2 = _block(width, 2 * width, pool=True)
        self.layer3 = nn.Sequential(_block(2 * width, 4 * width, False), _block(4 * width, 4 * width, False))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, 4·width, H/4, W/4]``."""
        return self.layer3(self.layer2(self.layer1(images)))


class PlainCNN(nn.Module):
    """The plain backbone: :class:`Trunk`, ``layer4`` (2×2 max-pool, conv to 8·width), GAP, ``fc`` (CAM's premise)."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.trunk = Trunk(width)
        self.layer4 = nn.Sequential(nn.MaxPool2d(2), *_block(4 * width, 8 * width, pool=False))
        self.fc = nn.Linear(8 * width, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, classes]``."""
        return self.fc(self.layer4(self.trunk(images)).mean(dim=(2, 3)))


class RegionGroupingModel(nn.Module):
    """:class:`Trunk` + :class:`~attnbook.methods.region_grouping.RegionGroupingHead` on ``layer3`` (replacing
    ``layer4``; ``f_z`` ends at 8·width channels as ``layer4`` does)."""

    def __init__(self, trunk: Trunk, head: RegionGroupingHead) -> None:
        super().__init__()
        self.trunk, self.head = trunk, head

    def outputs(self, images: torch.Tensor) -> RegionOutput:
        """Every output of the head on ``layer3(images)``."""
        return self.head.outputs(self.trunk(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, classes]``."""
        return self.head(self.trunk(images))


def build_model(config: RegionGroupingConfig, kind: str, num_classes: int) -> nn.Module:
    """One of :data:`MODELS` (see the config module)."""
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}; choose one of {MODELS}")
    if kind == "plain":
        return PlainCNN(config.width, num_classes)
    alpha, beta = INAT_PRIOR if kind == "inat_prior" else (config.alpha, config.beta)
    head = RegionGroupingHead(4 * config.width, num_classes, config.num_parts, assignment=config.assignment,
                              attention=kind != "no_attention", out_channels=8 * config.width, alpha=alpha, beta=beta)
    return RegionGroupingModel(Trunk(config.width), head)


def prior_weight(config: RegionGroupingConfig, kind: str) -> float:
    """The weight of ``L_W`` for ``kind`` (0 for the plain backbone and Table 7's "w/o regularization")."""
    return 0.0 if kind in ("plain", "no_prior") else config.prior_weight


def region_objective(model: nn.Module, batch: Mapping[str, torch.Tensor], weight: float) -> StepOutput:
    """``CE + weight · L_W`` (§3.4); ``L_W`` is logged for every Region Grouping model, trained on only if
    ``weight > 0``. The plain backbone: CE."""
    images, labels = model_input(batch), batch[R.LABEL]
    if not isinstance(model, RegionGroupingModel):
        logits = model(images)
        return StepOutput(F.cross_entropy(logits, labels), logits)
    out = model.outputs(images)
    ce, l_w = F.cross_entropy(out.logits, labels), model.head.prior_loss(out)
    loss = ce + weight * l_w if weight else ce
    return StepOutput(loss, out.logits, {"ce": ce.detach(), "l_w": l_w.detach()})


def param_groups(model: nn.Module, config: RegionGroupingConfig) -> list[dict]:
    """The trunk at ``lr``; the new modules (the Region Grouping head) at ``lr × new_lr_scale`` (authors: 20×)."""
    if not isinstance(model, RegionGroupingModel):
        return [{"params": list(model.parameters())}]
    return [{"params": list(model.trunk.parameters())},
            {"params": list(model.head.parameters()), "lr": config.lr * config.new_lr_scale}]


def train_config(config: RegionGroupingConfig, seed: int) -> TrainConfig:
    """Adam with a cosine schedule; full batches only (``L_W`` compares a batch with N prior quantiles)."""
    return TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                       weight_decay=config.weight_decay, optimizer="adam", scheduler="cosine", seed=seed,
                       device=device_for(config), drop_last=True)


def train(config: RegionGroupingConfig, bench: Benchmark, kind: str, seed: int, checkpoint_dir: Path | None,
          context: Mapping[str, Any] | None = None) -> nn.Module:
    """Train one model from scratch with training seed ``seed``; checkpoints under
    ``checkpoint_dir/<kind>-seed<seed>`` resume (same config, data, code)."""
    seed_everything(seed)
    model = build_model(config, kind, bench.spec.num_classes)
    directory = None if checkpoint_dir is None else Path(checkpoint_dir) / f"{kind}-seed{seed}"
    fit(model, bench.train, train_config(config, seed),
        objective=partial(region_objective, weight=prior_weight(config, kind)), checkpoint_dir=directory,
        context={"config": config, "data_key": bench.spec.key(), "kind": kind, **(context or {})},
        trainable=param_groups(model, config))
    return model.eval()


def train_all(config: RegionGroupingConfig, bench: Benchmark, checkpoint_dir: Path | None,
              context: Mapping[str, Any] | None = None) -> dict[str, dict[int, nn.Module]]:
    """Every model × seed of this run: ``{kind: {seed: model}}``."""
    return {kind: {s: train(config, bench, kind, s, checkpoint_dir, context) for s in seeds(config)}
            for kind in config.models}
