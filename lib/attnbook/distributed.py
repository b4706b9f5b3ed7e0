"""Training on several devices: ``TrainConfig(devices=N)`` → DistributedDataParallel over N processes.

A notebook keeps calling :func:`attnbook.train.fit`; with ``devices`` > 1 it comes here, and
:func:`fit` spawns N processes (``torch.multiprocessing``, start method ``spawn``) with the environment
``torchrun`` would give them (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``).
A script launched by ``torchrun --nproc_per_node N`` runs the same code in place (no spawning).
NCCL on GPUs (rank r on ``cuda:r``), gloo on the CPU.

What each rank does (:func:`fit_rank`):

* **The same global batches as one process.** Epoch e's order is the single-process permutation
  (``seeded_generator(seed, e)``, :meth:`attnbook.train._Trainer.train_loader`); each global batch of
  ``batch_size`` is cut into N contiguous shards (:class:`ShardedBatchSampler`, the per-epoch-seeded
  counterpart of ``DistributedSampler`` that keeps one process's batches). Uneven shards (the last
  batch) are weighted: rank r's batch-mean loss is scaled by N·m_r/m, so DDP's gradient average
  (1/N)·Σ_r N·m_r/m·∇L_r = Σ_r (m_r/m)·∇L_r is the gradient of the global batch mean — the
  single-process gradient. A rank with no sample in a batch computes a zero-weighted one.
* **The objective runs inside DDP's forward** (:class:`_ObjectiveModule`), so objectives that call
  submodules (``model.head.attend(model.tail(x))``) still synchronise their gradients.
* **Metrics** are summed over ranks each epoch (identical history on every rank); buffers (batch-norm
  running statistics) are broadcast from rank 0 after each epoch; evaluation runs on every rank over
  the whole split. ``sync_batchnorm`` converts batch norms to ``SyncBatchNorm`` (CUDA only).
* **Checkpoints**: rank 0 writes them (:func:`attnbook.checkpoints.save_checkpoint`), with every rank's
  RNG state; the model and optimizer states are those of one process, so a checkpoint written by any
  world size resumes in any other (``devices`` is not part of the fingerprint).

Differences from one process: other dropout masks on ranks > 0 (rank 0 keeps the single-process
stream), batch-norm statistics per shard unless ``sync_batchnorm``, and float summation order.
"""
from __future__ import annotations

import math
import os
import pickle
import socket
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from attnbook import train
from attnbook.checkpoints import save_checkpoint
from attnbook.data.records import LABEL
from attnbook.devices import autocast, autocast_dtype, resolve_device
from attnbook.seeding import derive_seed, get_rng_state, seed_everything, seeded_generator, set_rng_state

RESULT_FILE = "result.pt"
LAST_REPORT: dict[str, Any] = {}  # of the last spawned fit: world_size, backend, param_spread (max |Δ| between ranks)


def torchrun_world() -> int:
    """``WORLD_SIZE`` when this process was launched by ``torchrun`` (``RANK`` set too), else 1."""
    if "RANK" not in os.environ:
        return 1
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shard_sizes(m: int, world: int) -> list[int]:
    """Contiguous shard sizes of a batch of ``m`` for ``world`` ranks (the first ``m mod world`` get one more)."""
    return [m // world + (r < m % world) for r in range(world)]


class ShardedBatchSampler(Sampler[list[int]]):
    """Rank ``rank``'s part of each global batch of one epoch: the single-process order (a permutation
    seeded by ``(seed, epoch)``) cut into global batches of ``batch_size``, each split in ``world``
    contiguous shards. ``weights[k]`` is step k's loss scale N·m_r/m (0 for a stand-in sample)."""

    def __init__(self, order: list[int], batch_size: int, world: int, rank: int, drop_last: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.weights: list[float] = []
        self.real: list[bool] = []
        for start in range(0, len(order), batch_size):
            block = order[start:start + batch_size]
            if drop_last and len(block) < batch_size:
                break
            sizes = shard_sizes(len(block), world)
            lo = sum(sizes[:rank])
            mine = block[lo:lo + sizes[rank]]
            self.real.append(bool(mine))
            self.weights.append(world * len(mine) / len(block))
            self.batches.append(mine or block[:1])  # a stand-in sample, zero-weighted: every rank joins each step

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _ObjectiveModule(nn.Module):
    """``objective(model, batch)`` as a module's forward, so DDP sees (and synchronises) whatever it uses."""

    def __init__(self, model: nn.Module, objective: train.Objective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, batch: train.Batch) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        out = self.objective(self.model, batch)
        return out.loss, out.logits, dict(out.logs)


@dataclass
class _RankTrainer(train._Trainer):
    """:class:`attnbook.train._Trainer` for one rank: DDP forward, sharded global batches, merged metrics."""

    rank: int = 0
    world: int = 1
    ddp: nn.Module | None = None
    sampler: ShardedBatchSampler | None = field(default=None, repr=False)

    def train_loader(self, data: Dataset, epoch: int) -> DataLoader:
        order = torch.randperm(len(data), generator=seeded_generator(self.config.seed, epoch)).tolist()
        self.sampler = ShardedBatchSampler(order, self.config.batch_size, self.world, self.rank, self.config.drop_last)
        return DataLoader(data, batch_sampler=self.sampler, num_workers=self.config.num_workers)

    def train_epoch(self, loader: DataLoader, epoch: int, bar: tqdm) -> dict[str, float]:
        self.ddp.train()
        meter = train._Meter()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        for step, batch in enumerate(loader, start=1):
            weight, real = self.sampler.weights[step - 1], self.sampler.real[step - 1]
            batch = train._to_device(batch, self.device)
            with autocast(self.device, self.dtype):
                loss, logits, logs = self.ddp(batch)
            out = train.StepOutput(loss, logits, logs)
            bad = torch.tensor([0.0 if torch.isfinite(loss.detach()).all() else 1.0], device=self.device)
            dist.all_reduce(bad)  # every rank stops together (one raising alone would hang the others)
            if bad.item():
                raise train.NonFiniteLossError(epoch, step, loss.item())
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss * weight).backward()  # N·m_r/m: DDP's mean is the global batch mean
            if self.config.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(params, self.config.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if real:
                meter.add(out, batch[LABEL])
            bar.update()
        self._sync_buffers()
        return _merged(meter, self.world)

    def _sync_buffers(self) -> None:
        for buffer in self.model.buffers():
            dist.broadcast(buffer, 0)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        ranks: list[Any] = [None] * self.world
        dist.all_gather_object(ranks, get_rng_state())  # a collective: every rank calls state_dict
        return {**state, "rng_ranks": ranks}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)  # rank 0's RNG (the one a single process continues)
        ranks = state.get("rng_ranks") or []
        if self.rank < len(ranks):
            set_rng_state(ranks[self.rank])
        elif self.rank:  # written by fewer processes: a fresh stream for this rank
            seed_everything(derive_seed(self.config.seed, self.rank, len(state.get("history", []))))


def _merged(meter: train._Meter, world: int) -> dict[str, float]:
    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, (meter.count, dict(meter.sums)))
    total = train._Meter()
    for count, sums in parts:
        total.count += count
        for key, value in sums.items():
            total.sums[key] += value
    return total.means()


def _check_sync_batchnorm(device: torch.device) -> None:
    if device.type != "cuda":
        raise ValueError("sync_batchnorm needs CUDA (torch's SyncBatchNorm runs on GPUs only); "
                         "set sync_batchnorm=False to train on CPU processes")


def _rank_device(config: train.TrainConfig, local_rank: int) -> torch.device:
    device = resolve_device(config.device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def fit_rank(model: nn.Module, train_data: Dataset, config: train.TrainConfig, *,
             objective: train.Objective = train.cross_entropy, eval_data: Mapping[str, Dataset] | None = None,
             checkpoint_dir: str | Path | None = None, context: Mapping[str, Any] | None = None,
             trainable: Iterable[nn.Parameter] | Iterable[dict] | None = None,
             current: dict[str, Any] | None = None) -> tuple[train.History, float]:
    """Train this process's rank (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in the environment, as torchrun
    sets them); (history, largest parameter difference to rank 0 after training). Initialises the
    process group if needed (and then destroys it). ``current``: the checkpoint fingerprint the spawning
    process computed (:func:`attnbook.train.fingerprint`; its code version is the run's), else this one's."""
    rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    device = _rank_device(config, local)
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    try:
        seed_everything(config.seed if rank == 0 else derive_seed(config.seed, rank))
        model.to(device)
        if config.sync_batchnorm:
            _check_sync_batchnorm(device)
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        dtype = autocast_dtype(config.amp, device)
        optimizer = train.build_optimizer(config, train._param_groups(model, trainable))
        ddp = nn.parallel.DistributedDataParallel(_ObjectiveModule(model, objective),
                                                  device_ids=[device.index] if device.type == "cuda" else None,
                                                  find_unused_parameters=True)
        trainer = _RankTrainer(model, config, objective, device, dtype, optimizer,
                               train.build_scheduler(config, optimizer),
                               torch.amp.GradScaler(device.type, enabled=dtype is torch.float16),
                               rank=rank, world=world, ddp=ddp)
        current = current or train.fingerprint(model, config, context)
        history = train._resume(trainer, Path(checkpoint_dir), current) if checkpoint_dir is not None else []
        steps = math.ceil(len(train_data) / config.batch_size) * (config.epochs - len(history))
        show = rank == 0 and train._show_progress(config)
        with tqdm(total=steps, desc=f"train ×{world}", unit="batch", disable=not show, dynamic_ncols=True) as bar:
            for epoch in range(len(history) + 1, config.epochs + 1):
                history.append(train._run_epoch(trainer, train_data, eval_data or {}, epoch, bar))
                if checkpoint_dir is not None:
                    state = trainer.state_dict()
                    if rank == 0:
                        save_checkpoint(Path(checkpoint_dir), state, current, history)
                    dist.barrier()
        return history, _param_spread(model, world)
    finally:
        if started:
            dist.destroy_process_group()


def _param_spread(model: nn.Module, world: int) -> float:
    """max |θ_r − θ_0| over ranks r and every parameter and buffer (0 when DDP kept them in step)."""
    flat = torch.cat([t.detach().float().flatten().cpu() for t in model.state_dict().values()
                      if torch.is_floating_point(t)])
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, flat)
    return max(float((other - gathered[0]).abs().max()) for other in gathered) if flat.numel() else 0.0


def _spawned(rank: int, world: int, port: int, folder: str, threads: int, private: bytes, train_data: Dataset,
             config: train.TrainConfig, options: dict[str, Any]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(threads)
    model, trainable = pickle.loads(private)  # this rank's own copy (trainable still refers to its parameters)
    history, spread = fit_rank(model, train_data, config, trainable=trainable, **options)
    if rank == 0:
        state = {key: value.cpu() for key, value in model.state_dict().items()}
        torch.save({"model": state, "history": history, "spread": spread}, Path(folder) / RESULT_FILE)


def fit(model: nn.Module, train_data: Dataset, config: train.TrainConfig, **options: Any) -> train.History:
    """:func:`attnbook.train.fit` on ``config.devices`` processes (or in place under ``torchrun``).

    Spawned: the processes train copies of ``model``; rank 0's final state is loaded into ``model``
    (moved to the config's device, as one process leaves it) and its history returned. The processes
    share this one's CPU threads (``torch.get_num_threads() // devices``, at least 1 each)."""
    if torchrun_world() > 1:
        history, _ = fit_rank(model, train_data, config, **options)
        return history
    world = config.devices
    device = resolve_device(config.device)
    if config.sync_batchnorm:
        _check_sync_batchnorm(device)  # before spawning anything
    if device.type == "cuda" and torch.cuda.device_count() < world:
        raise ValueError(f"devices={world} but only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    threads = max(1, torch.get_num_threads() // world)
    trainable = options.pop("trainable", None)
    # The model travels by value: torch.multiprocessing would share its tensors between the ranks (one
    # storage updated by every optimizer). The datasets, read-only, are shared.
    private = pickle.dumps((model, list(trainable) if trainable is not None else None))
    options["current"] = train.fingerprint(model, config, options.get("context"))
    with tempfile.TemporaryDirectory(prefix="attnbook-ddp-") as folder:
        torch.multiprocessing.start_processes(
            _spawned, args=(world, _free_port(), folder, threads, private, train_data, config, options),
            nprocs=world, join=True, start_method="spawn")
        result = torch.load(Path(folder) / RESULT_FILE, map_location="cpu", weights_only=True)
    model.to(device)
    model.load_state_dict(result["model"])
    LAST_REPORT.clear()
    LAST_REPORT.update(world_size=world, backend="nccl" if device.type == "cuda" else "gloo",
                       param_spread=result["spread"])
    return result["history"]
