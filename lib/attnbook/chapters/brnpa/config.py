"""Chapter 5 — BR-NPA: configuration, profiles and the paper's numbers (no torch, pandas or matplotlib
import: ``attnbook list`` stays instant).

Chapter: ``nbs/05_brnpa.ipynb``. Paper: Gomez et al., BR-NPA — Algorithm 1 (§3.2), high resolution by
stride 1 and distillation (§3.1, Eq. 1), ablations (§4.3, Tables 4/5/7), the importance hierarchy (§4.4,
Fig. 5), gradient norms (Fig. 8) and cost (Fig. 9, App. B.4). The pipeline is in
:mod:`attnbook.chapters.brnpa.pipeline`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from attnbook.chapters import Chapter
from attnbook.config import ChapterConfig, param

# Names the library defines in torch-importing modules, mirrored here so that the config stays light;
# tests/chapters/test_brnpa.py checks each equals its source of truth.
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")  # models.backbones.BACKBONES[:5]
RESNET_STRIDE_STAGES = ("layer2", "layer3", "layer4")  # attnbook.models.backbones.RESNET_STRIDE_STAGES
STEM, HEAD = "stem", "head"  # attnbook.models.staged: train the whole backbone / the head only, on cached maps
# Paper §4.3, Table 5: the vector subsets fed to the extra classifiers (attnbook.methods.brnpa.TABLE5_SUBSETS).
TABLE5_SUBSETS: tuple[tuple[int, ...], ...] = ((1, 2), (2, 3), (1,), (2,), (3,))

STAGES = (STEM, "layer1", "layer2", "layer3", "layer4")
KINDS = ("gap", "bcnn", "brnpa")  # the heads of Tables 1 and 6 (attnbook.methods.registry names)
KIND_NAMES = {"gap": "CNN (GAP)", "bcnn": "B-CNN", "brnpa": "BR-NPA", "bcnn_einsum": "B-CNN (einsum)"}
RESOLUTIONS = ("low", "high")
TEACHER_LOGITS = "teacher_logits"  # batch key of the low-resolution teacher's logits (Eq. 1)
OBJECT, DISC = "object", "disc. part"  # region names of the ground-truth scores
SYNTHETIC = "synthetic fine-grained"
POST_HOC = ("Grad-CAM", "Grad-CAM++", "Guided Grad-CAM", "Guided Grad-CAM++", "AM")  # Figs. 1/3/5
TRAIN_SPLIT = {"fgvc_aircraft": "trainval"}  # real datasets whose training split has another name
# Table 4 (random/active × refine, with the chapter's rules) and the paper's rules against the authors'
# code (papers.md, "What the authors' code does differently"): key → (label, BRNPAHead options).
ABLATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "random_norefine": ("random, no refine", {"selection": "random", "refine": False}),
    "random_refine": ("random, refine", {"selection": "random"}),
    "active_norefine": ("active, no refine", {"refine": False}),
    "active_refine": ("active, refine", {"aux_subsets": TABLE5_SUBSETS}),  # + Table 5's classifiers
    "rules_paper": ("paper: ‖f‖², 1 − w", {"activation": "squared_norm", "suppression": "weight"}),
    "rules_norm": ("‖f‖, 1 − w", {"activation": "norm", "suppression": "weight"}),
    "rules_similarity": ("‖f‖², 1 − s", {"activation": "squared_norm", "suppression": "similarity"}),
    "rules_code": ("code: ‖f‖, 1 − s", {"activation": "norm", "suppression": "similarity"}),
}
TABLE4 = ("random_norefine", "random_refine", "active_norefine", "active_refine")
CODE_VS_PAPER = ("rules_paper", "rules_norm", "rules_similarity", "rules_code")

# The paper's numbers the ledger sets ours against.
PAPER_TABLE1 = {"cub": (84.6, 85.5), "fgvc_aircraft": (88.9, 89.6), "stanford_cars": (89.7, 91.7)}  # B-CNN, BR-NPA
PAPER_TABLE4 = {"random_norefine": 0.21, "random_refine": 0.53, "active_norefine": 0.73, "active_refine": 0.81}
PAPER_TABLE5 = {"1_2_3": 79.5, "1_2": 79.1, "2_3": 77.9, "1": 77.3, "2": 73.2, "3": 56.8}  # accuracy (%) by subset
# Table 6 (CUB), low → high resolution (distilled): accuracy (%) and sparsity (max/mean, 14×14 → 56×56 maps).
PAPER_TABLE6 = {"bcnn": {"accuracy": (82.9, 84.6), "sparsity": (11.2, 19.6)},
                "brnpa": {"accuracy": (85.2, 85.5), "sparsity": (7.46, 21.3)}, "gap": {"accuracy": (84.2,)}}
NOT_RUN = {  # claim id → (claim, paper value, why this book does not run it)
    "brnpa-t2-reid": ("Table 2: on Market-1501 with DG-Net, BR-NPA 93.6 (16×8) / 88.2 (64×32) vs B-CNN 78.4",
                      "78.4 / 93.6 / 88.2",
                      "person re-identification needs Market-1501 and the pretrained DG-Net, neither in this "
                      "book's catalog; the DG-Net pipeline is not implemented"),
    "brnpa-t3-fewshot": ("Table 3: CIFAR-FS 1-shot 5-way with MTL, BR-NPA 69.9 (10×10) / 65.7 (40×40) vs "
                         "B-CNN 58.1, MTL 61.7", "61.7 / 58.1 / 69.9 / 65.7",
                         "few-shot classification needs the CIFAR-FS splits and the MTL meta-learning pipeline "
                         "(ResNet-12), not implemented here"),
    "brnpa-segmentation": ("Supplement: plugged into a pretrained segmentation network, BR-NPA gives maps like "
                           "few-shot's (whole objects)", "qualitative",
                           "no semantic-segmentation model or dataset in this book"),
}


@dataclass(frozen=True)
class BRNPAConfig(ChapterConfig):
    """Chapter 5 settings. Seeds: stage A uses ``seed``; stage-B models ``seed … seed + n_seeds − 1``; the
    ablations ``seed … seed + ablation_seeds − 1``."""

    arch: str = param("resnet18", choices=RESNETS, help="ResNet backbone")
    pretrained: bool = param(False, help="start from torchvision's ImageNet weights (paper profile)")
    resolution: int = param(112, minimum=32, help="image side in pixels")
    num_classes: int = param(16, minimum=2, help="synthetic benchmark: classes (confusable pairs)")
    train_per_class: int = param(50, minimum=1, help="synthetic benchmark: training images per class")
    test_per_class: int = param(20, minimum=1, help="synthetic benchmark: test images per class")
    pretrain_epochs: int = param(5, minimum=0, help="stage A: GAP CNN end to end (0: use the initial weights)")
    epochs: int = param(2, minimum=1, help="stage B: epochs of every GAP / B-CNN / BR-NPA model")
    ablation_epochs: int = param(4, minimum=1, help="epochs of every ablation model")
    n_seeds: int = param(2, minimum=1, help="stage-B seeds per model")
    ablation_seeds: int = param(5, minimum=1, help="seeds of every ablation model (Tables 4/5; cheap on the cpu "
                                                   "profile: heads on cached maps)")
    batch_size: int = param(32, minimum=1)
    lr: float = param(1e-3, help="Adam learning rate of the heads (cosine schedule)")
    backbone_lr_scale: float = param(0.1, help="the trained backbone stages get lr × this")
    train_from: str = param("layer4", choices=STAGES, help="first backbone stage trained in stage B (earlier: "
                                                           "frozen, output cached)")
    stride_one: tuple[str, ...] = param(("layer4",), choices=RESNET_STRIDE_STAGES,
                                        help="stages set to stride 1 for the high-resolution models (§3.1)")
    ablation_start: str = param(HEAD, choices=STAGES + (HEAD,), help="first stage trained in the ablations")
    activation: str = param("squared_norm", choices=("squared_norm", "norm"), help="Alg. 1 step 1 (paper: ‖f‖²)")
    suppression: str = param("similarity", choices=("weight", "similarity"),
                             help="Alg. 1 steps 5-6: paper 1 − w (its picks repeat), authors' code 1 − s")
    alpha: float = param(0.5, minimum=0, maximum=1,
                         help="distillation: weight of the cross-entropy (1 − α on the KL term), Eq. 1")
    temperature: float = param(4.0, help="distillation temperature T")
    num_workers: int = param(0, minimum=0, help="data-loading workers (real datasets)")
    n_explain: int = param(6, minimum=1, help="images in the map figures and the explorer")
    n_localize: int = param(128, minimum=1, help="test images scored against the ground truth, per explainer")
    efficiency_archs: tuple[str, ...] = param(("resnet18", "resnet50"), choices=RESNETS,
                                              help="backbones of the latency / memory measurement (Fig. 9)")
    efficiency_heads: tuple[str, ...] = param(("brnpa", "bcnn"), choices=("brnpa", "bcnn", "bcnn_einsum"))
    efficiency_size: int = param(112, minimum=32, help="image side of the latency / memory measurement")
    efficiency_batch: int = param(4, minimum=1)
    efficiency_steps: int = param(2, minimum=1, help="timed training steps (their median is reported)")
    efficiency_warmup: int = param(2, minimum=0, help="untimed first steps (oneDNN compiles kernels per shape)")
    efficiency_isolated: bool = param(True, help="measure each backbone × head in a fresh process")

    def __post_init__(self) -> None:
        early = [s for s in self.stride_one if STAGES.index(s) < STAGES.index(self.train_from)]
        if early:
            raise ValueError(
                f"stride_one stages {early} lie before train_from={self.train_from!r}: their output is cached "
                f"at low resolution. Set train_from to {early[0]!r} or earlier, or drop them from stride_one")
        if not self.stride_one:
            raise ValueError("stride_one must name at least one stage: it makes the high-resolution models")
        if "brnpa" not in self.efficiency_heads:
            raise ValueError("efficiency_heads must include 'brnpa' (the reference of the ratios)")
        if not 0 <= self.alpha <= 1 or self.temperature <= 0:
            raise ValueError(f"need 0 ≤ alpha ≤ 1 and temperature > 0, got {self.alpha}, {self.temperature}")


PROFILES = {
    "smoke": BRNPAConfig(profile="smoke", resolution=64, num_classes=4, train_per_class=8, test_per_class=4,
                         pretrain_epochs=1, epochs=1, ablation_epochs=1, n_seeds=1, ablation_seeds=2, batch_size=16,
                         n_explain=2, n_localize=4, efficiency_archs=("resnet18",), efficiency_size=64,
                         efficiency_batch=2, efficiency_steps=1, efficiency_warmup=1, efficiency_isolated=False),
    "cpu": BRNPAConfig(profile="cpu"),
    "gpu": BRNPAConfig(profile="gpu", needs_gpu=True, arch="resnet50", resolution=224, train_per_class=300,
                       test_per_class=50, pretrain_epochs=30, epochs=15, ablation_epochs=15, n_seeds=5,
                       ablation_seeds=5, batch_size=16, train_from=STEM, stride_one=("layer3", "layer4"),
                       ablation_start=STEM, num_workers=4, n_explain=12, n_localize=800, efficiency_archs=RESNETS,
                       efficiency_heads=("brnpa", "bcnn", "bcnn_einsum"), efficiency_size=448,
                       efficiency_batch=10, efficiency_steps=20),
    # Table 1 on CUB, FGVC-Aircraft and Stanford Cars: ImageNet ResNet-50 at 448 px, layers 3-4 at stride 1.
    "paper": BRNPAConfig(profile="paper", needs_gpu=True, datasets=("cub", "fgvc_aircraft", "stanford_cars"),
                         arch="resnet50", pretrained=True, resolution=448, pretrain_epochs=0, epochs=30,
                         ablation_epochs=30, n_seeds=3, ablation_seeds=3, batch_size=12, train_from=STEM,
                         stride_one=("layer3", "layer4"), ablation_start=STEM, num_workers=8, n_explain=12,
                         efficiency_archs=RESNETS, efficiency_heads=("brnpa", "bcnn", "bcnn_einsum"),
                         efficiency_size=448, efficiency_batch=10, efficiency_steps=100),
}

CHAPTER = Chapter(
    notebook="05_brnpa", title="BR-NPA", paper="Gomez et al., Improve the interpretability of attention",
    summary="non-parametric ranked attention is fast, accurate and high-resolution",
    paper_url="https://arxiv.org/abs/2106.02566", code_url="https://github.com/TristanGomez44/br_npa",
    profiles=PROFILES, parameters=("n_seeds", "epochs", "resolution"),
    metrics={
        **{f"accuracy/{k}_{r}": (0, 1) for k in KINDS for r in RESOLUTIONS},
        **{f"sparsity/{k}_{r}": (1, 1e6) for k in ("gap", "brnpa") for r in RESOLUTIONS},
        **{f"sparsity_norm/{k}_{r}": (0, 1) for k in ("gap", "brnpa") for r in RESOLUTIONS},
        **{f"sparsity_grid/{k}_high": (1, 1e6) for k in ("gap", "brnpa")},
        "accuracy/pretrain": (0, 1),
        **{f"table4/{name}": (0, 1) for name in TABLE4},
        **{f"table5/{'_'.join(map(str, s))}": (0, 1) for s in ((1, 2, 3),) + TABLE5_SUBSETS},
        **{f"hierarchy/disc_mass_map{k}": (0, 1) for k in (1, 2, 3)},
        "fig8/grad_var_ratio_bcnn_over_brnpa": (0, 1e12),
        "efficiency/time_ratio_bcnn_over_brnpa_resnet18": (0, 1e6),
    },
)


def seeds(config: BRNPAConfig) -> tuple[int, ...]:
    """The stage-B seeds: ``seed … seed + n_seeds − 1``."""
    return tuple(range(config.seed, config.seed + config.n_seeds))


def ablation_seeds(config: BRNPAConfig) -> tuple[int, ...]:
    """The ablations' seeds: ``seed … seed + ablation_seeds − 1``."""
    return tuple(range(config.seed, config.seed + config.ablation_seeds))
