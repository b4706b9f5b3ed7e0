"""Throughput of attnbook's batched Grad-CAM vs pytorch-grad-cam and captum, on the same model and batch.

Model: torchvision ResNet-18 (random init, eval mode), Grad-CAM at ``layer3``, one target class per
image. Each contender does the same work its API implies, and ours is timed doing the same:

* vs pytorch-grad-cam ``GradCAM``: map at feature resolution → ReLU → min-max → bilinear resize to
  the input → min-max (pytorch-grad-cam returns numpy at input size);
* vs captum ``LayerGradCam(relu_attributions=True)``: the raw map at feature resolution.

Images/s is the median over ``--repeats`` timed runs after one warm-up run.

    python benchmarks/bench_gradcam.py                        # CPU, 16×3×112×112
    python benchmarks/bench_gradcam.py --device cuda --size 224 --batch 64
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torchvision
from captum.attr import LayerGradCam
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from attnbook.explain.gradcam import grad_attention
from attnbook.explain.postprocess import normalize, upsample


def images_per_second(fn: Callable[[], object], batch: int, repeats: int, device: torch.device) -> float:
    def timed() -> float:
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    timed()  # warm-up
    return batch / statistics.median(timed() for _ in range(repeats))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--layer", default="layer3")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = torchvision.models.resnet18(num_classes=1000).eval().to(device)
    layer = model.get_submodule(args.layer)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    target = torch.randint(0, 1000, (args.batch,), device=device)
    size = (args.size, args.size)

    def ours_raw() -> torch.Tensor:
        return grad_attention(model, args.layer, x, target)

    def ours_full() -> torch.Tensor:
        return normalize(upsample(normalize(grad_attention(model, args.layer, x, target)), size))

    pgc = GradCAM(model, [layer])
    pgc_targets = [ClassifierOutputTarget(int(c)) for c in target]
    captum = LayerGradCam(model, layer)

    def pytorch_grad_cam() -> object:
        return pgc(x, pgc_targets)

    def captum_gradcam() -> torch.Tensor:
        return captum.attribute(x, target, relu_attributions=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rates = {name: images_per_second(fn, args.batch, args.repeats, device) for name, fn in {
            "ours (raw map)": ours_raw,
            "ours (+ resize, min-max)": ours_full,
            "pytorch-grad-cam GradCAM": pytorch_grad_cam,
            "captum LayerGradCam": captum_gradcam,
        }.items()}

    print(f"ResNet-18 (random init), Grad-CAM at {args.layer}, batch {args.batch}×3×{args.size}×{args.size}, "
          f"{args.device}, {args.threads} thread(s), median of {args.repeats}")
    for name, rate in rates.items():
        print(f"  {name:<28} {rate:9.1f} images/s")
    print(f"  ratio ours/pytorch-grad-cam  {rates['ours (+ resize, min-max)'] / rates['pytorch-grad-cam GradCAM']:.2f}"
          "  (same output: resized, normalised)")
    print(f"  ratio ours/captum            {rates['ours (raw map)'] / rates['captum LayerGradCam']:.2f}"
          "  (same output: raw map)")


if __name__ == "__main__":
    main()
