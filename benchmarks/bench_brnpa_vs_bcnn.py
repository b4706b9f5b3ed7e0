"""Training-step latency and peak memory of the BR-NPA head vs the B-CNN head on ResNet backbones.

Paper: BR-NPA (Gomez et al.) Appendix B.4 / Fig. 9: at 448 px, batch 10, 14×14 feature maps, BR-NPA
trains faster and uses less memory than B-CNN on ResNet-18/34/50/101/152 (B-CNN materialises a
[B, C', C, h, w] product). Backbones: ``attnbook.models.backbones.build_backbone`` (random weights,
ImageNet normalisation inside); heads by name from ``attnbook.methods.registry``; 200 classes (CUB). The
measurement itself is ``attnbook.profiling.step_cost`` — the one chapter 5 runs at reduced size.

One training step = forward (backbone + head) + cross-entropy + backward + SGD step, in train mode; the
median over the timed steps is reported, after untimed warm-up steps (oneDNN compiles kernels for every
new shape on the CPU). Time is wall-clock on CUDA and the process's CPU time on the CPU (one thread by
default), which other jobs on a shared machine do not inflate. Each (backbone, head) runs in its own
process so that memory peaks do not mix. Memory is the *extra* peak during the steps over the level
after setup (model, optimiser and batch):

* CUDA: ``torch.cuda.max_memory_allocated()`` minus ``memory_allocated()`` after setup (tensors).
* CPU:  peak resident set size during the steps (``VmHWM``, reset after setup through
  ``/proc/self/clear_refs``) minus the resident size after setup; coarse (allocator slack, reuse of
  freed memory), so compare ratios.

Heads: ``brnpa`` (Algorithm 1, N = 3), ``bcnn`` (the paper's materialised product, C' = 3) and
``bcnn_einsum`` (the same B-CNN maths by one einsum, without the 5-D tensor). The last table prints,
per backbone, each B-CNN variant's time and memory over BR-NPA's (> 1: BR-NPA is cheaper).

    python benchmarks/bench_brnpa_vs_bcnn.py                # CPU: 112 px, batch 4, ResNet-18/34/50
    python benchmarks/bench_brnpa_vs_bcnn.py --device cuda  # GPU: 448 px, batch 10, all five
"""
from __future__ import annotations

import argparse
import sys

import pandas as pd
import torch

from attnbook.models.backbones import BACKBONES
from attnbook.profiling import StepCost, cost_ratios, step_cost_isolated

RESNETS = tuple(name for name in BACKBONES if name.startswith("resnet"))  # ResNet-18 … 152 (Fig. 9)
CPU_BACKBONES = RESNETS[:3]
HEADS = ("brnpa", "bcnn", "bcnn_einsum")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--image-size", type=int, help="default: 448 on cuda, 112 on cpu")
    parser.add_argument("--batch-size", type=int, help="default: 10 on cuda, 4 on cpu")
    parser.add_argument("--backbones", nargs="+", choices=RESNETS,
                        help="default: all five on cuda, ResNet-18/34/50 on cpu")
    parser.add_argument("--all", action="store_true", help="all five backbones, also on cpu")
    parser.add_argument("--heads", nargs="+", choices=HEADS, default=list(HEADS),
                        help="heads to compare (brnpa is always included as the reference)")
    parser.add_argument("--steps", type=int, help="timed steps (default: 20 on cuda, 3 on cpu)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: 2)")
    parser.add_argument("--high-res", action="store_true",
                        help="stride 1 in layers 3 and 4 (4× the map side)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default: 1, so that CPU time has no spinning threads)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    backbones = args.backbones or (list(RESNETS) if cuda or args.all else list(CPU_BACKBONES))
    heads = ["brnpa"] + [h for h in args.heads if h != "brnpa"]
    image_size = args.image_size or (448 if cuda else 112)
    batch_size = args.batch_size or (10 if cuda else 4)
    steps = args.steps or (20 if cuda else 3)
    print(f"device={args.device} image={image_size}px batch={batch_size} steps={steps} "
          f"warmup={args.warmup} high_res={args.high_res} threads={args.threads} "
          f"(memory: extra peak over setup, {'CUDA allocated' if cuda else 'process max RSS'})")
    rows = []
    for backbone in backbones:
        for head in heads:
            spec = StepCost(backbone, head, args.device, image_size, batch_size, steps, args.warmup,
                            args.high_res, args.threads)
            rows.append({"backbone": backbone, "head": head, **step_cost_isolated(spec)})
            print(f"  {backbone:>9} {head:<12} {rows[-1]}", file=sys.stderr)
    long = pd.DataFrame(rows)
    print(long.round(3).to_string(index=False))
    print()
    print(cost_ratios(long, reference="brnpa").round(2).to_string(index=False))


if __name__ == "__main__":
    main()
