"""Chapter 5's data, models and training. Paper: BR-NPA (Gomez et al.) §3–4, scaled to a CPU.

Chapter: ``nbs/05_brnpa.ipynb``. Methods: :mod:`attnbook.methods.brnpa` (Algorithm 1),
:mod:`attnbook.methods.bcnn`, :mod:`attnbook.methods.distillation`; heads by name from
:mod:`attnbook.methods.registry`; the staged model from :mod:`attnbook.models.staged`.

* **Stage A** (once per run): a backbone + GAP head trained end to end at low resolution — the
  analog of the ImageNet-pretrained ResNet the paper starts from (``paper`` profile: the real
  ImageNet weights, ``pretrain_epochs=0``).
* **Stage B** (per seed): every model starts from the stage-A weights, gets a fresh head (GAP,
  B-CNN or BR-NPA) and trains the backbone from stage ``train_from`` on; the stages before it are
  frozen and their output is cached once (cpu: ``layer4`` trains on cached ``layer3`` maps; paper:
  everything trains). High resolution sets ``stride_one`` stages to stride 1 (§3.1) and distils from
  the low-resolution model of the same kind (§3.1, Eq. 1).
* **Ablations** (Tables 4, 5 and the authors' code vs the paper) train BR-NPA heads at high
  resolution without distillation, as §4.3 does; on the cpu profile on frozen, cached
  high-resolution maps (``ablation_start="head"``).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from attnbook.chapters.brnpa.config import HEAD, STEM, SYNTHETIC, TEACHER_LOGITS, TRAIN_SPLIT, BRNPAConfig
from attnbook.config import device_for
from attnbook.data import records as R
from attnbook.methods.brnpa import subset_cross_entropy
from attnbook.methods.distillation import distillation_loss
from attnbook.methods.registry import make_head
from attnbook.models.backbones import Backbone, Classifier, build_backbone, build_classifier
from attnbook.models.staged import StagedModel, last_convs, record_grad_norms, tail_of
from attnbook.seeding import seed_everything
from attnbook.train import (
    FEATURES,
    FeatureDataset,
    Objective,
    StepOutput,
    TrainConfig,
    cache_features,
    cross_entropy,
    fit,
    freeze,
    model_input,
)
from attnbook.train import evaluate as evaluate_classifier

# --- data -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageTask:
    """A classification task: the synthetic benchmark or a real dataset, as record datasets."""

    name: str
    train: Dataset
    test: Dataset
    info: R.DatasetInfo

    @property
    def num_classes(self) -> int:
        """Number of classes K."""
        return self.info.num_classes


def load_task(config: BRNPAConfig, dataset: str | None = None) -> ImageTask:
    """``dataset`` (a catalog name; default: the config's first) at ``config.resolution``, or — for a
    config without datasets — the synthetic fine-grained benchmark (the CUB analog of Table 1).

    The benchmark's backgrounds are uninformative here (``p_bias = 1/classes``: every habitat equally
    likely for every class), so that the only evidence is the bird and its parts.
    """
    dataset = dataset or (config.datasets[0] if config.datasets else None)
    if dataset is not None:
        from attnbook.data.catalog import load_dataset

        load = partial(load_dataset, dataset, size=config.resolution)
        train = load(split=TRAIN_SPLIT.get(dataset, "train"))
        return ImageTask(dataset, train, load(split="test"), train.info)
    from attnbook.data.synthetic import make_benchmark, spec_for

    bench = make_benchmark(spec_for("fine_grained", num_classes=config.num_classes,
                                    train_per_class=config.train_per_class, test_per_class=config.test_per_class,
                                    resolution=config.resolution, p_bias=1 / config.num_classes, seed=config.seed))
    return ImageTask(SYNTHETIC, bench.train, bench.test_aligned, bench.info)


class WithColumns(Dataset):
    """A record dataset with extra per-sample columns (e.g. the teacher's logits ``[N, K]`` of Eq. 1)."""

    def __init__(self, data: Dataset, columns: Mapping[str, torch.Tensor]) -> None:
        wrong = {k: len(v) for k, v in columns.items() if len(v) != len(data)}
        if wrong:
            raise ValueError(f"columns {wrong} do not have one row per sample ({len(data)})")
        self.data, self.columns = data, dict(columns)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {**self.data[index], **{key: value[index] for key, value in self.columns.items()}}


# --- models -----------------------------------------------------------------------------------------

def backbone_variant(config: BRNPAConfig, state: Mapping[str, torch.Tensor], high_res: bool) -> Backbone:
    """The stage-A backbone, at low resolution or with ``config.stride_one`` stages at stride 1 (§3.1)."""
    backbone = build_backbone(config.arch, stride_one=config.stride_one if high_res else ())
    backbone.load_state_dict(state)  # strides do not change parameter shapes
    return backbone


def build_model(config: BRNPAConfig, state: Mapping[str, torch.Tensor], kind: str, num_classes: int, *,
                start: str, high_res: bool, seed: int, **options: Any) -> StagedModel:
    """A stage-B model: the stage-A weights of the stages from ``start`` on and a fresh ``kind`` head
    (seeded; :func:`attnbook.methods.registry.make_head`); BR-NPA heads use the config's activation and
    suppression (Alg. 1 steps 1 and 5–6) unless ``options`` say otherwise."""
    seed_everything(seed)
    backbone = backbone_variant(config, state, high_res)
    if kind == "brnpa":
        options = {"activation": config.activation, "suppression": config.suppression, **options}
    head = make_head(kind, backbone.out_channels, num_classes, **options)
    return StagedModel(tail_of(backbone, start), head).to(device_for(config))


# --- training ---------------------------------------------------------------------------------------

def train_config(config: BRNPAConfig, seed: int, epochs: int) -> TrainConfig:
    """Adam with a cosine schedule, the chapter's batch size and device."""
    return TrainConfig(epochs=epochs, batch_size=config.batch_size, lr=config.lr, optimizer="adam",
                       scheduler="cosine", seed=seed, device=device_for(config), num_workers=config.num_workers,
                       progress=False)


def pretrain(config: BRNPAConfig, task: ImageTask, checkpoint_dir: Path | None = None) -> Classifier:
    """Stage A: backbone + GAP trained end to end at low resolution (resumable from ``checkpoint_dir``);
    the stand-in for the ImageNet-pretrained ResNet of §4.1."""
    seed_everything(config.seed)
    model = build_classifier(config.arch, task.num_classes, pretrained=config.pretrained)
    if config.pretrain_epochs:  # the checkpoint must belong to this chapter config and data, not just this TrainConfig
        context = {"chapter": "05_brnpa", "config": dataclasses.asdict(config), "task": task.name,
                   "train_images": len(task.train)}
        fit(model, task.train, train_config(config, config.seed, config.pretrain_epochs),
            checkpoint_dir=checkpoint_dir, context=context)
    return model.eval()


def test_accuracy(model: nn.Module, task: ImageTask, batch_size: int = 64) -> float:
    """Top-1 accuracy of an image classifier on the task's test split."""
    return float(evaluate_classifier(model, task.test, batch_size=batch_size)["acc"])


@dataclass(frozen=True)
class Inputs:
    """What stage-B models train on: cached maps of the frozen stages before ``start`` (or the images)."""

    start: str
    prefix: Backbone | None  # the frozen stages (None when everything trains)
    cut: str | None  # the prefix stage whose output is cached
    train: Dataset
    test: Dataset


def prepare_inputs(config: BRNPAConfig, state: Mapping[str, torch.Tensor], task: ImageTask, start: str,
                   high_res: bool = False) -> Inputs:
    """Freeze the stages before ``start`` and cache their output on both splits (nothing when
    ``start="stem"``). ``high_res`` builds the prefix with ``stride_one`` (for ``start="head"``)."""
    if start == STEM:
        return Inputs(start, None, None, task.train, task.test)
    prefix = freeze(backbone_variant(config, state, high_res).to(device_for(config)))
    cut = prefix.stage_names[-1] if start == HEAD else prefix.stage_names[prefix.stage_names.index(start) - 1]
    cache = partial(cache_features, prefix, layer=cut, batch_size=2 * config.batch_size)
    train = cache(task.train)  # training reads only the maps and labels: drop the ground truth
    train = FeatureDataset({key: train.tensors[key] for key in (FEATURES, R.LABEL)})
    return Inputs(start, prefix, cut, train, cache(task.test))


def param_groups(model: StagedModel, config: BRNPAConfig) -> list[dict[str, Any]]:
    """Head at ``lr``; trained backbone stages at ``lr × backbone_lr_scale`` (fine-tuning)."""
    groups: list[dict[str, Any]] = [{"params": list(model.head.parameters()), "lr": config.lr}]
    tail = [p for p in model.tail.parameters() if p.requires_grad]
    return groups + ([{"params": tail, "lr": config.lr * config.backbone_lr_scale}] if tail else [])


@dataclass(frozen=True)
class Distillation:
    """Objective ``α·CE + (1 − α)·T²·KL`` against logits stored in the batch. Paper: BR-NPA §3.1, Eq. 1."""

    alpha: float
    temperature: float

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        """The student's logits and Eq. 1's loss against ``batch[TEACHER_LOGITS]``."""
        logits = model(model_input(batch))  # [B, K]
        loss = distillation_loss(logits, batch[TEACHER_LOGITS], batch[R.LABEL], alpha=self.alpha,
                                 temperature=self.temperature)
        return StepOutput(loss, logits)


def subset_objective(model: StagedModel, batch: dict[str, torch.Tensor]) -> StepOutput:
    """CE of the main classifier + the Table 5 subset classifiers' CE terms (§4.3: "6 cross-entropy terms"),
    read from the head's ``extras["aux_logits"]``."""
    out = model.head.attend(model.tail(model_input(batch)))
    loss = F.cross_entropy(out.logits, batch[R.LABEL]) + subset_cross_entropy(out, batch[R.LABEL])
    return StepOutput(loss, out.logits)


def train_model(config: BRNPAConfig, model: StagedModel, data: Dataset, seed: int, epochs: int,
                objective: Objective = cross_entropy) -> dict[str, list[float]]:
    """Train with Adam + cosine; returns the gradient norms of the tail's last three convs per step
    (Fig. 8; empty when the tail has no trainable conv)."""
    names = last_convs(model.tail) if any(p.requires_grad for p in model.tail.parameters()) else []
    with record_grad_norms(model.tail, names) as norms:
        fit(model, data, train_config(config, seed, epochs), objective=objective,
            trainable=param_groups(model, config))
    return norms
