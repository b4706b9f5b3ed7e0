"""Speed of attnbook's evaluation engine vs Quantus on pytorch-grad-cam / captum maps, and multi-target
Grad-CAM from one forward pass vs captum called once per target. Same model, same images, same metric
definitions; prints images/s and the ratios in one run.

Model: torchvision ResNet-18 (random init, eval, CPU by default), Grad-CAM at ``layer3``; images: the
``fine_grained`` synthetic test split at ``--size`` px; masks: its object masks.

1. **Evaluation** = explain (Grad-CAM of the true class, resized to the image) + the metrics Quantus 0.6
   also has: pointing game, relevance mass accuracy, relevance rank accuracy (on the object mask).
   * ours: :func:`attnbook.evaluate.posthoc_maps_fn` + the same three metrics (attnbook.metrics /
     attnbook.evaluate.localisation), batched;
   * pytorch-grad-cam maps (computed once) → the three Quantus metrics (``a_batch`` given);
   * Quantus driving captum (``LayerGradCam`` + bilinear upsampling as ``explain_func``): each metric
     explains the batch itself, as a Quantus user runs it.
   Also the metrics alone on the same precomputed maps (no explaining). Plus the randomisation check:
   :func:`attnbook.evaluate.cascading_randomisation` vs ``quantus.MPRT`` (top-down, every layer with
   ``reset_parameters``), on ``--mprt-images`` images.
2. **Grad-CAM for T classes per image** (T = 2: target + confuser; T = all classes): ours
   (:func:`attnbook.evaluate.multi_target_gradcam`: one forward, T partial backwards) vs captum
   ``LayerGradCam`` called once per target (T forward + backward passes).

Also the model's forward pass alone (no gradient, no metric): no Grad-CAM evaluation can be faster, so
``their time / forward time`` bounds the ratio any implementation could reach on this model — on CPU, where
the forward pass dominates, that bound is below the 10× goal (printed).

Wall-clock medians of ``--repeats`` runs after one warm-up. Timings on a shared machine are inflated
by whatever else runs; the ratios are the robust part.

    python benchmarks/evaluate_speed.py                       # 64 images (4 for MPRT), 64 px, CPU
    python benchmarks/evaluate_speed.py --images 256 --size 112 --device cuda
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import quantus
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import LayerGradCam
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from attnbook.data.synthetic import generate_split, spec_for
from attnbook.evaluate import (
    cascading_randomisation,
    multi_target_gradcam,
    posthoc_maps_fn,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from attnbook.metrics import pointing_game


def seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall-clock seconds of ``fn`` over ``repeats`` runs after one warm-up."""
    def timed() -> float:
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    timed()
    return statistics.median(timed() for _ in range(repeats))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--mprt-images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = spec_for("fine_grained", resolution=args.size)
    data = generate_split(spec, "test_aligned", 0, args.images).tensors
    x, y, masks = data["image"].to(device), data["label"].to(device), data["mask"]
    model = torchvision.models.resnet18(num_classes=spec.num_classes).eval().to(device)
    layer, size = model.layer3, (args.size, args.size)
    y_np, s_np, x_np = y.cpu().numpy(), masks[:, None].numpy(), x.cpu().numpy()
    metrics = [quantus.PointingGame, quantus.RelevanceMassAccuracy, quantus.RelevanceRankAccuracy]

    maps_fn = posthoc_maps_fn("gradcam", model, layer="layer3")

    def three_metrics(maps: torch.Tensor, masks: torch.Tensor) -> None:  # the ones Quantus also has
        pointing_game(maps, masks)
        relevance_mass_accuracy(maps, masks)
        relevance_rank_accuracy(maps, masks)

    def forward_only() -> None:  # the floor of any Grad-CAM: one forward pass, no gradient, no metric
        with torch.no_grad():
            for lo in range(0, args.images, args.batch):
                model(x[lo:lo + args.batch])

    def ours() -> None:
        for lo in range(0, args.images, args.batch):
            three_metrics(maps_fn(x[lo:lo + args.batch], y[lo:lo + args.batch])[:, 0].cpu(), masks[lo:lo + args.batch])

    pgc = GradCAM(model, [layer])

    def quantus_on_pytorch_grad_cam() -> None:
        maps = np.concatenate([pgc(x[lo:lo + args.batch], [ClassifierOutputTarget(int(c)) for c in
                                                          y[lo:lo + args.batch]])
                               for lo in range(0, args.images, args.batch)])[:, None]
        for metric in metrics:
            metric(disable_warnings=True)(model=model, x_batch=x_np, y_batch=y_np, a_batch=maps, s_batch=s_np,
                                          device=args.device, batch_size=args.batch)

    captum = LayerGradCam(model, layer)

    def captum_explain(model: torch.nn.Module, inputs: np.ndarray, targets: np.ndarray, **kw: object) -> np.ndarray:
        inputs_t = torch.as_tensor(inputs, device=device)
        attr = captum.attribute(inputs_t, torch.as_tensor(targets, device=device).long(), relu_attributions=True)
        return F.interpolate(attr, size=size, mode="bilinear", align_corners=False).detach().cpu().numpy()

    def quantus_on_captum() -> None:
        for metric in metrics:
            metric(disable_warnings=True)(model=model, x_batch=x_np, y_batch=y_np, s_batch=s_np,
                                          explain_func=captum_explain, device=args.device, batch_size=args.batch)

    fixed = torch.cat([maps_fn(x[lo:lo + args.batch], y[lo:lo + args.batch])[:, 0].cpu()
                       for lo in range(0, args.images, args.batch)])
    fixed_np = fixed[:, None].numpy()

    def ours_metrics_only() -> None:
        three_metrics(fixed, masks)

    def quantus_metrics_only() -> None:
        for metric in metrics:
            metric(disable_warnings=True)(model=model, x_batch=x_np, y_batch=y_np, a_batch=fixed_np, s_batch=s_np,
                                          device=args.device, batch_size=args.batch)

    m = args.mprt_images

    ramp = 1e-6 * torch.arange(args.size**2, device=device).view(size) / args.size**2

    def gradcam_on(net: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Grad-CAM + a 1e-6 ramp: a randomised ResNet often gives an all-zero map, on which Quantus's
        batched Spearman crashes (scipy returns a float); the ramp breaks the ties for both contenders."""
        return posthoc_maps_fn("gradcam", net, layer="layer3")(images, targets)[:, 0] + ramp

    def ours_mprt() -> None:
        cascading_randomisation(model, gradcam_on, x[:m], y[:m])

    def quantus_mprt() -> None:
        def explain(model: torch.nn.Module, inputs: np.ndarray, targets: np.ndarray, **kw: object) -> np.ndarray:
            maps = gradcam_on(model, torch.as_tensor(inputs, device=device), torch.as_tensor(targets, device=device))
            return maps[:, None].cpu().numpy()
        quantus.MPRT(disable_warnings=True)(model=model, x_batch=x_np[:m], y_batch=y_np[:m], explain_func=explain,
                                           device=args.device, batch_size=args.batch)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = {name: seconds(fn, args.repeats, device) for name, fn in {
            "model forward only (floor)": forward_only,
            "ours: explain + 3 metrics": ours,
            "pytorch-grad-cam + Quantus": quantus_on_pytorch_grad_cam,
            "Quantus(captum explain_func)": quantus_on_captum,
            "ours: metrics only": ours_metrics_only,
            "Quantus: metrics only": quantus_metrics_only,
            "ours: cascading randomisation": ours_mprt,
            "Quantus MPRT (same maps)": quantus_mprt,
        }.items()}

        confuser = torch.where(data["confuser"] >= 0, data["confuser"], y.cpu()).to(device)
        multi = {"target + confuser": torch.stack([y, confuser], 1),
                 f"all {spec.num_classes} classes": torch.arange(spec.num_classes, device=device).expand(len(y), -1)}
        t_multi = {}
        for label, targets in multi.items():
            def ours_multi(targets: torch.Tensor = targets) -> None:
                for lo in range(0, args.images, args.batch):
                    multi_target_gradcam(model, "layer3", x[lo:lo + args.batch], targets[lo:lo + args.batch])

            def captum_multi(targets: torch.Tensor = targets) -> None:
                for lo in range(0, args.images, args.batch):
                    for j in range(targets.shape[1]):
                        captum.attribute(x[lo:lo + args.batch], targets[lo:lo + args.batch, j], relu_attributions=True)

            t_multi[label] = (seconds(ours_multi, args.repeats, device), seconds(captum_multi, args.repeats, device))

    n = args.images
    print(f"ResNet-18 (random init), Grad-CAM at layer3, {n} fine_grained test images at {args.size} px, "
          f"batch {args.batch}, {args.device}, {args.threads} thread(s), median of {args.repeats}")
    for name in list(t)[:4]:
        print(f"  {name:<34} {n / t[name]:9.1f} images/s")
    base = t["ours: explain + 3 metrics"]
    floor = t["model forward only (floor)"]
    print(f"  ours = {base / floor:.2f} forward passes; the best ratio ANY Grad-CAM evaluation could reach (one "
          f"forward, free backward and metrics): {t['pytorch-grad-cam + Quantus'] / floor:.1f}x vs "
          f"pytorch-grad-cam+Quantus, {t['Quantus(captum explain_func)'] / floor:.1f}x vs Quantus(captum)")
    per_image = {"ours": base / n + t["ours: cascading randomisation"] / m,
                 "pgc": t["pytorch-grad-cam + Quantus"] / n + t["Quantus MPRT (same maps)"] / m,
                 "captum": t["Quantus(captum explain_func)"] / n + t["Quantus MPRT (same maps)"] / m}
    print("  WHOLE evaluation per image (explain + 3 localisation metrics + cascading randomisation):")
    print(f"    ours {1 / per_image['ours']:.2f} images/s; vs pytorch-grad-cam+Quantus "
          f"{per_image['pgc'] / per_image['ours']:.1f}x, "
          f"vs Quantus(captum) {per_image['captum'] / per_image['ours']:.1f}x")
    print(f"  ratio ours / pytorch-grad-cam+Quantus   {t['pytorch-grad-cam + Quantus'] / base:7.1f}x")
    print(f"  ratio ours / Quantus(captum)            {t['Quantus(captum explain_func)'] / base:7.1f}x")
    print(f"  metrics only (same maps given): ours {n / t['ours: metrics only']:9.1f} images/s, Quantus "
          f"{n / t['Quantus: metrics only']:9.1f} images/s, ratio "
          f"{t['Quantus: metrics only'] / t['ours: metrics only']:.1f}x")
    print(f"  randomisation check on {m} images: ours {t['ours: cascading randomisation']:.2f} s, Quantus MPRT "
          f"{t['Quantus MPRT (same maps)']:.2f} s, ratio "
          f"{t['Quantus MPRT (same maps)'] / t['ours: cascading randomisation']:.1f}x")
    for label, (ours_s, captum_s) in t_multi.items():
        print(f"  Grad-CAM, {label}: ours (one forward) {n / ours_s:8.1f} images/s, captum per target "
              f"{n / captum_s:8.1f} images/s, ratio {captum_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
