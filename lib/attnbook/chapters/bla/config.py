"""Chapter 4 (BLA): configuration, profiles, the run plan and the paper's published numbers.

Torch-free (``attnbook list`` and the chapter registry import it): names that the library defines in
torch-importing modules are mirrored here, and ``tests/chapters/test_bla.py`` checks that each
mirror equals its source of truth.

Paper: Baumhauer et al. 2021, §4.1 (3 vs 8), §4.2 (Table 1, Figure 3), §4.3 (Table 2), §4.4.
"""
from __future__ import annotations

from dataclasses import dataclass

from attnbook.chapters import Chapter
from attnbook.config import ChapterConfig, param

PAPER = "BLA"
# The §4.2 variants BL, L2X-F, BLA, BLA-T, BLA-PH (mirror of attnbook.methods.bla.BLA_VARIANTS).
VARIANTS: tuple[str, ...] = ("bl", "l2x_f", "bla", "bla_t", "bla_ph")
# The backbones F can be (mirror of attnbook.models.backbones.BACKBONES).
BACKBONES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg16", "vgg19",
                              "alexnet", "efficientnet_b0")
LABELS = {"bl": "BL", "l2x_f": "L2X-F", "bla": "BLA", "bla_t": "BLA-T", "bla_ph": "BLA-PH",
          "bla_t_code": "BLA-T (code)", "bla_t_text": "BLA-T (γ = 1/n)", "cam": "CAM ≥ τ·max"}
CODE_THRESHOLD = "bla_t_code"  # BLA-T with the authors' relu(q − γ) (ablation, not a paper variant)
ALL_HEADS = (*VARIANTS, CODE_THRESHOLD)
# The heads that explain themselves with a hard selection δ (every head but the baseline BL).
EXPLANATION_HEADS = tuple(name for name in ALL_HEADS if name != "bl")
CAM = "cam"  # BL's CAM thresholded at τ·max: the post-hoc explanation compared with the heads
TEXT_GAMMA = "bla_t_text"  # 3 vs 8 with the text's γ = 1/n (ablation)
DIGITS_PAIR = (3, 8)


@dataclass(frozen=True)
class Dataset42:
    """One §4.2 dataset: the paper's letter and name, its synthetic analog (preset and the design changes
    that calibrate it: ``attnbook.data.synthetic.spec_for`` overrides) and its catalog name."""

    key: str
    paper_name: str
    preset: str
    real: str
    design: tuple[tuple[str, object], ...] = ()


# The analogs' designs, calibrated so that BL's accuracy at the cpu profile lies in BLAConfig.bl_band (not at
# a ceiling or near chance, where no comparison between heads can go either way). The presets' A — two classes
# differing in every part — puts every head at 100 % even with 10 training images and the strongest noise;
# its confusable-pair version differs in the wing's colour only, and pixel noise (amplitude 0.2, the maximum)
# keeps that difference hard to see. C keeps the preset's confusable pairs but only the head, body and wing: a
# pair that differs in the beak's shape alone (a few pixels at 112 px) stays near chance (BL ≈ 0.5–0.6 on such a
# two-class task), which held the preset's C at BL ≈ 0.66–0.70 whatever the training set's size.
DATASETS_42 = (
    Dataset42("A", "cats vs dogs", "two_class", "cats_vs_dogs",
              design=(("confusable_pairs", True), ("num_parts", 4), ("noise", 0.2))),
    Dataset42("B", "Stanford Dogs", "many_class", "stanford_dogs"),
    Dataset42("C", "CUB-200-2011", "fine_grained", "cub", design=(("num_parts", 3),)),
)
# Equivalence margins of the "no difference" claims (TOST), stated in every such ledger row. Accuracy: 1 point, a
# practical margin — wider than the gaps the paper reports as not significant on A and B (≤ 0.04 points) and
# for BLA-T vs BL on C (0.07), narrower than BLA-PH vs BLA-T on C (1.5 points). Rank correlation ρ: 0.1, a small
# correlation (the paper calls gaps of 0.10 on A and 0.14 on B "comparable").
ACC_MARGIN = 0.01
RHO_MARGIN = 0.1
PRETEXT_PRESET, PRETEXT_DATA_SEED, PRETEXT_TRAIN_SEED = "many_class", 1, 0  # the ImageNet stand-in

# Published numbers (BLA §4.1, Table 1, Table 2) — quoted in the ledger, never used as results.
PAPER_MNIST = {"bl": 0.994, "bla_t": 0.993, "p": 0.26}
PAPER_TABLE1 = {
    "acc": {"A": (0.9912, 0.9767, 0.9902, 0.9905, 0.9902), "B": (0.8357, 0.7730, 0.8234, 0.8269, 0.8265),
            "C": (0.6794, 0.6451, 0.6722, 0.6801, 0.6650)},
    "loss": {"A": (0.0237, 0.0800, 0.0349, 0.0742, 0.0562), "B": (0.5313, 1.4042, 0.8357, 1.1319, 1.0649),
             "C": (1.2988, 2.3237, 1.7809, 2.1510, 2.1714)},
}
PAPER_TABLE2 = {"A": (0.47, 0.37), "B": (0.33, 0.47), "C": (0.08, 0.37)}  # (LIME/CAM, LIME/BLA-T)
PAPER_PH_SE = {"A": "0.02 vs 0.01", "B": "0.07 vs 0.03", "C": "0.62 vs 0.06"}  # SE×100 of BLA-PH vs BLA-T


@dataclass(frozen=True)
class BLAConfig(ChapterConfig):
    """Chapter 4 settings. Data seeds are fixed; ``seed`` … ``seed + n_seeds − 1`` vary training only."""

    n_seeds: int = param(10, minimum=1, help="training seeds per setting (paper: 20; 1 for a --grid over seed)")
    epochs_override: int | None = param(None, minimum=1,
                                        help="override the epochs of every model a run trains (all stages)")
    method: str | None = param(None, choices=(None, *VARIANTS),
                               help="train only this §4.2 variant (BL, its starting point, always trains)")
    data: str = param("synthetic", choices=("synthetic", "real"),
                      help="synthetic: scikit-learn digits + testbed analogs; real: MNIST, cats vs dogs, "
                           "Stanford Dogs, CUB (paper profile)")
    theta: float = param(0.1, help="θ multiplying the bounded logits (paper: 0.1)")
    # §4.1
    digits_epochs: int = param(30, minimum=1, help="epochs of the 3-vs-8 CNNs (paper: 3 on 11,982 MNIST images)")
    text_gamma: bool = param(True, help="also train 3 vs 8 with the text's γ = 1/n (code-vs-paper ablation)")
    # §4.2
    arch: str = param("resnet18", choices=BACKBONES, help="frozen backbone F")
    pretrained: bool = param(False, help="ImageNet weights (paper) instead of pretraining on a synthetic task")
    resolution: int = param(112, minimum=32, help="image side in pixels")
    stride_one: tuple[str, ...] = param(("layer4",), help="ResNet stages at stride 1 (112 px → 7×7 map)")
    analog_train: tuple[int, ...] = param((20, 20, 30), help="training images per class of the analogs A, B, C "
                                          "(calibrated with DATASETS_42's designs: BL in bl_band at the cpu profile)")
    analog_test: tuple[int, ...] = param((250, 10, 20), help="test images per class of the analogs A, B, C")
    bl_band: tuple[float, ...] = param((0.75, 0.95), help="the band of BL's accuracy the analogs are calibrated "
                                       "into (cpu profile); an analog outside it is flagged in the ledger")
    unbiased: bool = param(True, help="analogs without habitat bias (p_bias = 1/K): the class is only on the object")
    pretext_classes: int = param(24, minimum=2, help="classes of the synthetic pretraining task")
    pretext_per_class: int = param(40, minimum=1, help="its training images per class")
    pretext_epochs: int = param(4, minimum=1, help="its epochs")
    head_epochs: tuple[int, ...] = param((24, 8, 8), help="epochs of BL and of each variant on A, B, C (paper 2, 5, "
                                         "5); A's 40 training images need more epochs for BL to converge")
    dropout: float = param(0.2, minimum=0, maximum=1, help="dropout of the head L (paper: 0.2)")
    l2x_k: int = param(8, minimum=1, help="L2X-F explanation size k (authors' code: 8)")
    cam_threshold: float = param(0.5, minimum=0, maximum=1,
                                 help="CAM cells ≥ τ·max form its hard explanation (ground-truth section)")
    amp: str = param("bf16", choices=("auto", "off", "bf16", "fp16"), help="autocast of the frozen backbone")
    # §4.3 and pictures
    lime_images: int = param(12, minimum=1, help="test images per dataset that LIME explains")
    lime_samples: int = param(200, minimum=8, help="LIME perturbations per image (paper: 1000)")
    explorer_images: int = param(2, minimum=1, help="images per dataset in the explorer widget")

    def __post_init__(self) -> None:
        if len(self.head_epochs) != len(DATASETS_42) or min(self.head_epochs) < 1:
            raise ValueError(f"head_epochs needs one positive epoch count per dataset A, B, C, got {self.head_epochs}")
        for name in ("analog_train", "analog_test"):
            sizes = getattr(self, name)
            if len(sizes) != len(DATASETS_42) or min(sizes) < 1:
                raise ValueError(f"{name} needs one positive count per dataset A, B, C, got {sizes}")
        if len(self.bl_band) != 2 or not 0.0 <= self.bl_band[0] < self.bl_band[1] <= 1.0:
            raise ValueError(f"bl_band needs two accuracies 0 ≤ low < high ≤ 1, got {self.bl_band}")
        if not 0.0 < self.cam_threshold <= 1.0 or self.theta <= 0:
            raise ValueError("need 0 < cam_threshold ≤ 1 and theta > 0")


PROFILES = {
    "smoke": BLAConfig(profile="smoke", n_seeds=2, digits_epochs=1, text_gamma=False, resolution=48,
                       analog_train=(6, 1, 2), analog_test=(3, 1, 1), pretext_classes=4, pretext_per_class=4,
                       pretext_epochs=1, head_epochs=(1, 1, 1), l2x_k=4, lime_images=2, lime_samples=16,
                       explorer_images=1),
    "cpu": BLAConfig(profile="cpu"),
    "gpu": BLAConfig(profile="gpu", needs_gpu=True, n_seeds=20, digits_epochs=100, resolution=224, stride_one=(),
                     analog_train=(100, 80, 120), analog_test=(500, 30, 40), pretext_classes=40,
                     pretext_per_class=100, pretext_epochs=10, head_epochs=(20, 20, 20), amp="auto", lime_images=50,
                     lime_samples=1000, explorer_images=4),
    "paper": BLAConfig(profile="paper", needs_gpu=True, datasets=("mnist", "cats_vs_dogs", "stanford_dogs", "cub"),
                       data="real", n_seeds=20, digits_epochs=3, arch="efficientnet_b0", pretrained=True,
                       resolution=224, stride_one=(), head_epochs=(2, 5, 5), amp="auto", lime_images=100,
                       lime_samples=1000, explorer_images=4),
}

CHAPTER = Chapter(
    notebook="04_bla", title="Bounded logit attention", paper="Baumhauer et al. 2021",
    summary="a bounded-logit explanation module explains at no cost in accuracy",
    paper_url="https://arxiv.org/abs/2105.14824", code_url="https://github.com/th-b/bla",
    profiles=PROFILES, parameters=("n_seeds", "epochs_override", "method"),
    metrics={
        "mnist/bl/acc": (0, 1), "mnist/bla_t/acc": (0, 1),
        **{f"table1/{d.key}/{v}/{m}": (0, 1) if m == "acc" else (0, 1e3)
           for d in DATASETS_42 for v in VARIANTS for m in ("acc", "loss")},
        **{f"truth/{d.key}/{v}/object_precision": (0, 1) for d in DATASETS_42 for v in ("l2x_f", "bla_t", "cam")},
        **{f"truth/{d.key}/object_chance": (0, 1) for d in DATASETS_42},
        **{f"table2/{d.key}/{pair}": (-1, 1) for d in DATASETS_42 for pair in ("lime_cam", "lime_bla_t")},
        **{f"ablation/{d.key}/acc_{mode}": (0, 1) for d in DATASETS_42 for mode in ("paper", "code")},
    },
)


# --- run plan (pure: which seeds, heads and epochs a run trains) --------------------------------------

def seeds(config: BLAConfig) -> tuple[int, ...]:
    """The training seeds of this run: ``seed, seed + 1, …`` (``n_seeds`` of them)."""
    return tuple(config.seed + k for k in range(config.n_seeds))


def variants(config: BLAConfig) -> tuple[str, ...]:
    """§4.2 variants this run trains: all, or BL plus ``method`` (every variant starts from BL's head)."""
    if config.method is None:
        return VARIANTS
    return ("bl",) if config.method == "bl" else ("bl", config.method)


def head_names(config: BLAConfig) -> tuple[str, ...]:
    """Heads trained per seed: the variants, plus BLA-T with the code's threshold when BLA-T is trained."""
    names = variants(config)
    return names + ((CODE_THRESHOLD,) if "bla_t" in names else ())


def digits_models(config: BLAConfig) -> tuple[str, ...]:
    """§4.1 models: baseline, BLA-T (when this run trains it) and BLA-T with the text's γ (the ablation)."""
    if "bla_t" not in variants(config):
        return ("bl",)
    return ("bl", "bla_t", TEXT_GAMMA) if config.text_gamma else ("bl", "bla_t")


def epochs_for(config: BLAConfig, default: int) -> int:
    """A stage's epochs: its own (``default``), or ``epochs_override`` when the run sets it."""
    return default if config.epochs_override is None else config.epochs_override
