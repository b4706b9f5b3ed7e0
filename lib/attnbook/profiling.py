"""Training-step latency and peak memory of a backbone + head: the one measurement chapters and benchmarks share.

Paper: BR-NPA App. B.4 / Fig. 9 (latency and memory of BR-NPA vs B-CNN); the Sharpen Focus and EAT
chapters measure their training overhead the same way. Imports no chapter, so ``benchmarks/`` stay light.
"""
from __future__ import annotations

import gc
import json
import math
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from attnbook.methods.registry import make_head
from attnbook.models.backbones import Classifier, build_backbone


@dataclass(frozen=True)
class StepCost:
    """One latency / memory measurement: a ResNet + head, one training step on random data."""

    arch: str
    head: str
    device: str = "cpu"
    image_size: int = 112
    batch_size: int = 4
    steps: int = 2
    warmup: int = 2  # untimed first steps (oneDNN compiles kernels for every new shape)
    high_res: bool = False  # layers 3 and 4 at stride 1 (§4.1)
    threads: int = 0  # torch CPU threads; 0 = torch's default
    num_classes: int = 200  # CUB


_PROC_STATUS, _PROC_CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _proc_status_bytes(field: str) -> int:
    """A memory line of ``/proc/self/status`` (``VmRSS``, ``VmHWM``: kB) in bytes."""
    for line in _PROC_STATUS.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in {_PROC_STATUS}")


def _peak_rss_bytes() -> int:
    """The process's peak resident set size (``VmHWM``; elsewhere ``ru_maxrss``)."""
    try:
        return _proc_status_bytes("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux and BSD report KiB


def _reset_peak_rss() -> int:
    """Reset the peak resident set size to the current one (Linux: ``5`` into ``/proc/self/clear_refs``)
    and return it, so that earlier peaks (imports, model building) cannot hide the steps' peak. Where
    that is not possible, the peak so far: growth is then measured above it."""
    gc.collect()
    try:
        _PROC_CLEAR_REFS.write_text("5")
        return _proc_status_bytes("VmRSS")
    except OSError:
        return _peak_rss_bytes()


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch CPU threads (0: unchanged), then restore the previous count."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def step_cost(spec: StepCost) -> dict[str, Any]:
    """Median milliseconds per training step (forward + cross-entropy + backward + SGD, after ``warmup``
    steps) and the extra peak memory over the level after setup, in this process. Paper: BR-NPA
    App. B.4, Fig. 9.

    Time: on CUDA wall-clock time between synchronisations; on the CPU the process's CPU time (all
    threads), which other processes on a shared machine do not inflate — measure with ``threads=1``
    so that no thread spins while waiting for another.

    Memory: on CUDA ``max_memory_allocated`` minus the allocation after setup; on the CPU the peak
    resident set size during the steps minus the resident size after setup (:func:`_reset_peak_rss`) —
    coarse (allocator slack; memory freed earlier is reused without growing), so compare heads, each in
    a fresh process (:func:`step_cost_isolated`). The caller's thread count and CPU RNG are restored.
    """
    with torch_threads(spec.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _measure_steps(spec)


def _measure_steps(spec: StepCost) -> dict[str, Any]:
    device = torch.device(spec.device)
    cuda = device.type == "cuda"
    backbone = build_backbone(spec.arch, stride_one=("layer3", "layer4") if spec.high_res else ())
    head = make_head(spec.head, backbone.out_channels, spec.num_classes)
    model = Classifier(backbone, head).to(device).eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    images = torch.rand(spec.batch_size, 3, spec.image_size, spec.image_size, device=device)
    labels = torch.randint(0, spec.num_classes, (spec.batch_size,), device=device)
    with torch.no_grad():
        feature_shape = tuple(backbone(images[:1]).shape[1:])
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device) if cuda else _reset_peak_rss()
    for _ in range(spec.warmup):
        step()
    clock = time.perf_counter if cuda else time.process_time  # CPU: work done, not time spent waiting
    seconds = []
    for _ in range(spec.steps):
        sync()
        start = clock()
        step()
        sync()
        seconds.append(clock() - start)
    peak = (torch.cuda.max_memory_allocated(device) if cuda else _peak_rss_bytes()) - base
    return {"ms_per_step": 1000 * float(np.median(seconds)), "peak_mib": peak / 2**20,
            "features": "×".join(map(str, feature_shape)),
            "head_params_m": sum(p.numel() for p in head.parameters()) / 1e6}


_WORKER = ("import json, sys; from attnbook.profiling import StepCost, step_cost; "
           "print(json.dumps(step_cost(StepCost(**json.loads(sys.argv[1])))))")


def step_cost_isolated(spec: StepCost) -> dict[str, Any]:
    """:func:`step_cost` in a fresh Python process (memory peaks of different models do not mix);
    ``{"error": "OOM" | "failed", "detail": …}`` if it fails."""
    done = subprocess.run([sys.executable, "-c", _WORKER, json.dumps(asdict(spec))], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        reason = "OOM" if "out of memory" in done.stderr.lower() else "failed"
        return {"error": reason, "detail": " ".join(done.stderr.strip().splitlines()[-1:])}
    return json.loads(done.stdout.strip().splitlines()[-1])


def cost_ratios(long: pd.DataFrame, reference: str = "brnpa") -> pd.DataFrame:
    """Per backbone and head: its time and memory over the ``reference`` head's (> 1: the reference is cheaper).

    ``long`` has one row per (``backbone``, ``head``) with :func:`step_cost`'s columns (or ``error``)."""
    rows = []
    for arch, group in long.groupby("backbone", sort=False):
        by_head = group.set_index("head")
        if "error" in by_head and pd.notna(by_head.loc[reference].get("error")):
            continue
        for head in by_head.index.drop(reference):
            other, ref = by_head.loc[head], by_head.loc[reference]
            if "error" in by_head and pd.notna(other.get("error")):
                continue
            rows.append({"backbone": arch, "head": head, "features": ref["features"],
                         "time ratio": other["ms_per_step"] / ref["ms_per_step"],
                         "memory ratio": other["peak_mib"] / ref["peak_mib"] if ref["peak_mib"] > 0 else math.nan})
    return pd.DataFrame(rows)
