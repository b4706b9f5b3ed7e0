"""Independent CPU jobs (e.g. one small model per training seed) in a pool of spawned processes of one thread each.

Why: on a few CPU cores, small models (a CIFAR ResNet-8 at 32 px) use threads poorly — intra-op parallelism of
tiny convolutions costs about as much in synchronisation as it gains on idle cores, and far more on shared ones,
where the threads spin while waiting for each other — so N one-thread processes, each training its own model,
finish a set of jobs as soon as one process with N threads when the machine is idle and much sooner when it is
not (measured in :mod:`attnbook.chapters.sharpen_focus.pipeline`). Processes are
*spawned* (not forked: a forked child inherits the parent's torch thread pools and OpenMP state); each imports
what the job needs, so a job must be picklable (a module-level function, or :func:`functools.partial` of one) and
should return small, picklable results (a state dict on the CPU, not a model with hooks).

Determinism is the caller's: a job that seeds itself (e.g. :func:`attnbook.train.fit` with ``TrainConfig.seed``)
gives the same result whichever process runs it. With ``workers <= 1`` (or one job) the jobs run here, in order,
with this process's threads — the same results without the start-up cost (~2 s per process to import torch).
"""
from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


def set_threads(threads: int) -> None:
    """Pool initializer: this process's torch intra-op threads."""
    torch.set_num_threads(threads)


def default_workers() -> int:
    """One worker per torch CPU thread of this process (what a pool of one-thread workers can keep busy)."""
    return max(1, torch.get_num_threads())


def process_map(fn: Callable[[T], R], items: Sequence[T], workers: int | None = None, *, threads: int = 1) -> list[R]:
    """``[fn(item) for item in items]``, in order. ``workers`` (None: :func:`default_workers`) > 1 and more than
    one item: in a pool of ``min(workers, len(items))`` spawned processes with ``threads`` torch threads each;
    otherwise here. An exception in a job is raised here (after the pool shut down)."""
    workers = default_workers() if workers is None else workers
    if workers < 0 or threads < 1:
        raise ValueError(f"workers must be ≥ 0 and threads ≥ 1, got workers={workers}, threads={threads}")
    workers = min(workers, len(items))
    if workers <= 1:
        return [fn(item) for item in items]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=set_threads,
                             initargs=(threads,)) as pool:
        futures = [pool.submit(fn, item) for item in items]
        return [future.result() for future in futures]
