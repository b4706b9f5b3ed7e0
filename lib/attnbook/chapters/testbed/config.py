"""Chapter 0 — the testbed: configuration and profiles (no torch import: ``attnbook list`` stays instant).

Chapter: ``nbs/00_testbed.ipynb``: the ground-truth benchmark, a baseline CNN trained on its biased
split, and every post-hoc explainer scored against the ground truth. Its numbers are the baselines the
paper chapters compare with.
"""
from __future__ import annotations

from dataclasses import dataclass

from attnbook.chapters import Chapter
from attnbook.config import ChapterConfig, param

# Names the library defines in torch-importing modules, mirrored here so that the config stays light;
# tests/chapters/test_testbed.py checks each equals its source of truth.
PRESETS = ("two_class", "many_class", "fine_grained", "multi_label")  # attnbook.data.synthetic.PRESETS
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg16", "vgg19", "alexnet",
             "efficientnet_b0")  # attnbook.models.backbones.BACKBONES
EXPLAINERS = ("cam", "activation", "gradcam", "gradcam++", "channelwise", "pixelwise", "guided_backprop",
              "guided_gradcam", "lime")  # attnbook.explain.EXPLAINERS
POST_HOC = ("cam", "activation", "gradcam", "gradcam++", "guided_backprop", "guided_gradcam", "lime")
SPLITS = ("test_aligned", "test_conflicting")


@dataclass(frozen=True)
class TestbedConfig(ChapterConfig):
    """Chapter 0 settings; the benchmark's data seed is fixed (0) so seeds vary training only."""

    preset: str = param("fine_grained", choices=PRESETS, help="benchmark preset (CUB analog)")
    num_classes: int = param(10, minimum=2, help="classes (pairs of confusable classes)")
    train_per_class: int = param(80, minimum=1)
    test_per_class: int = param(30, minimum=1)
    resolution: int = param(128, minimum=32, help="image side in pixels")
    p_bias: float = param(0.9, minimum=0, maximum=1, help="P(own habitat) in the training split")
    arch: str = param("resnet18", choices=BACKBONES, help="backbone, trained from scratch")
    small_input: bool = param(False, help="output stride 8 stem (costly on CPU)")
    epochs: int = param(5, minimum=1)
    batch_size: int = param(32, minimum=1)
    lr: float = param(1e-3)
    weight_decay: float = param(1e-4)
    explainers: tuple[str, ...] = param(POST_HOC, choices=EXPLAINERS, help="post-hoc explainers scored")
    n_explain: int = param(40, minimum=2, help="test objects explained (each seen in both test splits)")
    lime_images: int = param(16, minimum=1, help="of those, how many LIME explains (it is the slow one)")
    lime_samples: int = param(200, minimum=8, help="LIME perturbations per image (BLA §4.3 uses 1000)")
    lime_grid: int = param(8, minimum=2, help="LIME patch grid side")
    explorer_images: int = param(8, minimum=2, help="images in the explorer widget")


PROFILES = {
    "smoke": TestbedConfig(profile="smoke", num_classes=4, train_per_class=12, test_per_class=4, resolution=64,
                           epochs=1, n_explain=8, lime_images=4, lime_samples=24, lime_grid=4, explorer_images=4),
    "cpu": TestbedConfig(profile="cpu"),
    "gpu": TestbedConfig(profile="gpu", needs_gpu=True, devices=0, num_classes=16, train_per_class=300,
                         test_per_class=50, resolution=224, epochs=30, n_explain=200, lime_images=100,
                         lime_samples=1000, lime_grid=7),
    # The testbed has no paper of its own: `paper` is the GPU benchmark at the papers' 448 px.
    "paper": TestbedConfig(profile="paper", needs_gpu=True, devices=0, num_classes=20, train_per_class=300,
                           test_per_class=50, resolution=448, epochs=30, batch_size=16, n_explain=200, lime_images=100,
                           lime_samples=1000, lime_grid=7),
}

CHAPTER = Chapter(
    notebook="00_testbed", title="The testbed", paper="— (shared benchmark and baselines)",
    summary="a benchmark whose ground truth says *where* a classifier should look, and how post-hoc explainers "
            "score on it",
    profiles=PROFILES, parameters=("epochs", "arch", "p_bias", "resolution"),
    metrics={"accuracy/train": (0, 1), "accuracy/test_aligned": (0, 1), "accuracy/test_conflicting": (0, 1),
             "accuracy/bias_gap": (-1, 1), "data/bias_rate_train": (0, 1),
             **{f"explain/{name}/pointing_object": (0, 1) for name in POST_HOC}},
)


