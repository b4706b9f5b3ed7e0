"""One training loop for every chapter: devices, mixed precision, seeding, checkpoints + exact resume.

Methods differ only in their loss, so a method plugs in an :class:`Objective` —
``objective(model, batch) -> StepOutput(loss, logits, logs)`` — and :func:`fit` does the rest.
Batches are dicts in the vocabulary of :mod:`attnbook.data.records` (``default_collate`` of sample
dicts), moved to the device. The model's input is :func:`model_input`: the cached feature map
(``"features"``, see :func:`cache_features`) when the batch has one, else the image.

Repeatability (tested on CPU): :func:`fit` calls :func:`attnbook.seeding.seed_everything` with the
config's seed; the data order of epoch e is a permutation drawn from a generator seeded by
``(seed, e)``, never from the global RNG; the checkpoint written after every epoch holds the model,
optimizer, scheduler, grad scaler and global RNG states, so a killed run resumed from
``checkpoint_dir`` ends bit-identical to an uninterrupted one. Build the model after
``seed_everything(seed)`` so its initialisation is seeded too.

Mixed precision (``amp``): ``"auto"`` autocasts on CUDA only — bf16 where supported (no grad
scaler), otherwise fp16 with a ``GradScaler``; on CPU it trains in fp32. ``"bf16"`` also works on
CPU (faster on CPUs with AVX512-BF16); ``"off"`` disables autocast.

Several devices (``devices=N`` > 1, or a process started by ``torchrun``): :func:`fit` hands over to
:func:`attnbook.distributed.fit` — DistributedDataParallel over N processes it spawns, the same global
batches as one process, rank-0 checkpoints that any world size resumes. ``devices=1`` is this module alone.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MethodType
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from attnbook.checkpoints import load_checkpoint, save_checkpoint
from attnbook.data.records import IMAGE, LABEL
from attnbook.devices import autocast, autocast_dtype, resolve_device
from attnbook.provenance import code_version, jsonable
from attnbook.seeding import get_rng_state, seed_everything, seeded_generator, set_rng_state

FEATURES = "features"  # batch key of a cached backbone feature map [C, h, w] (see cache_features)

Batch = dict[str, torch.Tensor]
History = list[dict[str, float]]
"""One dict per epoch: epoch, train_loss, train_acc, <split>_loss, <split>_acc, lr (first param group,
during the epoch), seconds, + the objective's logs as train_<key> / <split>_<key>."""

_CHOICES = {
    "optimizer": ("sgd", "adam", "adamw"),
    "scheduler": ("none", "cosine", "step"),
    "amp": ("auto", "off", "bf16", "fp16"),
    "device": ("auto", "cpu", "cuda"),
}
_NOT_FINGERPRINTED = ("progress", "devices")  # config fields that cannot change the results (or: any world
# size resumes a checkpoint; the global batch is ``batch_size`` whatever ``devices`` is)


@dataclass(frozen=True)
class TrainConfig:
    """Everything :func:`fit` needs besides model, data and objective. Defaults: Adam 1e-3, no schedule.

    ``momentum`` is SGD's; ``milestones`` (epochs) and ``gamma`` belong to ``scheduler="step"``; the
    cosine schedule anneals to 0 over ``epochs``; both step once per epoch. ``grad_clip`` is a max
    gradient L2 norm. ``devices`` > 1 trains with DistributedDataParallel on that many processes (GPUs
    with NCCL, else CPU processes with gloo; :mod:`attnbook.distributed`), ``batch_size`` staying the
    global batch; ``sync_batchnorm`` synchronises batch-norm statistics across them (CUDA only).
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    momentum: float = 0.9
    scheduler: str = "none"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    grad_clip: float | None = None
    amp: str = "auto"
    device: str = "auto"
    seed: int = 0
    eval_batch_size: int = 256
    num_workers: int = 0
    drop_last: bool = False
    progress: bool | None = None  # None: on, unless $ATTNBOOK_PROGRESS=0 (set by `attnbook run`)
    devices: int = 1
    sync_batchnorm: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(self.milestones))
        for name, valid in _CHOICES.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r} is not one of {valid}")
        for name in ("epochs", "batch_size", "eval_batch_size", "devices"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.lr <= 0 or (self.grad_clip is not None and self.grad_clip <= 0):
            raise ValueError(f"lr and grad_clip must be positive, got lr={self.lr}, grad_clip={self.grad_clip}")
        if self.scheduler == "step" and not self.milestones:
            raise ValueError("scheduler='step' needs milestones, e.g. milestones=(81, 122)")


@dataclass(frozen=True)
class StepOutput:
    """What an objective returns for one batch: the scalar batch-mean ``loss``, ``logits`` ``[B, K]``
    (for accuracy), and extra per-batch means to log (averaged over the epoch as ``<split>_<key>``)."""

    loss: torch.Tensor
    logits: torch.Tensor
    logs: Mapping[str, float | torch.Tensor] = field(default_factory=dict)


class Objective(Protocol):
    """A method's training loss: ``(model, batch) -> StepOutput``. Evaluation runs it under
    ``torch.no_grad()``; an objective that needs gradients there (e.g. differentiable Grad-CAM) wraps
    that part in ``torch.enable_grad()``."""

    def __call__(self, model: nn.Module, batch: Batch) -> StepOutput:
        """The loss, logits and logs of ``model`` on one ``batch``."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; training stopped at once."""

    def __init__(self, epoch: int, step: int, value: float) -> None:
        self.epoch, self.step, self.value = epoch, step, value
        super().__init__(
            f"training loss is {value} at epoch {epoch}, step {step}; lower the learning rate, set "
            "grad_clip, or check the objective and the inputs for NaN/inf"
        )


def model_input(batch: Batch) -> torch.Tensor:
    """The tensor a model consumes: the cached ``"features"`` if present, else ``"image"``."""
    return batch[FEATURES] if FEATURES in batch else batch[IMAGE]


def cross_entropy(model: nn.Module, batch: Batch) -> StepOutput:
    """Single-label softmax cross-entropy on ``batch["label"]`` (int64 ``[B]``)."""
    logits = model(model_input(batch))  # [B, K]
    return StepOutput(F.cross_entropy(logits, batch[LABEL]), logits)


def multilabel_soft_margin(model: nn.Module, batch: Batch) -> StepOutput:
    """Multi-label loss on multi-hot ``batch["label"]`` ``[B, K]``: mean over labels of per-label
    sigmoid cross-entropy (``MultiLabelSoftMarginLoss``)."""
    logits = model(model_input(batch))  # [B, K]
    return StepOutput(F.multilabel_soft_margin_loss(logits, batch[LABEL].float()), logits)


def correct(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Summed per-sample accuracy: argmax hits for class indices; for multi-hot (float) labels or a
    single logit, the fraction of labels whose sign (logit > 0) matches (label > 0.5)."""
    logits = logits.reshape(len(logits), -1)  # [B] (one logit) -> [B, 1]
    if labels.is_floating_point() or logits.shape[1] == 1:
        hits = (logits > 0) == (labels.reshape(logits.shape) > 0.5)  # [B, K]
        return hits.float().mean(dim=1).sum().item()
    return (logits.argmax(dim=1) == labels).sum().item()


class _Meter:
    """Sample-weighted means of loss, accuracy and an objective's logs over an epoch."""

    def __init__(self) -> None:
        self.count = 0
        self.sums: dict[str, float] = defaultdict(float)

    def add(self, out: StepOutput, labels: torch.Tensor) -> None:
        size = labels.shape[0]
        self.count += size
        self.sums["loss"] += out.loss.item() * size
        self.sums["acc"] += correct(out.logits.detach().float(), labels)
        for key, value in out.logs.items():
            self.sums[key] += float(value) * size

    def means(self) -> dict[str, float]:
        return {key: total / self.count for key, total in self.sums.items()}


def _show_progress(config: TrainConfig) -> bool:
    if config.progress is not None:
        return config.progress
    return os.environ.get("ATTNBOOK_PROGRESS", "1") != "0"


def _to_device(batch: Mapping[str, Any], device: torch.device) -> Batch:
    return {key: value.to(device, non_blocking=True) if torch.is_tensor(value) else value
            for key, value in batch.items()}


def _model_device(model: nn.Module) -> torch.device:
    tensor = next(iter(model.parameters()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _param_groups(model: nn.Module, trainable: Iterable[nn.Parameter] | Iterable[dict] | None) -> list[dict]:
    """Optimizer param groups: ``trainable`` parameters, torch-style group dicts (e.g. a 20× ``lr`` for
    new modules, Region Grouping's code), or by default every parameter with ``requires_grad``."""
    items = list(trainable) if trainable is not None else [p for p in model.parameters() if p.requires_grad]
    if not items:
        raise ValueError("nothing to train: no parameter requires grad; unfreeze some or pass trainable=")
    if all(isinstance(item, dict) for item in items):
        return [{**group, "params": list(group["params"])} for group in items]
    if all(isinstance(item, torch.Tensor) for item in items):
        return [{"params": items}]
    raise TypeError("trainable must be parameters or param-group dicts ({'params': …, 'lr': …}), not a mix")


def build_optimizer(config: TrainConfig, groups: list[dict]) -> torch.optim.Optimizer:
    """SGD (with ``momentum``), Adam or AdamW at ``lr`` with ``weight_decay`` (L2 for SGD/Adam, decoupled for AdamW)."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    optimizer = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return optimizer(groups, lr=config.lr, weight_decay=config.weight_decay)


def _constant(_epoch: int) -> float:
    return 1.0


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch LR schedule: cosine to 0 over ``epochs``, ×``gamma`` at each milestone, or constant."""
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), config.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _constant)


def _loader(data: Dataset, batch_size: int, config: TrainConfig, order: list[int] | None = None,
            drop_last: bool = False) -> DataLoader:
    return DataLoader(data, batch_size=batch_size, sampler=order, num_workers=config.num_workers,
                      drop_last=drop_last)


@dataclass
class _Trainer:
    """The mutable state of one :func:`fit` call and the epoch it runs."""

    model: nn.Module
    config: TrainConfig
    objective: Objective
    device: torch.device
    dtype: torch.dtype | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler

    @classmethod
    def create(cls, model: nn.Module, config: TrainConfig, objective: Objective,
               trainable: Iterable[nn.Parameter] | Iterable[dict] | None) -> _Trainer:
        device = resolve_device(config.device)
        dtype = autocast_dtype(config.amp, device)
        model.to(device)
        optimizer = build_optimizer(config, _param_groups(model, trainable))
        scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)  # fp16 only
        return cls(model, config, objective, device, dtype, optimizer, build_scheduler(config, optimizer), scaler)

    def train_loader(self, data: Dataset, epoch: int) -> DataLoader:
        order = torch.randperm(len(data), generator=seeded_generator(self.config.seed, epoch)).tolist()
        return _loader(data, self.config.batch_size, self.config, order, self.config.drop_last)

    def train_epoch(self, loader: DataLoader, epoch: int, bar: tqdm) -> dict[str, float]:
        self.model.train()
        meter = _Meter()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        for step, batch in enumerate(loader, start=1):
            batch = _to_device(batch, self.device)
            with autocast(self.device, self.dtype):
                out = self.objective(self.model, batch)
            if not torch.isfinite(out.loss.detach()).all():
                raise NonFiniteLossError(epoch, step, out.loss.item())
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(out.loss).backward()
            if self.config.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(params, self.config.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            meter.add(out, batch[LABEL])
            bar.update()
            bar.set_postfix(epoch=epoch, loss=f"{out.loss.item():.4f}", acc=f"{meter.means()['acc']:.3f}")
        return meter.means()

    def evaluate(self, data: Dataset) -> dict[str, float]:
        return _evaluate(self.model, _loader(data, self.config.eval_batch_size, self.config),
                         self.objective, self.device, self.dtype)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": get_rng_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty when saved without fp16 (a disabled scaler)
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])


def fit(
    model: nn.Module,
    train_data: Dataset,
    config: TrainConfig,
    *,
    objective: Objective = cross_entropy,
    eval_data: Mapping[str, Dataset] | None = None,
    checkpoint_dir: str | Path | None = None,
    context: Mapping[str, Any] | None = None,
    trainable: Iterable[nn.Parameter] | Iterable[dict] | None = None,
) -> History:
    """Train ``model`` on ``train_data`` for ``config.epochs``, evaluating every split of ``eval_data``
    after each epoch; returns the :data:`History` (also ``history.json`` in ``checkpoint_dir``).

    With ``checkpoint_dir``, a checkpoint is written atomically after every epoch, and an existing one
    is resumed from its last completed epoch (a finished run returns at once, model loaded). What a
    checkpoint must match (:func:`fingerprint`): ``config``, the model, the code version and
    ``context`` — the caller's JSON-able description of everything else that shapes the result (the
    resolved chapter config, the data spec; :attr:`attnbook.runs.RunRecorder.checkpoint_context`).
    Another run's checkpoint raises :class:`~attnbook.checkpoints.CheckpointMismatchError`, a damaged
    one :class:`~attnbook.checkpoints.CheckpointCorruptError`. ``trainable`` restricts or groups what
    the optimizer updates (default: all parameters with ``requires_grad``).

    ``config.devices`` > 1 (or a ``torchrun`` launch): :func:`attnbook.distributed.fit` spawns the
    processes, trains with DistributedDataParallel and loads the result into ``model``; ``objective``,
    the datasets and ``trainable`` are then pickled to the processes (module-level functions and classes).
    """
    from attnbook import distributed

    if config.devices > 1 or distributed.torchrun_world() > 1:
        return distributed.fit(model, train_data, config, objective=objective, eval_data=eval_data,
                               checkpoint_dir=checkpoint_dir, context=context, trainable=trainable)
    seed_everything(config.seed)
    trainer = _Trainer.create(model, config, objective, trainable)
    current = fingerprint(model, config, context)
    history = _resume(trainer, Path(checkpoint_dir), current) if checkpoint_dir is not None else []
    steps = _steps_per_epoch(len(train_data), config) * (config.epochs - len(history))
    with tqdm(total=steps, desc="train", unit="batch", disable=not _show_progress(config), dynamic_ncols=True) as bar:
        for epoch in range(len(history) + 1, config.epochs + 1):
            history.append(_run_epoch(trainer, train_data, eval_data or {}, epoch, bar))
            if checkpoint_dir is not None:
                _save(trainer, Path(checkpoint_dir), current, history)
    return history


def _steps_per_epoch(size: int, config: TrainConfig) -> int:
    rounding = math.floor if config.drop_last else math.ceil
    return rounding(size / config.batch_size)


def _run_epoch(trainer: _Trainer, train_data: Dataset, eval_data: Mapping[str, Dataset], epoch: int,
               bar: tqdm) -> dict[str, float]:
    """Train one epoch, evaluate every split, step the schedule; the epoch's history row."""
    start = time.perf_counter()
    lr = trainer.optimizer.param_groups[0]["lr"]
    row: dict[str, float] = {"epoch": epoch}
    row.update(_prefixed("train", trainer.train_epoch(trainer.train_loader(train_data, epoch), epoch, bar)))
    for split, data in eval_data.items():
        row.update(_prefixed(split, trainer.evaluate(data)))
    trainer.scheduler.step()
    row.update(lr=lr, seconds=time.perf_counter() - start)
    bar.set_postfix({key: f"{value:.4g}" for key, value in row.items() if key.endswith("_acc")})
    return row


def _prefixed(prefix: str, metrics: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}_{key}": value for key, value in metrics.items()}


@torch.no_grad()
def _evaluate(model: nn.Module, loader: DataLoader, objective: Objective, device: torch.device,
              dtype: torch.dtype | None) -> dict[str, float]:
    was_training = model.training
    model.eval()
    meter = _Meter()
    for batch in loader:
        batch = _to_device(batch, device)
        with autocast(device, dtype):
            meter.add(objective(model, batch), batch[LABEL])
    model.train(was_training)
    return meter.means()


def evaluate(model: nn.Module, data: Dataset, objective: Objective = cross_entropy, *, batch_size: int = 256,
             amp: str = "off") -> dict[str, float]:
    """Mean ``loss``, ``acc`` and the objective's logs over ``data``, in eval mode on the model's device."""
    device = _model_device(model)
    loader = DataLoader(data, batch_size=batch_size)
    return _evaluate(model, loader, objective, device, autocast_dtype(amp, device))


@torch.no_grad()
def predict(model: nn.Module, data: Dataset, *, batch_size: int = 256) -> torch.Tensor:
    """``model(model_input(batch))`` over ``data`` in order, in eval mode: logits ``[N, K]`` on the CPU."""
    was_training = model.training
    model.eval()
    device = _model_device(model)
    logits = [model(model_input(_to_device(batch, device))).float().cpu()
              for batch in DataLoader(data, batch_size=batch_size)]
    model.train(was_training)
    return torch.cat(logits)


# --- checkpoints -----------------------------------------------------------------------------------

def fingerprint(model: nn.Module, config: TrainConfig, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What must match to resume: the config (minus display options), model class, parameter shapes,
    the code version (:func:`attnbook.provenance.code_version`) and the caller's ``context`` (JSON-able:
    dicts, lists, numbers, strings; dataclasses, tuples and paths are converted)."""
    config_fields = {key: value for key, value in asdict(config).items() if key not in _NOT_FINGERPRINTED}
    params = {name: list(p.shape) for name, p in model.named_parameters()}
    found = {"config": config_fields, "model": type(model).__qualname__, "parameters": params,
             "code_version": code_version(), "context": jsonable(context, "checkpoint context")}
    # JSON round trip: tuples become lists, so a fingerprint compares equal to its stored copy
    return json.loads(json.dumps(found, allow_nan=False))



def _resume(trainer: _Trainer, directory: Path, current: dict[str, Any]) -> History:
    """Load ``directory``'s checkpoint into ``trainer`` if there is one; its history (empty if none)."""
    state = load_checkpoint(directory, current)
    if state is None:
        return []
    trainer.load_state_dict(state)
    return list(state["history"])


def _save(trainer: _Trainer, directory: Path, current: dict[str, Any], history: History) -> None:
    save_checkpoint(directory, trainer.state_dict(), current, history)


# --- frozen modules and cached features ------------------------------------------------------------

def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


def freeze(module: nn.Module) -> nn.Module:
    """Stop ``module`` learning: ``requires_grad=False`` and eval mode that survives ``model.train()``,
    so batch-norm statistics (and dropout) stay fixed. Paper: BLA §4.1–4.2 (pretrained backbone "held
    fixed"; the authors' code keeps its batch-norm in inference mode). Undo with :func:`unfreeze`."""
    module.requires_grad_(False)
    module.train = MethodType(_stay_in_eval, module)
    return module.eval()


def unfreeze(module: nn.Module) -> nn.Module:
    """Undo :func:`freeze`: trainable again and following ``train()``/``eval()`` as usual."""
    module.__dict__.pop("train", None)
    return module.requires_grad_(True)


class FeatureDataset(Dataset):
    """Sample dicts sliced from stacked tensors (``{key: [N, …]}``), e.g. from :func:`cache_features`."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        sizes = {key: len(value) for key, value in tensors.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"all tensors need the same first dimension, got {sizes}")
        self.tensors = dict(tensors)

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index: int) -> Batch:
        return {key: value[index] for key, value in self.tensors.items()}


@torch.no_grad()
def cache_features(
    backbone: nn.Module, data: Dataset, *, batch_size: int = 64, layer: str | None = None
) -> FeatureDataset:
    """Run ``backbone`` (eval mode, its device) once over ``data``: ``"features"`` ``[N, C, h, w]``
    (the output, or ``backbone.features(x, [layer])``) plus every other sample key except ``"image"``,
    on the CPU in fp32. Heads then train on it in seconds (BLA, BR-NPA ablations). Random data
    augmentation is frozen into the cache; memory is N·C·h·w·4 bytes."""
    was_training = backbone.training
    backbone.eval()
    device = _model_device(backbone)
    columns: dict[str, list[torch.Tensor]] = defaultdict(list)
    for batch in DataLoader(data, batch_size=batch_size):
        images = batch.pop(IMAGE).to(device)
        maps = backbone(images) if layer is None else backbone.features(images, [layer])[layer]
        columns[FEATURES].append(maps.float().cpu())  # [B, C, h, w]
        for key, value in batch.items():
            columns[key].append(value)
    backbone.train(was_training)
    return FeatureDataset({key: torch.cat(values) for key, values in columns.items()})
