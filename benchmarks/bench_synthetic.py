"""Generation throughput of the synthetic benchmark (``attnbook.data.synthetic``), in images/s.

Target: ≥ 2,000 images/s at 64 px on one CPU thread (``torch.set_num_threads(1)``), so that the
``cpu`` profile regenerates its data in seconds. Each resolution renders about the same number of
pixels (4,000 images at 64 px); the best of ``--repeats`` runs is reported, after a warm-up.

    python benchmarks/bench_synthetic.py                              # 32/64/128/224 px, 1 thread
    python benchmarks/bench_synthetic.py --resolutions 64 448 --multilabel
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from attnbook.data.synthetic import BenchmarkSpec, generate_split

PIXELS_PER_RUN = 4000 * 64 * 64
NUM_CLASSES = 10


def images_per_second(resolution: int, multilabel: bool, repeats: int) -> float:
    images = max(NUM_CLASSES, PIXELS_PER_RUN // resolution**2)
    spec = BenchmarkSpec(num_classes=NUM_CLASSES, train_per_class=math.ceil(images / NUM_CLASSES),
                         resolution=resolution, multilabel=multilabel)
    generate_split(spec, "train", stop=min(64, spec.split_size("train")))  # warm-up
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        generate_split(spec, "train")
        best = min(best, time.perf_counter() - start)
    return spec.split_size("train") / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64, 128, 224])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--multilabel", action="store_true", help="several birds per image")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"synthetic benchmark, {'multi' if args.multilabel else 'single'}-label, "
          f"{args.threads} thread(s), best of {args.repeats}")
    for resolution in args.resolutions:
        rate = images_per_second(resolution, args.multilabel, args.repeats)
        print(f"{resolution:4d} px  {rate:9.0f} images/s")


if __name__ == "__main__":
    main()
