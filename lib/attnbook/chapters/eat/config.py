"""Chapter 1 — EAT: configuration and profiles (no torch import: ``attnbook list`` stays instant).

Chapter: ``nbs/01_eat.ipynb``: Xu et al., "Where is the Model Looking At? – Concentrate and Explain the
Network Attention" (IEEE JSTSP 2020). Base model vs EAT on the testbed's fine-grained analog with a habitat
bias in training, over several training seeds; FAR, EAR checked against the known class attributes.
"""
from __future__ import annotations

from dataclasses import dataclass

from attnbook.chapters import Chapter
from attnbook.config import ChapterConfig, param

INTEGRATORS = ("cnn", "linear")  # attnbook.methods.eat.INTEGRATORS
SPLITS = ("test_aligned", "test_conflicting")
MODELS = ("base", "eat")
# Choices the paper leaves open, ablated against the default EAT (same seeds): name -> (g_i, λ, η).
# "aux": attributes as an auxiliary loss only (no g_i, c = c_p); the λ/η grid stays inside the paper's [0.5, 1.5].
ABLATIONS = {"aux": (None, 1.0, 0.0), "lam0.5_eta1.5": ("cnn", 0.5, 1.5), "lam1.5_eta0.5": ("cnn", 1.5, 0.5)}
ARCHS = ("small", "resnet18", "resnet50")  # f_img: the small CNN trained from scratch, or a torchvision ResNet


@dataclass(frozen=True)
class EATConfig(ChapterConfig):
    """Chapter 1 settings. The benchmark's data seed is fixed (0); training seeds are seed … seed+n_seeds−1."""

    num_classes: int = param(10, minimum=2, help="classes (pairs of confusable classes)")
    train_per_class: int = param(60, minimum=1)
    test_per_class: int = param(20, minimum=1)
    resolution: int = param(64, minimum=32, help="image side in pixels")
    p_bias: float = param(0.9, minimum=0, maximum=1, help="P(own habitat) in the training split")
    width: int = param(32, minimum=4, help="channels of the small CNN trunk's first block (×4 at the last)")
    n_seeds: int = param(3, minimum=2, help="training seeds per model (the unit of the paired tests)")
    epochs: int = param(8, minimum=1)
    batch_size: int = param(32, minimum=1)
    lr: float = param(2e-3)
    weight_decay: float = param(1e-4)
    lam: float = param(1.0, minimum=0, help="λ of Eq. 6 (weight of c_p)")
    eta: float = param(1.0, minimum=0, help="η of Eq. 6 (weight of c_i)")
    attribute_weight: float = param(1.0, minimum=0, help="weight of l_a beside l_c")
    integrator: str = param("cnn", choices=INTEGRATORS, help="g_i: 3-layer CNN (paper) or linear")
    embed_dim: int = param(16, minimum=1, help="D_e of Eq. 3")
    head_hidden: int = param(32, minimum=1, help="channels of the 1×1 convs in g_c and each g_a^i")
    top_k: int = param(3, minimum=1, help="attributes in an EAR explanation (paper: 3)")
    n_explain: int = param(100, minimum=2, help="test objects scored for FAR and EAR (each split)")
    arch: str = param("small", choices=ARCHS, help="f_img: small CNN (width) or a ResNet trunk")
    pretrained: bool = param(False, help="start a ResNet trunk from ImageNet weights (paper profile)")
    num_workers: int = param(0, minimum=0, help="data-loading workers (real data)")
    ablations: tuple[str, ...] = param((), choices=tuple(ABLATIONS), help="variants trained beside base and EAT")
    ablation_seeds: int = param(6, minimum=2, help="the first training seeds the ablations train on (≤ n_seeds; "
                                                   "6 is the fewest a two-sided signed-rank test can decide on)")


PROFILES = {
    "smoke": EATConfig(profile="smoke", num_classes=4, train_per_class=10, test_per_class=4, resolution=32,
                       width=8, n_seeds=2, epochs=1, n_explain=8, ablations=("aux",), ablation_seeds=2),
    "cpu": EATConfig(profile="cpu", resolution=48, width=16, head_hidden=16, train_per_class=50, epochs=6, n_seeds=10,
                     ablations=tuple(ABLATIONS)),
    "gpu": EATConfig(profile="gpu", needs_gpu=True, devices=0, num_classes=16, train_per_class=300, test_per_class=50,
                     resolution=128, width=64, n_seeds=10, epochs=30, n_explain=400, ablations=tuple(ABLATIONS),
                     ablation_seeds=10),
    # CUB-200-2011 with an ImageNet ResNet-18 (Table II–IV's ResNet18 rows); 224 px and the fine-tuning schedule
    # are this book's choices (the paper gives neither).
    "paper": EATConfig(profile="paper", needs_gpu=True, devices=0, datasets=("cub",), num_classes=200, resolution=224,
                       arch="resnet18", pretrained=True, head_hidden=256, embed_dim=32, n_seeds=3, epochs=30,
                       batch_size=32, lr=1e-4, num_workers=8, n_explain=1000),
}

CHAPTER = Chapter(
    notebook="01_eat", title="EAT", paper="Xu et al., *Where is the model looking at?* (IEEE JSTSP 2020)",
    summary="attribute multi-task learning moves attention onto the object (FAR) and explains decisions in words",
    paper_url="https://arxiv.org/abs/2009.13862",
    profiles=PROFILES, parameters=("n_seeds", "epochs", "p_bias", "lam", "eta"),
    metrics={"accuracy/base/test_aligned": (0, 1), "accuracy/eat/test_aligned": (0, 1),
             "accuracy/base/test_conflicting": (0, 1), "accuracy/eat/test_conflicting": (0, 1),
             "attributes/eat/accuracy": (0, 1), "far/base/median": (0, 1e6), "far/eat/median": (0, 1e6),
             "ear/eat/true_hit": (0, 1), "ear/random/true_hit": (0, 1), "ear/eat/disc_hit": (0, 1)},
)
