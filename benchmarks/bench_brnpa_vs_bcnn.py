"""Training-step latency and peak memory of the BR-NPA head vs the B-CNN head on ResNet backbones.

Paper: BR-NPA (Gomez et al.) Appendix B.4 / Fig. 9: at 448 px, batch 10, 14×14 feature maps, BR-NPA
trains faster and uses less memory than B-CNN on ResNet-18/34/50/101/152 (B-CNN materialises a
[B, C', C, h, w] product). Backbones are torchvision ResNets with random weights and the final
pool/fc removed; heads as in ``attnbook.methods``; 200 classes (CUB).

One training step = forward (backbone + head) + cross-entropy + backward + SGD step, in train mode.
Each (backbone, head) runs in its own subprocess so that memory peaks do not mix. Memory is the
*extra* peak during the steps over the level after setup (model, optimiser and batch in memory):

* CUDA: ``torch.cuda.max_memory_allocated()`` minus ``memory_allocated()`` after setup (tensors).
* CPU:  growth of the process's peak resident set size (``resource.getrusage(...).ru_maxrss``); this
  includes allocator slack and is coarse (a freed setup buffer can be reused), so compare ratios.

Heads: ``brnpa`` (Algorithm 1, N = 3), ``bcnn`` (the paper's materialised product, C' = 3) and
``bcnn_einsum`` (the same B-CNN maths by one einsum, without the 5-D tensor).

    python benchmarks/bench_brnpa_vs_bcnn.py                # CPU: 112 px, batch 4, ResNet-18/34/50
    python benchmarks/bench_brnpa_vs_bcnn.py --device cuda  # GPU: 448 px, batch 10, all five
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torchvision import models

from attnbook.methods.bcnn import BCNNHead
from attnbook.methods.brnpa import BRNPAHead

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
CPU_BACKBONES = BACKBONES[:3]
HEADS = ("brnpa", "bcnn", "bcnn_einsum")
NUM_CLASSES = 200


@dataclass(frozen=True)
class Config:
    backbone: str
    head: str
    device: str
    image_size: int
    batch_size: int
    steps: int
    warmup: int
    high_res: bool
    threads: int


def build_backbone(name: str, high_res: bool) -> tuple[nn.Module, int]:
    """torchvision ResNet (random init) without avgpool/fc → (feature extractor, channels).

    ``high_res``: stride 1 in layers 3 and 4 (paper §4.1; 14×14 → 56×56 at 448 px).
    """
    resnet = getattr(models, name)(weights=None)
    if high_res:
        for layer in (resnet.layer3, resnet.layer4):
            for module in layer[0].modules():
                if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
                    module.stride = (1, 1)
    channels = resnet.fc.in_features
    return nn.Sequential(*list(resnet.children())[:-2]), channels


def build_head(name: str, channels: int) -> nn.Module:
    if name == "brnpa":
        return BRNPAHead(channels, NUM_CLASSES)
    return BCNNHead(channels, NUM_CLASSES, materialize=(name == "bcnn"))


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def measure(config: Config) -> dict:
    """Run one configuration in this process; return ms/step, extra peak memory, sizes."""
    torch.manual_seed(0)
    torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    cuda = device.type == "cuda"
    backbone, channels = build_backbone(config.backbone, config.high_res)
    head = build_head(config.head, channels)
    model = nn.Sequential(backbone, head).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    images = torch.rand(config.batch_size, 3, config.image_size, config.image_size, device=device)
    labels = torch.randint(0, NUM_CLASSES, (config.batch_size,), device=device)
    with torch.no_grad():
        feature_shape = tuple(backbone(images[:1]).shape[1:])

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = peak_rss_bytes()
    for _ in range(config.warmup):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(config.steps):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated(device) if cuda else peak_rss_bytes()) - base
    return {
        "ms_per_step": 1000 * elapsed / config.steps,
        "peak_mib": peak / 2**20,
        "features": "×".join(map(str, feature_shape)),
        "head_params_m": sum(p.numel() for p in head.parameters()) / 1e6,
    }


def run_in_subprocess(config: Config) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(asdict(config))],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        reason = "OOM" if "out of memory" in done.stderr.lower() else "failed"
        return {"error": reason, "detail": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratio(numerator: dict, denominator: dict, key: str) -> str:
    if "error" in numerator or "error" in denominator or denominator[key] <= 0:
        return "—"
    return f"{numerator[key] / denominator[key]:.2f}"


def cell(result: dict, key: str, fmt: str) -> str:
    return result["error"] if "error" in result else format(result[key], fmt)


def print_table(
    results: dict[tuple[str, str], dict], backbones: list[str], heads: list[str]
) -> None:
    others = [h for h in heads if h != "brnpa"]
    header = ["backbone", "features"]
    for h in heads:
        header += [f"{h} ms", f"{h} MiB", f"{h} head Mparam"]
    for h in others:
        header += [f"{h}/brnpa time", f"{h}/brnpa mem"]
    rows = [header]
    for backbone in backbones:
        per_head = {h: results[backbone, h] for h in heads}
        features = next((r["features"] for r in per_head.values() if "features" in r), "?")
        row = [backbone, features]
        for h in heads:
            r = per_head[h]
            row += [cell(r, "ms_per_step", ".1f"), cell(r, "peak_mib", ".0f"),
                    cell(r, "head_params_m", ".2f")]
        for h in others:
            row += [ratio(per_head[h], per_head["brnpa"], "ms_per_step"),
                    ratio(per_head[h], per_head["brnpa"], "peak_mib")]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(value.rjust(width) for value, width in zip(r, widths)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--image-size", type=int, help="default: 448 on cuda, 112 on cpu")
    parser.add_argument("--batch-size", type=int, help="default: 10 on cuda, 4 on cpu")
    parser.add_argument("--backbones", nargs="+", choices=BACKBONES,
                        help="default: all five on cuda, ResNet-18/34/50 on cpu")
    parser.add_argument("--all", action="store_true", help="all five backbones, also on cpu")
    parser.add_argument("--heads", nargs="+", choices=HEADS, default=list(HEADS),
                        help="heads to compare (brnpa is always included as the reference)")
    parser.add_argument("--steps", type=int, help="timed steps (default: 20 on cuda, 3 on cpu)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: 2)")
    parser.add_argument("--high-res", action="store_true",
                        help="stride 1 in layers 3 and 4 (4× the map side)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch CPU threads (default: torch's default)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(measure(Config(**json.loads(args.worker)))))
        return
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    backbones = args.backbones or (list(BACKBONES) if cuda or args.all else list(CPU_BACKBONES))
    heads = ["brnpa"] + [h for h in args.heads if h != "brnpa"]
    image_size = args.image_size or (448 if cuda else 112)
    batch_size = args.batch_size or (10 if cuda else 4)
    steps = args.steps or (20 if cuda else 3)
    print(f"device={args.device} image={image_size}px batch={batch_size} steps={steps} "
          f"warmup={args.warmup} high_res={args.high_res} threads={args.threads} "
          f"(memory: extra peak over setup, {'CUDA allocated' if cuda else 'process max RSS'})")
    results = {}
    for backbone in backbones:
        for head in heads:
            config = Config(backbone, head, args.device, image_size, batch_size, steps, args.warmup,
                            args.high_res, args.threads)
            results[backbone, head] = run_in_subprocess(config)
            print(f"  {backbone:>9} {head:<12} {results[backbone, head]}", file=sys.stderr)
    print_table(results, backbones, heads)


if __name__ == "__main__":
    main()
