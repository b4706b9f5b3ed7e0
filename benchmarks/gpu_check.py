"""The GPU check (``make gpu-check``): does this CUDA machine run the book, and how fast? ≤ 8 minutes on one H100/H200.

1. **Throughput** — ResNet-50 training at 224 px, AMP (bf16 where supported, else fp16 with a grad
   scaler), ``channels_last``, SGD, random data already on the GPU: images/s over timed steps after a
   warm-up (goal on one H100-class GPU: ≥ 2,500 images/s).
2. **Method overhead** — each head of :data:`attnbook.methods.registry.HEADS` on a ResNet-50 at 224 px:
   milliseconds per training step (:func:`attnbook.profiling.step_cost`) and the overhead over the plain
   step (the ``gap`` head: global average pooling + linear), ``ms / ms_gap − 1``.
3. **Chapters** — every chapter's ``gpu`` profile through the batch runner (``attnbook run``) with a
   reduced epoch count: every integer parameter whose name contains ``epoch`` is set to ``--epochs``
   (default 1) and ``n_seeds`` to the chapter's ``smoke`` value; each chapter gets an equal share of
   what is left of ``--budget`` as its timeout. Runs land in ``<out>/runs/<notebook>/<run-id>/``.

Writes ``<out>/gpu-check.json`` and ``<out>/gpu-check.md`` (default ``results/gpu-check/``). Exit codes:
0 all fine, 1 a chapter failed or timed out, 2 no CUDA GPU (one line says so) or bad arguments.

    python benchmarks/gpu_check.py                      # what `make gpu-check` runs
    python benchmarks/gpu_check.py --chapters 04_bla --epochs 2
    python benchmarks/gpu_check.py --allow-cpu --tiny   # the code path on a CPU (tests): tiny sizes, no goal
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

GOAL_IMAGES_PER_S = 2500.0
BUDGET_S = 480.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="report folder (default results/gpu-check)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of every chapter's training stages (default 1)")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for everything (default 480)")
    parser.add_argument("--chapters", nargs="*", default=None, help="notebook names (default: every chapter)")
    parser.add_argument("--profile", default="gpu", help="profile of the chapter runs (default gpu)")
    parser.add_argument("--nbs", type=Path, default=None, help="notebook folder (default <repo>/nbs)")
    parser.add_argument("--batch", type=int, default=256, help="throughput batch size (default 256)")
    parser.add_argument("--allow-cpu", action="store_true", help="run without CUDA (tests; numbers meaningless)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: ResNet-18, 64 px, 2 steps (tests)")
    return parser.parse_args(argv)


def throughput(device: Any, *, arch: str = "resnet50", size: int = 224, batch: int = 256, warmup: int = 10,
               steps: int = 30) -> dict[str, Any]:
    """Training images/s of a torchvision ``arch`` at ``size`` px: AMP, channels_last, SGD, random data."""
    import torch
    import torch.nn.functional as F
    import torchvision

    from attnbook.devices import autocast, autocast_dtype

    torch.backends.cudnn.benchmark = True
    model = getattr(torchvision.models, arch)(num_classes=1000).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    dtype = autocast_dtype("auto", device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    images = torch.randn(batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            loss = F.cross_entropy(model(images), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = time.perf_counter() - start
    amp = str(dtype).replace("torch.", "") if dtype else "fp32"
    return {"arch": arch, "image_size": size, "batch": batch, "amp": amp, "channels_last": True, "steps": steps,
            "images_per_s": batch * steps / seconds}


def method_overheads(device: str, *, arch: str = "resnet50", size: int = 224, batch: int = 32,
                     steps: int = 10) -> list[dict[str, Any]]:
    """Per head: ms per training step (:func:`attnbook.profiling.step_cost`) and overhead vs the ``gap`` step."""
    from attnbook.methods.registry import HEADS
    from attnbook.profiling import StepCost, step_cost

    rows = []
    for head in ["gap", *(name for name in HEADS if name != "gap")]:
        spec = StepCost(arch=arch, head=head, device=device, image_size=size, batch_size=batch, steps=steps,
                        warmup=2)
        try:
            rows.append({"head": head, **step_cost(spec)})
        except Exception as err:  # noqa: BLE001 - one head's failure is a row of the report
            rows.append({"head": head, "error": f"{type(err).__name__}: {str(err)[:200]}"})
    plain = rows[0].get("ms_per_step")
    for row in rows:
        if plain and "ms_per_step" in row:
            row["overhead"] = row["ms_per_step"] / plain - 1
    return rows


def reduced_params(name: str, epochs: int) -> list[str]:
    """``-p`` assignments for a chapter's quick ``gpu`` run: epochs → ``epochs``, ``n_seeds`` → its smoke value."""
    import dataclasses
    import typing

    from attnbook.chapters import get_chapter

    chapter = get_chapter(name)
    config = chapter.profiles["gpu"] if "gpu" in chapter.profiles else next(iter(chapter.profiles.values()))
    hints = typing.get_type_hints(type(config))
    fields = {f.name for f in dataclasses.fields(config)}
    params = []
    for parameter in chapter.parameters:
        if parameter not in fields:
            continue
        hint = str(hints.get(parameter))
        if "epoch" in parameter and "int" in hint and "tuple" not in hint:
            params.append(f"{parameter}={epochs}")
        elif parameter == "n_seeds" and "smoke" in chapter.profiles:
            params.append(f"n_seeds={chapter.profiles['smoke'].n_seeds}")
    return params


def run_chapters(names: list[str], *, nbs: Path, out: Path, profile: str, epochs: int,
                 deadline: float) -> list[dict[str, Any]]:
    """Each chapter's ``profile`` run with reduced epochs, through the batch runner, within ``deadline``."""
    from attnbook import runner

    rows = []
    for i, name in enumerate(names):
        notebook = nbs / f"{name}.ipynb"
        timeout = max(10.0, (deadline - time.monotonic()) / (len(names) - i))
        row: dict[str, Any] = {"chapter": name, "timeout_s": round(timeout)}
        try:
            params = reduced_params(name, epochs)
            specs = runner.plan(notebook, profile=profile, params=params, results=out / "runs")
        except Exception as err:  # noqa: BLE001 - a chapter that cannot even be planned is a failed row
            rows.append({**row, "status": "failed", "error": f"{type(err).__name__}: {err}"[:300]})
            continue
        [outcome] = runner.run_batch(specs, force=True, timeout=timeout, progress=False)
        timed_out = "TimeoutError" in outcome.error or "exceeded" in outcome.error
        rows.append({**row, "params": params, "status": "timeout" if timed_out else outcome.status,
                     "seconds": round(outcome.seconds, 1), "error": outcome.error[:300],
                     "run_dir": str(outcome.run_dir)})
    return rows


def _markdown(report: dict[str, Any]) -> str:
    tp = report["throughput"]
    lines = [f"# GPU check — {report['device']}", "",
             f"{report['started_at']}, torch {report['torch']}, CUDA {report['cuda']}, "
             f"total {report['seconds']:.0f} s of a {report['budget_s']:.0f} s budget.", "",
             "## Training throughput", "",
             f"{tp.get('arch')} at {tp.get('image_size')} px, batch {tp.get('batch')}, AMP {tp.get('amp')}, "
             f"channels_last: **{tp.get('images_per_s', float('nan')):.0f} images/s** "
             f"(goal ≥ {GOAL_IMAGES_PER_S:.0f} on one H100-class GPU: {report['throughput_goal']}).", "",
             "## Training-step overhead of each method vs a plain step (gap)", "",
             "| head | ms / step | overhead | peak MiB | error |", "|---|---|---|---|---|"]
    for row in report["overheads"]:
        lines.append(f"| {row['head']} | {row.get('ms_per_step', float('nan')):.1f} | "
                     f"{100 * row.get('overhead', float('nan')):+.0f} % | {row.get('peak_mib', float('nan')):.0f} | "
                     f"{row.get('error', '')} |")
    lines += ["", f"## Chapters ({report['profile']} profile, reduced epochs)", "",
              "| chapter | status | seconds | timeout | parameters | error |", "|---|---|---|---|---|---|"]
    for row in report["chapters"]:
        lines.append(f"| {row['chapter']} | {row['status']} | {row.get('seconds', '')} | {row['timeout_s']} | "
                     f"{' '.join(row.get('params', []))} | {row.get('error', '')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the check and write the report; the exit code (0 fine, 1 a chapter failed, 2 no CUDA)."""
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("gpu-check: no CUDA GPU is visible (torch.cuda.is_available() is False); run `make gpu-check` "
              "on a machine with an NVIDIA GPU", file=sys.stderr)
        return 2
    from attnbook import runs
    from attnbook.chapters import notebook_names

    started, wall = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.monotonic()
    deadline = wall + args.budget
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    out = args.out or runs.results_root() / "gpu-check"
    out.mkdir(parents=True, exist_ok=True)
    nbs = args.nbs or runs.repo_root() / "nbs"
    names = args.chapters
    if names is None:
        names = [name for name in notebook_names() if (nbs / f"{name}.ipynb").is_file()]
    tiny = {"arch": "resnet18", "size": 64, "batch": 4, "warmup": 1, "steps": 2} if args.tiny else {"batch": args.batch}
    times: dict[str, float] = {}
    t0 = time.monotonic()
    tp = throughput(device, **tiny)
    if cuda:
        torch.cuda.empty_cache()  # the chapters' kernels get the memory back
    times["throughput"] = time.monotonic() - t0
    t0 = time.monotonic()
    heads = method_overheads(device.type, **({"arch": "resnet18", "size": 96, "batch": 2, "steps": 1} if args.tiny
                                              else {}))
    times["overheads"] = time.monotonic() - t0
    t0 = time.monotonic()
    chapter_rows = run_chapters(names, nbs=nbs, out=out, profile=args.profile, epochs=args.epochs, deadline=deadline)
    times["chapters"] = time.monotonic() - t0
    goal = "not applicable (no CUDA or --tiny)"
    if cuda and not args.tiny:
        goal = "met" if tp["images_per_s"] >= GOAL_IMAGES_PER_S else "missed"
    report = {"started_at": started, "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
              "torch": torch.__version__, "cuda": torch.version.cuda, "profile": args.profile, "budget_s": args.budget,
              "seconds": time.monotonic() - wall, "section_seconds": times, "throughput": tp,
              "throughput_goal": goal,
              "overheads": heads, "chapters": chapter_rows,
              "ok": all(row["status"] == "complete" for row in chapter_rows)}
    (out / "gpu-check.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "gpu-check.md").write_text(_markdown(report))
    median = statistics.median([r["overhead"] for r in heads if "overhead" in r] or [float("nan")])
    print(f"gpu-check: {tp['images_per_s']:.0f} images/s, median method overhead {100 * median:+.0f} %, "
          f"{sum(r['status'] == 'complete' for r in chapter_rows)}/{len(chapter_rows)} chapters complete in "
          f"{report['seconds']:.0f} s; report {out / 'gpu-check.md'}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
