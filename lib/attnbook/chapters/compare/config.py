"""Chapter 6 — Where do they look?: configuration and profiles (no torch import).

Chapter: ``nbs/06_compare.ipynb`` (issue 14). Every trainable attention of the book's papers that builds on the
shared trunk (BLA, BLA-T, L2X-F, BR-NPA, B-CNN, EAT, Region Grouping, Sharpen Focus) and the post-hoc explainers
on the plain CNN (CAM,
Grad-CAM, Grad-CAM++, guided backprop, guided Grad-CAM, LIME), with a random and an edge floor, scored by
:mod:`attnbook.evaluate` on the same test images of the testbed's fine-grained analog with a habitat bias.
"""
from __future__ import annotations

from dataclasses import dataclass

from attnbook.chapters import Chapter
from attnbook.config import ChapterConfig, param

SPLITS = ("test_aligned", "test_conflicting")
# Trainable heads on the shared trunk (attnbook.methods.registry.make_head kinds) and the paper each comes from.
HEADS = {"bla": "BLA", "bla_t": "BLA", "l2x_f": "BLA", "brnpa": "BR-NPA", "bcnn": "BR-NPA", "eat": "EAT",
         "region_grouping": "Region Grouping", "sharpen_focus": "Sharpen Focus"}
# Heads whose attend(features, labels=…) gives the map of a requested class (scored per class; the others' maps
# are class-agnostic): Sharpen Focus's target attention A_ch (§3.1), map 0.
CLASS_AWARE = ("sharpen_focus",)
# Heads with several part maps, for the landmark error from map centroids: head kind -> index of the first part
# map in its Attention's maps (EAT: map 0 is the class map, then one map per attribute head).
PART_MAPS = {"brnpa": 0, "bcnn": 0, "eat": 1, "region_grouping": 0}
LANDMARK_BASELINES = ("activation", "random")  # the plain CNN's top-K activation channels; random maps
# Heads whose scored map is an extras entry of their Attention rather than its maps: Region Grouping's maps Q are a
# partition of the pixels (they sum to 1), its pixel attribution Q^T a is extras["attribution"].
SCORED_EXTRAS = {"region_grouping": "attribution"}
POSTHOC = ("cam", "gradcam", "gradcam++", "guided_backprop", "guided_gradcam", "lime")  # on the plain CNN
FLOORS = ("random", "edges")
CEILING = "oracle"  # importances = the model's own single-deletion logit drops (FunnyBirds quantities only)
# Methods of the book not run in this chapter yet, with the reason (a ledger row and a table row each).
NOT_RUN: dict[str, str] = {}
# FunnyBirds' published reference row (Hesse et al., ICCV 2023, Table 2: ResNet-50 + Input×Gradient).
FUNNYBIRDS_REFERENCE = {"accuracy": 0.998, "csdc": 0.735, "pc": 0.602, "dc": 0.532, "d": 0.544, "bi": 0.998,
                        "sd": 0.546, "ts": 0.806}
# Published comparative numbers the claims section checks (papers.md).
PAPER = {
    "bla_user_study": "BLA-T preferred over (Grad-)CAM 71 % vs 14 %; over L2X-F 53 % vs 22 %",
    "rg_table6": "pointing-game error (%): CAM/Grad-CAM 11.8, Guided Grad-CAM 8.2, Region Grouping 7.6",
    "brnpa_table6": "sparsity at 14×14: B-CNN 11.2, BR-NPA 7.46; at 56×56 distilled: B-CNN 19.6, BR-NPA 21.3",
    "brnpa_table1": "accuracy CUB: B-CNN 84.6, BR-NPA 85.5",
    "rg_table2": "CelebA landmark error (%): DFF 31.3, SCOPS 15.0, Region Grouping 8.4",
}


@dataclass(frozen=True)
class CompareConfig(ChapterConfig):
    """Chapter 6 settings. Data seed fixed (0); training seeds are seed … seed+n_seeds−1; one trunk per seed."""

    num_classes: int = param(10, minimum=2, help="classes (confusable pairs)")
    train_per_class: int = param(50, minimum=1)
    test_per_class: int = param(20, minimum=1)
    resolution: int = param(48, minimum=32, help="image side in pixels")
    p_bias: float = param(0.9, minimum=0, maximum=1, help="P(own habitat) in the training split")
    width: int = param(16, minimum=4, help="channels of the small CNN trunk's first block (×4 at the last)")
    n_seeds: int = param(3, minimum=1, help="training seeds (the unit of the paired tests)")
    epochs: int = param(6, minimum=1, help="epochs of the plain CNN (trunk + GAP head)")
    head_epochs: int = param(6, minimum=1, help="epochs of each attention head on the frozen trunk's features")
    batch_size: int = param(32, minimum=1)
    lr: float = param(2e-3)
    weight_decay: float = param(1e-4)
    n_explain: int = param(48, minimum=2, help="test images scored per split (FunnyBirds protocol)")
    n_sanity: int = param(6, minimum=1, help="images of the cascading-randomisation check")
    n_fit: int = param(200, minimum=8, help="training images the landmark regressors are fitted on")
    label_randomisation: bool = param(True, help="train every model again on permuted labels (Adebayo §3.2)")
    heads: tuple[str, ...] = param(tuple(HEADS), choices=tuple(HEADS), help="attention heads trained")
    explainers: tuple[str, ...] = param(POSTHOC, choices=POSTHOC, help="post-hoc explainers on the plain CNN")
    lime_samples: int = param(200, minimum=10, help="LIME perturbations per image (7×7 grid)")


_GPU = dict(needs_gpu=True, num_classes=16, train_per_class=200, test_per_class=40, resolution=96, width=32,
            n_seeds=10, epochs=20, head_epochs=10, n_explain=300, n_sanity=16, lime_samples=1000)
PROFILES = {
    "smoke": CompareConfig(profile="smoke", num_classes=4, train_per_class=12, test_per_class=4, resolution=32,
                           width=8, n_seeds=2, epochs=1, head_epochs=1, n_explain=6, n_sanity=2, n_fit=32,
                           label_randomisation=False,  # its path is tested in tests/chapters/test_compare.py
                           explainers=POSTHOC[:-1],
                           lime_samples=20),
    # LIME (4 targets × lime_samples forward passes per image) does not fit the cpu budget: gpu/paper only.
    # Calibrated off the ceiling: at p_bias 0.9 the plain CNN is a habitat classifier (bias-aligned 1.0,
    # bias-conflicting 0.0); at 0.3 (own habitat 3× as likely as any other) seed 0 reached 0.985 / 0.40.
    "cpu": CompareConfig(profile="cpu", p_bias=0.3, epochs=4, head_epochs=4, n_explain=32, n_sanity=4,
                         explainers=POSTHOC[:-1]),
    "gpu": CompareConfig(profile="gpu", **_GPU),
    # FunnyBirds' data cannot be downloaded here: the paper profile runs the testbed at the gpu scale.
    "paper": CompareConfig(profile="paper", **_GPU),
}

CHAPTER = Chapter(
    notebook="06_compare", title="Where do they look?",
    paper="all five papers and the post-hoc explainers; protocol of Hesse et al., *FunnyBirds* (ICCV 2023)",
    summary="every method on the same images, judged by in-domain interventions with causal ground truth",
    paper_url="https://arxiv.org/abs/2308.06248",
    profiles=PROFILES, parameters=("n_seeds", "epochs", "head_epochs", "n_explain"),
    metrics={"accuracy/gap/test_aligned": (0, 1), "accuracy/gap/test_conflicting": (0, 1),
             "completeness/gradcam": (0, 1), "completeness/random": (0, 1), "mass_object/gradcam": (0, 1),
             "mass_object/edges": (0, 1), "completeness/bla_t": (0, 1), "sd/gradcam": (0, 1)},
)
