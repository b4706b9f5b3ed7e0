"""Chapter 1's data: the testbed's fine-grained analog with a habitat bias (``cpu``/``gpu``: two test splits, the
same objects on their own habitat and on another; a second, milder bias beside it), or the paper's data sets
(``paper``: CUB-200-2011 with its class-level attributes and segmentation masks, then SUN attributes with
class-level attributes and no masks; one test split each), each as one :class:`EATTask`.

Chapter: ``nbs/01_eat.ipynb``. Configuration: :mod:`attnbook.chapters.eat.config`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch.utils.data import Dataset

from attnbook.chapters.eat.config import SPLITS, SUN_CLASS_THRESHOLD, EATConfig
from attnbook.data import records as R
from attnbook.data.synthetic import SyntheticSplit, make_benchmark, spec_for


@dataclass
class EATTask:
    """What a run trains and tests on. ``class_attributes`` ``[C, Na]`` are the binary class-level attribute
    labels of Eq. 7; ``confusers`` ``[C]`` the class each one is confusable with (−1 where the data set does not
    say: real data); ``splits`` maps each test split's name to its data set; ``key`` identifies the data for
    checkpoints."""

    name: str
    train: Dataset
    splits: dict[str, Dataset]
    class_attributes: torch.Tensor
    confusers: torch.Tensor
    info: R.DatasetInfo
    key: str

    @property
    def num_classes(self) -> int:
        """Number of classes ``N_c``."""
        return self.info.num_classes

    @property
    def has_masks(self) -> bool:
        """Whether the test images come with object masks (FAR needs them; SUN attributes has none)."""
        return R.MASK in self.info.fields

    @property
    def has_confusers(self) -> bool:
        """Whether the data set names a confusable class (and a separating attribute) for every class."""
        return bool((self.confusers >= 0).all())


def make_data(config: EATConfig) -> EATTask:
    """The task of ``config``: its first real data set if it names one, else the fine-grained testbed with
    ``p_bias`` (data seed 0: every training seed sees the same images)."""
    if config.datasets:
        return real_task(config, config.datasets[0])
    return synthetic_task(config, config.p_bias)


def synthetic_task(config: EATConfig, p_bias: float) -> EATTask:
    """The fine-grained testbed at ``config``'s sizes with P(own habitat) = ``p_bias`` in training (data seed 0;
    the test splits do not depend on ``p_bias``)."""
    bench = make_benchmark(spec_for("fine_grained", num_classes=config.num_classes,
                                    train_per_class=config.train_per_class, test_per_class=config.test_per_class,
                                    resolution=config.resolution, p_bias=p_bias, seed=0))
    return EATTask("synthetic", bench.train, {s: bench.split(s) for s in SPLITS}, bench.class_attributes,
                   bench.confusers, bench.info, bench.spec.key())


def mild_bias_task(config: EATConfig) -> EATTask | None:
    """The same testbed with the milder bias ``p_bias_mild`` (beyond the paper), or ``None`` where the run reads
    real data or trains no mild-bias seeds."""
    if config.datasets or not config.mild_seeds:
        return None
    return replace(synthetic_task(config, config.p_bias_mild), name="mild_bias")


def real_task(config: EATConfig, name: str) -> EATTask:
    """The task of one of the paper's data sets (``cub`` or ``sun_attributes``)."""
    makers = {"cub": cub_task, "sun_attributes": sun_task}
    if name not in makers:
        raise ValueError(f"chapter 1 reads {' and '.join(makers)}, not {name!r}")
    return makers[name](config)


def other_tasks(config: EATConfig) -> dict[str, EATTask]:
    """The data sets of ``config`` after the first (``paper``: SUN attributes), trained base vs EAT for Tables
    II/III only; empty on the testbed."""
    return {name: real_task(config, name) for name in config.datasets[1:]}


def cub_task(config: EATConfig) -> EATTask:
    """CUB-200-2011 at ``config.resolution`` (images squashed to a square, as the loaders do): class-level
    attributes = ``class_attribute_labels_continuous.txt`` ≥ 50 % of the annotators (the chapter's choice; the
    paper does not say how it binarised them), foreground masks for FAR. Needs the segmentation archive."""
    from attnbook.data.catalog import load_dataset

    options = dict(size=config.resolution, attributes="class_binary", masks=True, landmarks=False, bbox=False)
    train, test = (load_dataset("cub", split=split, **options) for split in ("train", "test"))
    classes = torch.as_tensor(train.class_attribute_matrix, dtype=torch.float32)
    return EATTask("cub", train, {"test": test}, classes, torch.full((len(classes),), -1), train.info,
                   f"cub-{config.resolution}-{len(train)}-{len(test)}")


def sun_task(config: EATConfig, threshold: float = SUN_CLASS_THRESHOLD) -> EATTask:
    """SUN attributes (717 scene classes, 102 attributes) at ``config.resolution``: class-level attributes = the
    mean of the per-image votes over every image of the class ≥ ``threshold`` (the chapter's choice, the same
    "at least half of the annotators" rule as CUB; the paper says the authors "provided binary labels for 102
    class-attributes" without saying how); the split is the loader's seeded per-class 80/20 (the paper states
    none). No object masks: FAR is not measured on SUN (nor does the paper report it)."""
    from attnbook.data.catalog import load_dataset

    options = dict(size=config.resolution, attributes="class_binary", class_threshold=threshold, seed=0)
    train, test = (load_dataset("sun_attributes", split=split, **options) for split in ("train", "test"))
    classes = torch.as_tensor(train.class_attribute_matrix, dtype=torch.float32)
    return EATTask("sun_attributes", train, {"test": test}, classes, torch.full((len(classes),), -1), train.info,
                   f"sun-{config.resolution}-{threshold}-{len(train)}-{len(test)}")


def explained_indices(data: Dataset, n: int) -> torch.Tensor:
    """Which test images FAR, EAR and attribute accuracy score: the first ``n`` of a synthetic split (its
    classes interleave), ``n`` evenly spaced ones of a real data set (their files are sorted by class, so the
    first ``n`` would cover only the first classes)."""
    if isinstance(data, SyntheticSplit) or n >= len(data):
        return torch.arange(min(n, len(data)))
    return torch.linspace(0, len(data) - 1, n).round().long()


def first_records(data: Dataset, n: int) -> dict[str, torch.Tensor]:
    """The ``n`` samples of :func:`explained_indices` stacked field by field (a synthetic split: slices of its
    tensors)."""
    if isinstance(data, SyntheticSplit):
        return {key: value[:n] for key, value in data.tensors.items()}
    samples = [data[int(i)] for i in explained_indices(data, n)]
    return {key: torch.stack([torch.as_tensor(s[key]) for s in samples]) for key in samples[0]}


def labels_of(data: Dataset) -> torch.Tensor:
    """Every sample's class label, in order."""
    if isinstance(data, SyntheticSplit):
        return data.tensors[R.LABEL]
    return torch.as_tensor([int(label) for label in data.labels])
