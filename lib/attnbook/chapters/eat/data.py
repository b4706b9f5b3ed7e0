"""Chapter 1's data: the testbed's fine-grained analog with a habitat bias (``cpu``/``gpu``: two test splits, the
same objects on their own habitat and on another) or CUB-200-2011 with its class-level attributes and
segmentation masks (``paper``: one test split), as one :class:`EATTask`.

Chapter: ``nbs/01_eat.ipynb``. Configuration: :mod:`attnbook.chapters.eat.config`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from attnbook.chapters.eat.config import SPLITS, EATConfig
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
    def has_confusers(self) -> bool:
        """Whether the data set names a confusable class (and a separating attribute) for every class."""
        return bool((self.confusers >= 0).all())


def make_data(config: EATConfig) -> EATTask:
    """The task of ``config``: its first real data set if it names one, else the fine-grained testbed with
    ``p_bias`` (data seed 0: every training seed sees the same images)."""
    if config.datasets:
        return cub_task(config)
    bench = make_benchmark(spec_for("fine_grained", num_classes=config.num_classes,
                                    train_per_class=config.train_per_class, test_per_class=config.test_per_class,
                                    resolution=config.resolution, p_bias=config.p_bias, seed=0))
    return EATTask("synthetic", bench.train, {s: bench.split(s) for s in SPLITS}, bench.class_attributes,
                   bench.confusers, bench.info, bench.spec.key())


def cub_task(config: EATConfig) -> EATTask:
    """CUB-200-2011 at ``config.resolution`` (images squashed to a square, as the loaders do): class-level
    attributes = ``class_attribute_labels_continuous.txt`` ≥ 50 % of the annotators (the chapter's choice; the
    paper does not say how it binarised them), foreground masks for FAR. Needs the segmentation archive."""
    from attnbook.data.catalog import load_dataset

    if config.datasets != ("cub",):
        raise ValueError(f"chapter 1 reads CUB-200-2011 only (datasets=('cub',)), got {config.datasets}")
    options = dict(size=config.resolution, attributes="class_binary", masks=True, landmarks=False, bbox=False)
    train, test = (load_dataset("cub", split=split, **options) for split in ("train", "test"))
    classes = torch.as_tensor(train.class_attribute_matrix, dtype=torch.float32)
    return EATTask("cub", train, {"test": test}, classes, torch.full((len(classes),), -1), train.info,
                   f"cub-{config.resolution}-{len(train)}-{len(test)}")


def first_records(data: Dataset, n: int) -> dict[str, torch.Tensor]:
    """The first ``n`` samples of ``data`` stacked field by field (a synthetic split: slices of its tensors)."""
    if isinstance(data, SyntheticSplit):
        return {key: value[:n] for key, value in data.tensors.items()}
    samples = [data[i] for i in range(min(n, len(data)))]
    return {key: torch.stack([torch.as_tensor(s[key]) for s in samples]) for key in samples[0]}


def labels_of(data: Dataset) -> torch.Tensor:
    """Every sample's class label, in order."""
    if isinstance(data, SyntheticSplit):
        return data.tensors[R.LABEL]
    return torch.as_tensor([int(label) for label in data.labels])
