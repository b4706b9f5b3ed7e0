"""Chapter 3's data, models and training: the fine-grained testbed (landmarks, part masks, boxes) or a real data
set (:mod:`~attnbook.chapters.region_grouping.real`), a small CNN trunk with ResNet-style stage names (or a
torchvision ResNet), and either the plain backbone (``layer4`` + GAP + linear) or Region Grouping on ``layer3``'s
output in place of ``layer4`` (the authors' code; §3.4) — and the ablations: grouping on ``layer4`` (the paper's
text), the new modules at 20× the learning rate (the code), iNat2017's prior — over several training seeds, with the
assignment maps of the first full model recorded after every epoch.

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

from attnbook.chapters.region_grouping.config import MODELS, RegionGroupingConfig, kinds, seeds
from attnbook.chapters.region_grouping.real import RealTask, make_task
from attnbook.config import device_for
from attnbook.data import records as R
from attnbook.data.synthetic import Benchmark, SyntheticSplit, make_benchmark, spec_for
from attnbook.methods.region_grouping import RegionGroupingHead, RegionOutput
from attnbook.parallel import default_workers, process_map
from attnbook.seeding import seed_everything
from attnbook.train import FeatureDataset, StepOutput, TrainConfig, fit, model_input

INAT_PRIOR = (2e-3, 1e-3)  # iNat2017's Beta(α, β) (§4.3)
CODE_LR_SCALE = 20.0  # the authors' code: the new modules at 20x the trunk's learning rate
SNAPSHOT = "snapshot"  # batch key marking the fixed images whose assignment maps are recorded after every epoch
Data = Benchmark | RealTask


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


def make_data(config: RegionGroupingConfig) -> Benchmark | RealTask:
    """The fine-grained testbed for ``config`` (data seed 0: every training seed sees the same images), rendered at
    ``source_resolution`` and, with ``crop > 0``, cropped around each object to ``resolution`` (CUB-like framing:
    the bird fills most of the image); ``crop = 0`` renders at ``resolution`` uncropped.

    A real data set (``dataset`` = cub / celeba / inat2017; the paper profile) gives a
    :class:`~attnbook.chapters.region_grouping.real.RealTask` through its loader
    (:func:`~attnbook.chapters.region_grouping.real.make_task`), which stops naming any file it lacks."""
    if config.dataset != "synthetic":
        return make_task(config)
    cropped = config.crop > 0
    bench = make_benchmark(spec_for("fine_grained", num_classes=config.num_classes,
                                    train_per_class=config.train_per_class, test_per_class=config.test_per_class,
                                    resolution=config.source_resolution if cropped else config.resolution,
                                    p_bias=config.p_bias, seed=0))
    if not cropped:
        return bench
    return replace(bench, **{name: crop_to_objects(bench.split(name), config.resolution, config.crop)
                             for name in ("train", "test_aligned", "test_conflicting")})


def data_numbers(config: RegionGroupingConfig, data: Data) -> dict[str, int]:
    """Sizes the chapter quotes: training and test images, classes (attributes on CelebA), parts K."""
    if isinstance(data, RealTask):
        return {"n_train": len(data.train), "n_test": len(data.test), "n_classes": data.num_classes,
                "n_parts": config.num_parts}
    return {"n_train": len(data.train), "n_test": len(data.test_aligned), "n_classes": data.spec.num_classes,
            "n_parts": config.num_parts}


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
    """The plain backbone: a trunk up to the grouping stage, ``layer4``, GAP, ``fc`` (CAM's premise). By default
    :class:`Trunk` and a ``layer4`` of 2×2 max-pool + conv to 8·width; a ResNet's stages when given."""

    def __init__(self, width: int, num_classes: int, *, trunk: nn.Module | None = None,
                 layer4: nn.Module | None = None, channels: int | None = None) -> None:
        super().__init__()
        self.trunk = trunk if trunk is not None else Trunk(width)
        self.layer4 = layer4 if layer4 is not None else nn.Sequential(nn.MaxPool2d(2),
                                                                      *_block(4 * width, 8 * width, pool=False))
        self.fc = nn.Linear(channels or 8 * width, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, classes]``."""
        return self.fc(self.layer4(self.trunk(images)).mean(dim=(2, 3)))


class RegionGroupingModel(nn.Module):
    """A trunk + :class:`~attnbook.methods.region_grouping.RegionGroupingHead` on its output: ``layer3`` (replacing
    ``layer4``; ``f_z`` ends at ``layer4``'s width), or ``layer4`` for the ``layer4`` ablation."""

    def __init__(self, trunk: nn.Module, head: RegionGroupingHead) -> None:
        super().__init__()
        self.trunk, self.head = trunk, head

    def outputs(self, images: torch.Tensor) -> RegionOutput:
        """Every output of the head on ``layer3(images)``."""
        return self.head.outputs(self.trunk(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, classes]``."""
        return self.head(self.trunk(images))


def stages(config: RegionGroupingConfig) -> tuple[nn.Module, nn.Module, int, int]:
    """``(trunk, layer4, C3, C4)``: the modules up to the grouping stage (``layer3``), the last stage, and their
    output channels — the small CNN, or a torchvision ResNet (ImageNet normalisation inside the trunk)."""
    if config.arch == "small_cnn":
        w = config.width
        return Trunk(w), nn.Sequential(nn.MaxPool2d(2), *_block(4 * w, 8 * w, pool=False)), 4 * w, 8 * w
    from attnbook.models.backbones import build_backbone

    net = build_backbone(config.arch, pretrained=config.pretrained)
    trunk = nn.Sequential(net.normalize, net.stem, net.layer1, net.layer2, net.layer3)
    return trunk, net.layer4, net.stage_channels["layer3"], net.stage_channels["layer4"]


def build_model(config: RegionGroupingConfig, kind: str, num_classes: int) -> nn.Module:
    """One of :data:`MODELS` (see the config module)."""
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}; choose one of {MODELS}")
    trunk, layer4, c3, c4 = stages(config)
    if kind == "plain":
        return PlainCNN(config.width, num_classes, trunk=trunk, layer4=layer4, channels=c4)
    alpha, beta = INAT_PRIOR if kind == "inat_prior" else (config.alpha, config.beta)
    if kind == "layer4":  # the paper's text: group the last block's output
        trunk, c3 = nn.Sequential(trunk, layer4), c4
    head = RegionGroupingHead(c3, num_classes, config.num_parts, assignment=config.assignment,
                              attention=kind != "no_attention", out_channels=c4, alpha=alpha, beta=beta)
    return RegionGroupingModel(trunk, head)


def prior_weight(config: RegionGroupingConfig, kind: str) -> float:
    """The weight of ``L_W`` for ``kind`` (0 for the plain backbone and Table 7's "w/o regularization")."""
    return 0.0 if kind in ("plain", "no_prior") else config.prior_weight


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy on class indices; per-attribute sigmoid cross-entropy on multi-hot float labels
    (CelebA's 40 attributes, as the authors' code)."""
    if labels.is_floating_point():
        return F.binary_cross_entropy_with_logits(logits, labels)
    return F.cross_entropy(logits, labels)


def region_objective(model: nn.Module, batch: Mapping[str, torch.Tensor], weight: float,
                     snapshots: list[torch.Tensor] | None = None) -> StepOutput:
    """``CE + weight · L_W`` (§3.4); ``L_W`` is logged for every Region Grouping model, trained on only if
    ``weight > 0``. The plain backbone: CE. A batch marked :data:`SNAPSHOT` seen in evaluation (``fit``
    evaluates its ``eval_data`` after every epoch) appends its assignment maps ``Q`` to ``snapshots``."""
    images, labels = model_input(batch), batch[R.LABEL]
    if not isinstance(model, RegionGroupingModel):
        logits = model(images)
        return StepOutput(classification_loss(logits, labels), logits)
    out = model.outputs(images)
    if snapshots is not None and SNAPSHOT in batch and not model.training:
        snapshots.append(out.assign.detach().float().cpu())
    ce, l_w = classification_loss(out.logits, labels), model.head.prior_loss(out)
    loss = ce + weight * l_w if weight else ce
    return StepOutput(loss, out.logits, {"ce": ce.detach(), "l_w": l_w.detach()})


def lr_scale(config: RegionGroupingConfig, kind: str) -> float:
    """The new modules' learning-rate factor: :data:`CODE_LR_SCALE` for the ``lr20`` ablation, else
    ``new_lr_scale``."""
    return CODE_LR_SCALE if kind == "lr20" else config.new_lr_scale


def param_groups(model: nn.Module, config: RegionGroupingConfig, kind: str = "full") -> list[dict]:
    """The trunk at ``lr``; the new modules (the Region Grouping head) at ``lr × lr_scale`` (authors: 20×)."""
    if not isinstance(model, RegionGroupingModel):
        return [{"params": list(model.parameters())}]
    return [{"params": list(model.trunk.parameters())},
            {"params": list(model.head.parameters()), "lr": config.lr * lr_scale(config, kind)}]


def train_config(config: RegionGroupingConfig, seed: int) -> TrainConfig:
    """Adam with a cosine schedule; full batches only (``L_W`` compares a batch with N prior quantiles)."""
    return TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                       weight_decay=config.weight_decay, optimizer="adam", scheduler="cosine", seed=seed,
                       device=device_for(config), drop_last=True)


def snapshot_images(config: RegionGroupingConfig, data: Data) -> torch.Tensor:
    """The first ``n_snap`` test images ``[n, 3, H, W]``, whose assignment maps are recorded after every epoch."""
    if isinstance(data, RealTask):
        return data.first(data.test, config.n_snap)[R.IMAGE]
    return data.split("test_aligned").tensors[R.IMAGE][:config.n_snap]


def _train_job(job: tuple) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """One model from scratch (a pool job: small picklable inputs and outputs). Returns its state dict and the
    assignment maps of the snapshot images before training and after every epoch (``[]`` unless asked)."""
    config, train_data, num_classes, data_key, kind, seed, directory, context, snap = job
    seed_everything(seed)
    model = build_model(config, kind, num_classes)
    snapshots: list[torch.Tensor] = []
    eval_data = None
    if snap is not None and isinstance(model, RegionGroupingModel):
        with torch.no_grad():
            snapshots.append(model.eval().outputs(snap).assign.float().cpu())  # epoch 0: the initial dictionary
        model.train()
        marked = {R.IMAGE: snap, R.LABEL: torch.zeros(len(snap), dtype=torch.long), SNAPSHOT: torch.ones(len(snap))}
        eval_data = {SNAPSHOT: FeatureDataset(marked)}
    fit(model, train_data, train_config(config, seed),
        objective=partial(region_objective, weight=prior_weight(config, kind), snapshots=snapshots),
        eval_data=eval_data, checkpoint_dir=directory,
        context={"config": config, "data_key": data_key, "kind": kind, **(context or {})},
        trainable=param_groups(model, config, kind))
    return {k: v.cpu() for k, v in model.state_dict().items()}, snapshots


class Trained(dict):
    """``{kind: {seed: model}}`` plus ``snapshots``: the first seed's full model's assignment maps on the snapshot
    images before training and after every epoch, ``[n, epochs + 1, K, h, w]`` (None if not recorded)."""

    snapshots: torch.Tensor | None = None


def train_all(config: RegionGroupingConfig, data: Data, checkpoint_dir: Path | None,
              context: Mapping[str, Any] | None = None) -> Trained:
    """Every model × seed of this run (:func:`~attnbook.chapters.region_grouping.config.kinds`, each on its
    :func:`~attnbook.chapters.region_grouping.config.seeds`): ``{kind: {seed: model}}``, in eval mode.

    On the CPU the models train in a pool of one-thread processes (:func:`attnbook.parallel.process_map`; each
    seeds itself, so the result does not depend on the pool). The full model of the first seed also records its
    assignment maps on :func:`snapshot_images` before training and after every epoch (``Trained.snapshots``;
    a model resumed from a checkpoint has none for the epochs it skips, and then none are shown)."""
    num_classes, key = (data.num_classes, data.key) if isinstance(data, RealTask) else (
        data.spec.num_classes, data.spec.key())
    first = seeds(config)[0]
    snap = snapshot_images(config, data)
    jobs = [(config, data.train, num_classes, key, kind, s,
             None if checkpoint_dir is None else Path(checkpoint_dir) / f"{kind}-seed{s}", context,
             snap if (kind, s) == ("full", first) else None)
            for kind in kinds(config) for s in seeds(config, kind)]
    # a pool only for the small CPU models (a ResNet uses threads well, and spawned workers would not see this
    # process's weight cache settings)
    workers = default_workers() if device_for(config) == "cpu" and config.arch == "small_cnn" else 1
    results = process_map(_train_job, jobs, workers)
    models = Trained()
    for job, (state, snapshots) in zip(jobs, results):
        kind, s = job[4], job[5]
        model = build_model(replace(config, pretrained=False), kind, num_classes)  # weights come from the state
        model.load_state_dict(state)
        models.setdefault(kind, {})[s] = model.to(device_for(config)).eval()
        if len(snapshots) == config.epochs + 1:
            models.snapshots = torch.stack(snapshots, dim=1)  # [n, epochs + 1, K, h, w]
    return models
