"""Chapter 2 — Sharpen Focus: configuration, profiles and the paper's numbers (no torch import: ``attnbook list``
stays instant).

Chapter: ``nbs/02_sharpen_focus.ipynb``: Wang et al., "Sharpen Focus: Learning with Attention Separability and
Consistency" (ICCV 2019). Baseline vs + Grad-CAM attention vs + A_ch vs + A_px, trained from scratch over seeds
on a many-class testbed analog with confusable pairs (cpu, gpu) or on CIFAR-100 with ResNet-110 (paper); the
unofficial ports' choices as an ablation; separability and consistency measured against the known
discriminative part. Method: :mod:`attnbook.methods.sharpen_focus`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from attnbook.chapters import Chapter
from attnbook.config import ChapterConfig, param

# Mirrors of torch-importing modules (tests/chapters/test_sharpen_focus.py checks each equals its source).
ATTENTIONS = ("gradcam", "channelwise", "pixelwise")  # attnbook.methods.sharpen_focus.ATTENTIONS
PORT_OPTIONS: dict[str, Any] = {"grad_seed": "logits", "normalize": "batch", "grad_path": "detached"}  # ditto
MULTILABEL_TARGETS = ("union", "each")  # attnbook.methods.sharpen_focus.MULTILABEL_TARGETS

DATA = ("synthetic", "cifar100")
MODELS = ("baseline", "gradcam", "channelwise", "pixelwise")  # Table 1's rows: the losses on each attention
TRAINED = MODELS[1:]
LABELS = {"baseline": "baseline", "gradcam": "+ Grad-CAM attention", "channelwise": "+ A_ch", "pixelwise": "+ A_px"}
ATTENTION_LABELS = {"gradcam": "Grad-CAM", "channelwise": "A_ch", "pixelwise": "A_px"}
LAYERS = ("inner", "last")
# The ports' choices, one at a time and together, on the reference attention (papers.md §2). The third choice
# the issue names — no ReLU on the gradients of A_ch — *is* Grad-CAM attention (Eq. 2 vs 3): Table 1's row.
ABLATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "logits_seed": ("logits as the gradient seed", {"grad_seed": "logits"}),
    "batch_norm": ("per-batch normalisation", {"normalize": "batch"}),
    "detached": ("gradients detached (backward hooks)", {"grad_path": "detached"}),
    "port": ("all three (the port)", dict(PORT_OPTIONS)),
}

# The paper's numbers (papers.md §2; Tables 1–6, top-1 % unless said).
BASELINE_CIFAR = 72.78
PAPER_CIFAR = {"gradcam": 74.02, "channelwise": 76.11, "pixelwise": 76.24}  # Tables 1-2, ResNet-110
PAPER_GAIN = {k: round(v - BASELINE_CIFAR, 2) for k, v in PAPER_CIFAR.items()}  # +1.24, +3.33, +3.46
PORTS_CIFAR = (73.32, 71.30)  # the public unofficial ports on CIFAR-100: baseline → with the losses (papers.md §2)
NOT_IMPLEMENTED = "the paper profile implements the CIFAR-100 protocol only"
ML_WHY = ("ml_seeds=0: on the CPU the multi-label analog (1–3 birds per image) stays at chance mAP within the budget "
          "(32–48 px, 6 epochs, measured while calibrating this profile); the gpu profile runs it at 64 px")
PAPER_ROWS: tuple[tuple[str, str, str, str], ...] = (  # id, claim, paper value, dataset (catalog name)
    ("sf-table2-preact164", "Table 2: pre-activation ResNet-164 (a deeper baseline) reaches 75.63 on CIFAR-100",
     "75.63", "cifar100"),
    ("sf-table3-n30-resnet18", "Table 3: Caltech-256 N=30, ResNet-18 76.77 → 77.82 (A_px) / 78.01 (A_ch)",
     "76.77 → 77.82 / 78.01", "caltech256"),
    ("sf-table3-n30-vgg19", "Table 3: Caltech-256 N=30, VGG-19 74.52 → 75.34 (A_px) / 75.60 (A_ch)",
     "74.52 → 75.34 / 75.60", "caltech256"),
    ("sf-table3-n60-resnet18", "Table 3: Caltech-256 N=60, ResNet-18 80.01 → 81.34 (A_px) / 81.32 (A_ch)",
     "80.01 → 81.34 / 81.32", "caltech256"),
    ("sf-table3-n60-vgg19", "Table 3: Caltech-256 N=60, VGG-19 78.16 → 79.53 (A_px) / 79.80 (A_ch)",
     "78.16 → 79.53 / 79.80", "caltech256"),
    ("sf-table4-resnet18", "Table 4: ImageNet ResNet-18 69.51 → 69.90 (A_ch)", "69.51 → 69.90", "imagenet"),
    ("sf-table4-tencrop", "Table 4: ImageNet ResNet-18, ten-crop testing, 72.12 → 73.04 (A_ch)", "72.12 → 73.04",
     "imagenet"),
    ("sf-table5-resnet50", "Table 5: CUB-200-2011 at 448 px, ResNet-50 81.7 → 86.2 (A_ch)", "81.7 → 86.2", "cub"),
    ("sf-table5-resnet101", "Table 5: CUB-200-2011 at 448 px, ResNet-101 82.5 → 86.5 (A_ch)", "82.5 → 86.5", "cub"),
    ("sf-table6-ap", "Table 6: VOC 2012 multi-label, ResNet-18 AP 77.44 → 83.22 (A_px) / 83.17 (A_ch)",
     "77.44 → 83.22 / 83.17", "voc2012"),
    ("sf-table6-auc", "Table 6: VOC 2012 multi-label, ResNet-18 AUC 0.976 → 0.980 (A_px) / 0.981 (A_ch)",
     "0.976 → 0.980 / 0.981", "voc2012"),
)


@dataclass(frozen=True)
class SharpenFocusConfig(ChapterConfig):
    """Chapter 2 settings. The benchmark's data seed is fixed (0); training seeds are seed … seed+n_seeds−1, the same
    for every model, so that every comparison is paired over seeds."""

    data: str = param("synthetic", choices=DATA, help="synthetic testbed analog or CIFAR-100 (paper)")
    num_classes: int = param(10, minimum=2, help="synthetic: classes (confusable pairs)")
    train_per_class: int = param(60, minimum=1, help="synthetic: training images per class")
    test_per_class: int = param(50, minimum=1, help="synthetic: test images per class")
    resolution: int = param(32, minimum=32, help="image side in pixels")
    depth: int = param(8, minimum=8, help="CIFAR ResNet depth 6n + 2 (paper: 110)")
    width: int = param(8, minimum=1, help="channels of the first stage (×2, ×4 after; paper: 16)")
    n_seeds: int = param(10, minimum=2, help="training seeds per model (the unit of the paired tests)")
    epochs: int = param(7, minimum=1)
    batch_size: int = param(32, minimum=1)
    optimizer: str = param("adam", choices=("adam", "sgd"), help="paper: SGD, momentum 0.9")
    lr: float = param(5e-3)
    weight_decay: float = param(5e-4, minimum=0)
    scheduler: str = param("cosine", choices=("cosine", "step"), help="paper (CIFAR): ÷10 at epochs 81 and 122")
    milestones: tuple[int, ...] = param((), minimum=1, help="epochs of the step schedule")
    augment: bool = param(False, help="pad 4 + random crop + horizontal flip (paper, CIFAR-100)")
    reference: str = param("channelwise", choices=ATTENTIONS, help="the attention the ablations change")
    ablations: tuple[str, ...] = param(("logits_seed", "batch_norm", "detached"), choices=tuple(ABLATIONS),
                                       help="the ports' choices trained on the same seeds (empty: not run)")
    ml_seeds: int = param(0, minimum=0, help="multi-label (Table 6 analog): seeds per model (0: not run)")
    ml_classes: int = param(10, minimum=2)
    ml_train_per_class: int = param(60, minimum=1)
    ml_test_per_class: int = param(20, minimum=1)
    ml_resolution: int = param(64, minimum=32)
    ml_epochs: int = param(20, minimum=1)
    multilabel_target: str = param("union", choices=MULTILABEL_TARGETS,
                                   help="multi-label target map: multi-hot seed (paper) or one pair per class")
    n_explain: int = param(200, minimum=2, help="test images whose maps are scored (separability, parts)")
    cost_steps: int = param(3, minimum=1, help="timed training steps of the cost measurement (median)")
    cost_resnet18: bool = param(True, help="also time torchvision ResNet-18 with the losses at layer3 + layer4")
    workers: int = param(0, minimum=0, help="training processes of one thread each (0: the run's CPU threads; "
                                            "1: train in this process)")

    def __post_init__(self) -> None:
        if (self.depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 (8, 14, 20, 56, 110 …), got {self.depth}")
        if self.scheduler == "step" and not self.milestones:
            raise ValueError("scheduler='step' needs milestones, e.g. milestones=(81, 122)")
        if self.data == "cifar100" and self.resolution != 32:
            raise ValueError("CIFAR-100 images are 32 px; set resolution=32")


PROFILES = {
    "smoke": SharpenFocusConfig(profile="smoke", num_classes=4, train_per_class=8, test_per_class=4, width=4,
                                n_seeds=2, epochs=1, batch_size=16, ablations=("logits_seed",), ml_seeds=2,
                                ml_classes=4, ml_train_per_class=4, ml_test_per_class=4, ml_resolution=32,
                                ml_epochs=1, n_explain=8, cost_steps=1, cost_resnet18=False, workers=1),
    "cpu": SharpenFocusConfig(profile="cpu"),
    "gpu": SharpenFocusConfig(profile="gpu", needs_gpu=True, num_classes=20, train_per_class=300, test_per_class=50,
                              resolution=64, depth=20, width=16, epochs=30, batch_size=64, lr=2e-3,
                              ablations=tuple(ABLATIONS), ml_seeds=5, ml_train_per_class=200, ml_epochs=20,
                              n_explain=400, cost_steps=20, workers=1),
    # Tables 1-2: CIFAR-100, ResNet-110, SGD bs 128 lr 0.1 momentum 0.9 wd 5e-4, ÷10 at 81/122, 160 epochs.
    "paper": SharpenFocusConfig(profile="paper", needs_gpu=True, datasets=("cifar100",), data="cifar100",
                                num_classes=100, depth=110, width=16, n_seeds=3, epochs=160, batch_size=128,
                                optimizer="sgd", lr=0.1, weight_decay=5e-4, scheduler="step", milestones=(81, 122),
                                augment=True, ablations=("port",), n_explain=1000, cost_steps=20, workers=1),
}

CHAPTER = Chapter(
    notebook="02_sharpen_focus", title="Sharpen Focus",
    paper="Wang et al., *Sharpen Focus: Learning with Attention Separability and Consistency* (ICCV 2019)",
    summary="separable, consistent attention as training losses improves accuracy",
    paper_url="https://arxiv.org/abs/1811.07484",
    profiles=PROFILES, parameters=("n_seeds", "epochs", "ablations", "ml_seeds"),
    metrics={**{f"accuracy/{k}": (0, 1) for k in MODELS},
             **{f"gain/{k}": (-1, 1) for k in TRAINED},
             **{f"separability/{k}/{layer}": (0, 1) for k in ("baseline", "channelwise") for layer in LAYERS},
             **{f"consistency/baseline/{a}": (0, 1) for a in ATTENTIONS},
             "cost/ratio_separate": (0.5, 100), "cost/ratio_batched": (0.5, 100)},
)


def seeds(config: SharpenFocusConfig) -> list[int]:
    """The training seeds of this run: ``seed … seed + n_seeds − 1`` (the same for every model)."""
    return [config.seed + k for k in range(config.n_seeds)]


def ml_seeds(config: SharpenFocusConfig) -> list[int]:
    """The multi-label seeds: ``seed … seed + ml_seeds − 1`` (empty: not run)."""
    return [config.seed + k for k in range(config.ml_seeds)]
