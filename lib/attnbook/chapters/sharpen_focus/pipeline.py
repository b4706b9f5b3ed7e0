"""Chapter 2's data, models and training: CIFAR ResNets trained from scratch with cross-entropy (the baseline) or
with Sharpen Focus's losses (Eq. 9) on one attention, over training seeds; the ports' choices (ablation); the
multi-label variant; the cost of a training step.

* **Data.** ``synthetic`` (cpu, gpu): the testbed's ``many_class`` preset with confusable pairs (classes 2k and
  2k+1 differ in one attribute of one part, the *discriminative part*) and uninformative backgrounds
  (``p_bias = 1/classes``) — the CIFAR-100 analog, many classes at 32–64 px, where the errors that remain are
  confusions within a pair; ``cifar100`` (paper): the real data set from :mod:`attnbook.data.real.cifar`.
* **Models.** :func:`attnbook.models.cifar_resnet.cifar_resnet` + :class:`~attnbook.methods.sharpen_focus.
  SharpenFocusHead` (GAP + linear); inner layer ``layer2`` (the last block of the penultimate stage), last layer
  ``layer3``. Every model of a seed starts from the same initial weights (seeded) and sees the same batches.
* **Training processes.** Small CPU models train as fast as independent one-thread processes as in one process
  with two threads on idle cores (8 cpu-profile jobs on 2 cores: 25.7 s vs 26.5 s, with 10 % less CPU time), and
  far faster when the cores are shared (intra-op threads of tiny convolutions wait, and spin, for each other: at
  load ≈ 7, 4 jobs took 66 s in the pool and had not finished after 7 min in one process), so on the CPU the
  jobs (model × seed) run in a pool of ``workers`` processes (default: the run's CPU threads) through
  :func:`attnbook.parallel.process_map`, each rebuilding the data from its seed; results do not depend on which
  process trained a model (every training is seeded by its job). ``workers=1`` trains in this process; on a GPU
  every job trains here, with ``devices`` processes each (DistributedDataParallel) when asked.

Chapter: ``nbs/02_sharpen_focus.ipynb``. Configuration: :mod:`attnbook.chapters.sharpen_focus.config`.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from attnbook import parallel
from attnbook.chapters.sharpen_focus.config import ABLATIONS, MODELS, SharpenFocusConfig, ml_seeds, seeds
from attnbook.config import device_for
from attnbook.data import records as R
from attnbook.devices import training_processes
from attnbook.methods.sharpen_focus import (
    SharpenFocusHead,
    SharpenFocusModel,
    SharpenFocusObjective,
    SharpenFocusOptions,
)
from attnbook.models.cifar_resnet import cifar_resnet
from attnbook.profiling import torch_threads
from attnbook.seeding import seed_everything
from attnbook.train import Batch, History, StepOutput, TrainConfig, fit

FAMILIES = ("main", "ablation", "multilabel")


# --- data -------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Task:
    """A single-label classification task: record datasets, and the benchmark when it is synthetic."""

    name: str
    train: Dataset
    test: Dataset
    info: R.DatasetInfo
    bench: Any = None  # attnbook.data.synthetic.Benchmark (ground truth: confusers, disc masks) or None

    @property
    def num_classes(self) -> int:
        """Number of classes K."""
        return self.info.num_classes


@lru_cache(maxsize=2)
def make_data(config: SharpenFocusConfig) -> Task:
    """The task of ``config`` (cached per process): the synthetic analog (data seed 0) or CIFAR-100."""
    if config.data == "cifar100":
        from attnbook.data.catalog import load_dataset

        train = load_dataset("cifar100", split="train")
        return Task("CIFAR-100", train, load_dataset("cifar100", split="test"), train.info)
    from attnbook.data.synthetic import make_benchmark, spec_for

    bench = make_benchmark(spec_for("many_class", confusable_pairs=True, num_classes=config.num_classes,
                                    train_per_class=config.train_per_class, test_per_class=config.test_per_class,
                                    resolution=config.resolution, p_bias=1 / config.num_classes,
                                    num_parts=config.num_parts, disc_groups=config.disc_groups, seed=0))
    return Task("synthetic many-class analog", bench.train, bench.test_aligned, bench.info, bench)


@lru_cache(maxsize=2)
def make_multilabel_data(config: SharpenFocusConfig):
    """The testbed's ``multi_label`` preset (1 to ``ml_max_objects`` birds of distinct classes per image, one per
    quadrant), uninformative backgrounds."""
    from attnbook.data.synthetic import make_benchmark, spec_for

    return make_benchmark(spec_for("multi_label", num_classes=config.ml_classes,
                                   train_per_class=config.ml_train_per_class, test_per_class=config.ml_test_per_class,
                                   resolution=config.ml_resolution, p_bias=1 / config.ml_classes,
                                   max_objects=config.ml_max_objects, confusable_pairs=config.ml_pairs, seed=0))


# --- models and objectives ------------------------------------------------------------------------------

def options_for(config: SharpenFocusConfig, kind: str, ablation: str | None = None) -> SharpenFocusOptions:
    """The method's options of a model: ``kind`` is its attention (``"baseline"``: the reference's, unused);
    ``ablation`` (a key of :data:`ABLATIONS`) swaps in the ports' choices."""
    attention = config.reference if kind == "baseline" else kind
    options = SharpenFocusOptions(attention=attention, multilabel_target=config.multilabel_target)
    return options.replace(**ABLATIONS[ablation][1]) if ablation else options


def build_model(config: SharpenFocusConfig, num_classes: int, seed: int) -> SharpenFocusModel:
    """A CIFAR ResNet of ``config.depth`` (widths w, 2w, 4w) with a Sharpen Focus head, initialised from ``seed``:
    every model of one seed starts from the same weights."""
    seed_everything(seed)
    widths = (config.width, 2 * config.width, 4 * config.width)
    return SharpenFocusModel(cifar_resnet(config.depth, widths=widths), SharpenFocusHead(widths[2], num_classes,
                                                                                         attention=config.reference))


def pad_crop_flip(images: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """The paper's CIFAR augmentation (He et al. §4.2): zero-pad ``pad`` pixels, take a random crop of the original
    size, flip horizontally with probability 1/2 — per image, from the global RNG (seeded by the training loop)."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (batch,)).tolist()
    dx = torch.randint(0, 2 * pad + 1, (batch,)).tolist()
    flip = (torch.rand(batch) < 0.5).tolist()
    out = torch.stack([padded[i, :, dy[i]:dy[i] + height, dx[i]:dx[i] + width] for i in range(batch)])
    return torch.where(torch.tensor(flip, device=images.device)[:, None, None, None], out.flip(-1), out)


@dataclass(frozen=True)
class Augmented:
    """An objective on augmented images (:func:`pad_crop_flip`) while training; evaluation sees the originals."""

    objective: SharpenFocusObjective
    pad: int = 4

    def __call__(self, model: SharpenFocusModel, batch: Batch) -> StepOutput:
        """The objective on the batch, its images augmented in training mode."""
        if model.training:
            batch = {**batch, R.IMAGE: pad_crop_flip(batch[R.IMAGE], self.pad)}
        return self.objective(model, batch)


@dataclass(frozen=True)
class Job:
    """One model to train: ``family`` (main / ablation / multilabel), ``kind`` (a model of :data:`MODELS` or an
    ablation's name) and the training seed."""

    family: str
    kind: str
    seed: int

    @property
    def name(self) -> str:
        """Folder name of its checkpoints."""
        return f"{self.family}-{self.kind}-seed{self.seed}"


def objective_for(config: SharpenFocusConfig, job: Job):
    """The job's training objective: cross-entropy (baseline) or Eq. 9 with its options; augmented if asked."""
    multilabel = job.family == "multilabel"
    ablation = job.kind if job.family == "ablation" else None
    kind = config.reference if ablation else job.kind
    objective = SharpenFocusObjective(options_for(config, kind, ablation), multilabel=multilabel,
                                      enabled=kind != "baseline")
    return Augmented(objective) if config.augment else objective


def train_config(config: SharpenFocusConfig, seed: int, epochs: int | None = None) -> TrainConfig:
    """The optimiser and schedule of ``config`` (paper: SGD + step; CPU profiles: Adam + cosine), on the run's
    device; ``devices`` (gpu, paper: 0 = every visible GPU) > 1 trains each model with DistributedDataParallel."""
    return TrainConfig(epochs=epochs or config.epochs, batch_size=config.batch_size, lr=config.lr,
                       weight_decay=config.weight_decay, optimizer=config.optimizer, scheduler=config.scheduler,
                       milestones=config.milestones, seed=seed, device=device_for(config), progress=False,
                       devices=training_processes(config.devices))


def _job_data(config: SharpenFocusConfig, job: Job) -> tuple[Dataset, int, str]:
    if job.family == "multilabel":
        bench = make_multilabel_data(config)
        return bench.train, bench.spec.num_classes, bench.spec.key()
    task = make_data(config)
    return task.train, task.num_classes, task.bench.spec.key() if task.bench is not None else task.name


def train_one(config: SharpenFocusConfig, job: Job, checkpoint_dir: Path | None = None,
              context: Mapping[str, Any] | None = None) -> tuple[SharpenFocusModel, History]:
    """Train one job from scratch (resumable from ``checkpoint_dir/<job.name>``: same config, data and code)."""
    data, num_classes, data_key = _job_data(config, job)
    model = build_model(config, num_classes, job.seed)
    epochs = config.ml_epochs if job.family == "multilabel" else config.epochs
    directory = None if checkpoint_dir is None else Path(checkpoint_dir) / job.name
    history = fit(model, data, train_config(config, job.seed, epochs), objective=objective_for(config, job),
                  checkpoint_dir=directory, context={"config": config, "data_key": data_key, "job": job.name,
                                                     **(context or {})})
    return model.eval(), history


def _train_state(job: Job, config: SharpenFocusConfig, checkpoint_dir: str | None,
                 context: Mapping[str, Any] | None) -> dict[str, torch.Tensor]:
    """One job in a worker process: its trained weights on the CPU (small and picklable)."""
    model, _ = train_one(config, job, None if checkpoint_dir is None else Path(checkpoint_dir), context)
    return {k: v.cpu() for k, v in model.state_dict().items()}


def worker_count(config: SharpenFocusConfig) -> int:
    """Training processes: ``config.workers``, or the run's CPU threads (1 on a GPU: one device)."""
    if device_for(config) != "cpu":
        return 1
    return config.workers or parallel.default_workers()


def train_jobs(config: SharpenFocusConfig, jobs: Sequence[Job], checkpoint_dir: Path | None = None,
               context: Mapping[str, Any] | None = None) -> dict[Job, SharpenFocusModel]:
    """Train every job; with more than one worker in a pool of one-thread processes
    (:func:`attnbook.parallel.process_map`), else here."""
    workers = min(worker_count(config), len(jobs))
    if workers <= 1:
        return {job: train_one(config, job, checkpoint_dir, context)[0] for job in jobs}
    directory = None if checkpoint_dir is None else str(checkpoint_dir)
    states = parallel.process_map(partial(_train_state, config=config, checkpoint_dir=directory, context=context),
                                  list(jobs), workers)
    models = {}
    for job, state in zip(jobs, states, strict=True):
        _, num_classes, _ = _job_data(config, job)
        model = build_model(config, num_classes, job.seed)
        model.load_state_dict(state)
        models[job] = model.to(device_for(config)).eval()
    return models


def _by_kind(models: Mapping[Job, SharpenFocusModel]) -> dict[str, dict[int, SharpenFocusModel]]:
    out: dict[str, dict[int, SharpenFocusModel]] = {}
    for job, model in models.items():
        out.setdefault(job.kind, {})[job.seed] = model
    return out


def main_jobs(config: SharpenFocusConfig) -> list[Job]:
    """Table 1's models (baseline, + Grad-CAM, + A_ch, + A_px) × the run's seeds."""
    return [Job("main", kind, s) for s in seeds(config) for kind in MODELS]


def ablation_jobs(config: SharpenFocusConfig) -> list[Job]:
    """The ports' choices (``config.ablations``) on the reference attention × the same seeds."""
    return [Job("ablation", name, s) for s in seeds(config) for name in config.ablations]


def multilabel_jobs(config: SharpenFocusConfig) -> list[Job]:
    """Table 6's models (baseline and ``ml_kinds``: + A_ch, + A_px) × the multi-label seeds."""
    return [Job("multilabel", kind, s) for s in ml_seeds(config) for kind in ("baseline", *config.ml_kinds)]


def train_all(config: SharpenFocusConfig, checkpoint_dir: Path | None = None,
              context: Mapping[str, Any] | None = None, families: Sequence[str] = ("main",)
              ) -> dict[str, dict[str, dict[int, SharpenFocusModel]]]:
    """Every job of ``families`` in one pool: ``{family: {kind: {seed: model}}}``."""
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown families {unknown}; choose from {FAMILIES}")
    makers = {"main": main_jobs, "ablation": ablation_jobs, "multilabel": multilabel_jobs}
    jobs = [job for family in families for job in makers[family](config)]
    models = train_jobs(config, jobs, checkpoint_dir, context)
    return {family: _by_kind({j: m for j, m in models.items() if j.family == family}) for family in families}


# --- cost ------------------------------------------------------------------------------------------------

def _time_steps(model: SharpenFocusModel, step, steps: int, warmup: int = 2) -> float:
    """Median CPU (or, on CUDA, wall-clock) milliseconds of ``step()`` after ``warmup`` untimed calls."""
    cuda = next(model.parameters()).is_cuda
    clock = time.perf_counter if cuda else time.process_time  # CPU: work done, not time spent waiting

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        sync()
        start = clock()
        step()
        sync()
        times.append(clock() - start)
    return 1000 * statistics.median(times)


def step_costs(model: SharpenFocusModel, images: torch.Tensor, labels: torch.Tensor, steps: int,
               attention: str = "channelwise") -> dict[str, float]:
    """Milliseconds per training step (forward, loss, backward, SGD) of cross-entropy alone and of Eq. 9 with one
    gradient call per class (``separate``) or one batched call (``batched``), and the ratios to the plain step.
    One thread on the CPU (the process's CPU time: other processes do not inflate it); RNG and threads restored."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    model.train()

    def plain() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()

    def with_losses(backward: str):
        options = SharpenFocusOptions(attention=attention, backward=backward)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            model.losses(images, labels, options).loss.backward()
            optimizer.step()
        return step

    with torch_threads(1 if not images.is_cuda else 0), torch.random.fork_rng(devices=[]):
        ms = {"plain": _time_steps(model, plain, steps),
              "separate": _time_steps(model, with_losses("separate"), steps),
              "batched": _time_steps(model, with_losses("batched"), steps)}
    model.eval()
    return {**{f"ms_{k}": v for k, v in ms.items()}, "ratio_separate": ms["separate"] / ms["plain"],
            "ratio_batched": ms["batched"] / ms["plain"]}


def measure_costs(config: SharpenFocusConfig, task: Task) -> list[dict[str, Any]]:
    """Step costs of the chapter's model on a batch of training images and, with ``cost_resnet18``, of
    torchvision's ResNet-18 (CIFAR stem) with the losses at layer3 + layer4 — the issue's design goal ≤ 1.5×."""
    from attnbook.models.backbones import build_backbone

    device = device_for(config)
    n = min(config.batch_size, len(task.train))
    batch = torch.utils.data.default_collate([task.train[i] for i in range(n)])
    images, labels = batch[R.IMAGE].to(device), batch[R.LABEL].to(device)
    rows = []
    model = build_model(config, task.num_classes, config.seed).to(device)
    rows.append({"model": f"CIFAR ResNet-{config.depth} (width {config.width})", "layers": "layer2 + layer3",
                 **step_costs(model, images, labels, config.cost_steps, config.reference)})
    if config.cost_resnet18:
        seed_everything(config.seed)
        backbone = build_backbone("resnet18", small_input=True)
        resnet = SharpenFocusModel(backbone, SharpenFocusHead(backbone.out_channels, task.num_classes), "layer3",
                                   "layer4").to(device)
        half = max(2, n // 2)  # half the batch: the ratio is what is compared, and the CPU time stays small
        rows.append({"model": f"ResNet-18 (torchvision, CIFAR stem, batch {half})", "layers": "layer3 + layer4",
                     **step_costs(resnet, images[:half], labels[:half], config.cost_steps, config.reference)})
    return rows
