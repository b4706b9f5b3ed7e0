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
ML_WHY = "ml_seeds=0: the multi-label analog is switched off in this run (the cpu profile trains it over 6 seeds)"


@dataclass(frozen=True)
class Study:
    """One of the paper's protocols beyond CIFAR-100 (Tables 3–6; seed §4), trained by the ``paper`` profile's
    ``studies``: the data set (catalog name) and its split, backbone (torchvision; inner/last layer), image side,
    SGD momentum 0.9 schedule, ImageNet initialisation, and the models trained (baseline + ``kinds``).
    ``pretrained``: the paper does not say; fine-tuning from ImageNet is our reading for Caltech-256, CUB and VOC
    (their baselines — 76.8 / 81.7 / AP 77.4 — are far above what these nets reach from scratch on ≤ 60 images
    per class), ImageNet trains from scratch."""

    dataset: str
    arch: str
    layers: tuple[str, str]  # inner, last (the penultimate and the last stage)
    resolution: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    scheduler: str  # "cosine" (one cycle, Caltech/VOC) or "step" (÷10 at milestones)
    milestones: tuple[int, ...] = ()
    pretrained: bool = True
    n_train: int = 0  # Caltech-256: training images per class (30 or 60)
    multilabel: bool = False
    kinds: tuple[str, ...] = ("channelwise", "pixelwise")


_CALTECH = dict(resolution=224, epochs=20, batch_size=64, lr=0.01, weight_decay=1e-3, scheduler="cosine")
_RESNET_LAYERS, _VGG_LAYERS = ("layer3", "layer4"), ("block4", "block5")
STUDIES: dict[str, Study] = {
    # Table 3 (seed §4.1): 25 test / 30 or 60 train images per class, lr 0.01 wd 1e-3, cosine one cycle, 20 epochs
    # (batch size not given: 64 here)
    **{f"caltech256-n{n}-{arch}": Study("caltech256", arch, layers, n_train=n, **_CALTECH)
       for n in (30, 60) for arch, layers in (("resnet18", _RESNET_LAYERS), ("vgg19", _VGG_LAYERS))},
    # Table 4: SGD bs 256 lr 0.1 wd 1e-4, ÷10 at 30 and 60, 90 epochs; from scratch; A_ch only
    "imagenet-resnet18": Study("imagenet", "resnet18", _RESNET_LAYERS, 224, 90, 256, 0.1, 1e-4, "step", (30, 60),
                               pretrained=False, kinds=("channelwise",)),
    # Table 5 (§4.2): 448 px, mirror + random crop, SGD bs 10 lr 1e-3, ÷10 at 30 and 60, 90 epochs; A_ch only
    **{f"cub-{arch}": Study("cub", arch, _RESNET_LAYERS, 448, 90, 10, 1e-3, 0.0, "step", (30, 60),
                            kinds=("channelwise",)) for arch in ("resnet50", "resnet101")},
    # Table 6 (§4.3): multilabel soft margin, the Caltech recipe (lr 0.01 wd 1e-3, cosine, 20 epochs); val split
    "voc2012-resnet18": Study("voc2012", "resnet18", _RESNET_LAYERS, multilabel=True, **_CALTECH),
}
# id, claim, paper value, study (None: no profile runs it), model, metric ("accuracy", "ap" or "auc")
PAPER_ROWS: tuple[tuple[str, str, str, str | None, str, str], ...] = (
    ("sf-table2-preact164", "Table 2: pre-activation ResNet-164 (a deeper baseline) reaches 75.63 on CIFAR-100",
     "75.63", None, "baseline", "accuracy"),
    *((f"sf-table3-n{n}-{arch}-{short}", f"Table 3: Caltech-256 N={n}, {label}: + {att} raises top-1 accuracy "
       f"({base} → {value})", f"{base} → {value}", f"caltech256-n{n}-{arch}", kind, "accuracy")
      for n, arch, label, base, values in ((30, "resnet18", "ResNet-18", "76.77", ("77.82", "78.01")),
                                           (30, "vgg19", "VGG-19", "74.52", ("75.34", "75.60")),
                                           (60, "resnet18", "ResNet-18", "80.01", ("81.34", "81.32")),
                                           (60, "vgg19", "VGG-19", "78.16", ("79.53", "79.80")))
      for (kind, short, att), value in zip((("pixelwise", "apx", "A_px"), ("channelwise", "ach", "A_ch")), values)),
    ("sf-table4-resnet18", "Table 4: ImageNet ResNet-18 69.51 → 69.90 (A_ch)", "69.51 → 69.90", "imagenet-resnet18",
     "channelwise", "accuracy"),
    ("sf-table4-tencrop", "Table 4: ImageNet ResNet-18, ten-crop testing, 72.12 → 73.04 (A_ch)", "72.12 → 73.04",
     None, "channelwise", "accuracy"),
    ("sf-table5-resnet50", "Table 5: CUB-200-2011 at 448 px, ResNet-50 81.7 → 86.2 (A_ch)", "81.7 → 86.2",
     "cub-resnet50", "channelwise", "accuracy"),
    ("sf-table5-resnet101", "Table 5: CUB-200-2011 at 448 px, ResNet-101 82.5 → 86.5 (A_ch)", "82.5 → 86.5",
     "cub-resnet101", "channelwise", "accuracy"),
    *((f"sf-table6-{metric}-{short}", f"Table 6: VOC 2012 multi-label, ResNet-18: + {att} raises {metric.upper()} "
       f"({base} → {value})", f"{base} → {value}", "voc2012-resnet18", kind, metric)
      for metric, base, values in (("ap", "77.44", ("83.22", "83.17")), ("auc", "0.976", ("0.980", "0.981")))
      for (kind, short, att), value in zip((("pixelwise", "apx", "A_px"), ("channelwise", "ach", "A_ch")), values)),
)
NOT_RUN_WHY = {  # the rows no study measures
    "sf-table2-preact164": "pre-activation ResNet-164 is a comparison architecture of the paper, not built here",
    "sf-table4-tencrop": "ten-crop testing is not implemented (the ImageNet study tests one centre view)",
}


@dataclass(frozen=True)
class SharpenFocusConfig(ChapterConfig):
    """Chapter 2 settings. The benchmark's data seed is fixed (0); training seeds are seed … seed+n_seeds−1, the same
    for every model, so that every comparison is paired over seeds."""

    data: str = param("synthetic", choices=DATA, help="synthetic testbed analog or CIFAR-100 (paper)")
    num_classes: int = param(8, minimum=2, help="synthetic: classes (confusable pairs)")
    train_per_class: int = param(75, minimum=1, help="synthetic: training images per class")
    test_per_class: int = param(50, minimum=1, help="synthetic: test images per class")
    resolution: int = param(32, minimum=32, help="image side in pixels")
    num_parts: int = param(5, minimum=1, maximum=7, help="synthetic: parts per bird (the most salient first: body, "
                                                         "head, wing, tail, beak, …); a pair differs in one")
    disc_groups: tuple[str, ...] = param(("color", "pattern", "shape"), choices=("color", "pattern", "shape"),
                                         help="synthetic: the attribute groups a confusable pair may differ in")
    depth: int = param(8, minimum=8, help="CIFAR ResNet depth 6n + 2 (paper: 110)")
    width: int = param(8, minimum=1, help="channels of the first stage (×2, ×4 after; paper: 16)")
    n_seeds: int = param(10, minimum=2, help="training seeds per model (the unit of the paired tests)")
    epochs: int = param(7, minimum=1)
    batch_size: int = param(16, minimum=1)
    optimizer: str = param("adam", choices=("adam", "sgd"), help="paper: SGD, momentum 0.9")
    lr: float = param(2e-2)
    weight_decay: float = param(5e-4, minimum=0)
    scheduler: str = param("cosine", choices=("cosine", "step"), help="paper (CIFAR): ÷10 at epochs 81 and 122")
    milestones: tuple[int, ...] = param((), minimum=1, help="epochs of the step schedule")
    augment: bool = param(False, help="pad 4 + random crop + horizontal flip (paper, CIFAR-100)")
    reference: str = param("channelwise", choices=ATTENTIONS, help="the attention the ablations change")
    ablations: tuple[str, ...] = param(("logits_seed", "batch_norm", "detached"), choices=tuple(ABLATIONS),
                                       help="the ports' choices trained on the same seeds (empty: not run)")
    ml_seeds: int = param(6, minimum=0, help="multi-label (Table 6 analog): seeds per model (0: not run)")
    ml_classes: int = param(6, minimum=2)
    ml_train_per_class: int = param(120, minimum=1)
    ml_test_per_class: int = param(20, minimum=1)
    ml_resolution: int = param(32, minimum=32)
    ml_epochs: int = param(6, minimum=1)
    ml_max_objects: int = param(2, minimum=1, maximum=4, help="multi-label: at most this many birds per image")
    ml_pairs: bool = param(True, help="multi-label: classes in confusable pairs (False: every class distinct)")
    ml_kinds: tuple[str, ...] = param(("channelwise", "pixelwise"), choices=("channelwise", "pixelwise"),
                                      help="multi-label: the attentions trained beside the baseline (Table 6)")
    multilabel_target: str = param("union", choices=MULTILABEL_TARGETS,
                                   help="multi-label target map: multi-hot seed (paper) or one pair per class")
    n_explain: int = param(200, minimum=2, help="test images whose maps are scored (separability, parts)")
    cost_steps: int = param(3, minimum=1, help="timed training steps of the cost measurement (median)")
    cost_resnet18: bool = param(True, help="also time torchvision ResNet-18 with the losses at layer3 + layer4")
    studies: tuple[str, ...] = param((), choices=tuple(STUDIES),
                                     help="the paper's protocols beyond CIFAR-100 (Tables 3–6) to train; each is "
                                          "'not run', naming what is missing, without its data or weights")
    study_seeds: int = param(3, minimum=1, help="training seeds per model of each study")
    study_epochs: int = param(0, minimum=0, help="epochs of every study (0: each protocol's)")
    study_resolution: int = param(0, minimum=0, help="image side of every study (0: each protocol's)")
    study_batch_size: int = param(0, minimum=0, help="batch size of every study (0: each protocol's)")
    study_workers: int = param(0, minimum=0, help="DataLoader worker processes of the studies (JPEG decoding)")
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
    # cpu: the calibrated analog (calibration.SETTINGS, re-run by benchmarks/calibrate_sharpen_focus.py);
    # multi-label: baseline and + A_ch only (budget); no ResNet-18 cost
    "cpu": SharpenFocusConfig(profile="cpu", ml_kinds=("channelwise",), cost_resnet18=False),
    "gpu": SharpenFocusConfig(profile="gpu", needs_gpu=True, num_classes=20, train_per_class=300, test_per_class=50,
                              resolution=64, depth=20, width=16, epochs=30, batch_size=64, lr=2e-3,
                              ablations=tuple(ABLATIONS), ml_seeds=6, ml_classes=10, ml_train_per_class=200,
                              ml_resolution=64, ml_epochs=20, ml_max_objects=3,
                              n_explain=400, cost_steps=20, workers=1, devices=0),
    # Tables 1-2: CIFAR-100, ResNet-110, SGD bs 128 lr 0.1 momentum 0.9 wd 5e-4, ÷10 at 81/122, 160 epochs.
    "paper": SharpenFocusConfig(profile="paper", needs_gpu=True, datasets=("cifar100",), data="cifar100",
                                num_classes=100, depth=110, width=16, n_seeds=3, epochs=160, batch_size=128,
                                optimizer="sgd", lr=0.1, weight_decay=5e-4, scheduler="step", milestones=(81, 122),
                                augment=True, ablations=("port",), ml_seeds=0, n_explain=1000, cost_steps=20,
                                workers=1,
                                studies=tuple(STUDIES), study_workers=8, devices=0),
}

CHAPTER = Chapter(
    notebook="02_sharpen_focus", title="Sharpen Focus",
    paper="Wang et al., *Sharpen Focus: Learning with Attention Separability and Consistency* (ICCV 2019)",
    summary="separable, consistent attention as training losses improves accuracy",
    paper_url="https://arxiv.org/abs/1811.07484",
    profiles=PROFILES, parameters=("n_seeds", "epochs", "ablations", "ml_seeds", "studies"),
    metrics={**{f"accuracy/{k}": (0, 1) for k in MODELS},
             **{f"gain/{k}": (-1, 1) for k in TRAINED},
             **{f"separability/{k}/{layer}": (0, 1) for k in ("baseline", "channelwise") for layer in LAYERS},
             **{f"consistency/baseline/{a}": (0, 1) for a in ATTENTIONS},
             "cost/ratio_separate": (0.5, 100), "cost/ratio_batched": (0.5, 100)},
)


def seeds(config: SharpenFocusConfig) -> list[int]:
    """The training seeds of this run: ``seed … seed + n_seeds − 1`` (the same for every model)."""
    return [config.seed + k for k in range(config.n_seeds)]


def study_seeds(config: SharpenFocusConfig) -> list[int]:
    """The seeds of every study (paper profile): ``seed … seed + study_seeds − 1``."""
    return [config.seed + k for k in range(config.study_seeds)]


def ml_seeds(config: SharpenFocusConfig) -> list[int]:
    """The multi-label seeds: ``seed … seed + ml_seeds − 1`` (empty: not run)."""
    return [config.seed + k for k in range(config.ml_seeds)]
