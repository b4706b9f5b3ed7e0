"""The record every dataset in attnbook yields — synthetic benchmark and real datasets alike.

A *sample* is a plain ``dict[str, Tensor]`` whose keys come from the vocabulary below, so that
``torch.utils.data.default_collate`` batches it and chapters switch datasets by a parameter.
A dataset yields the same keys for every sample; keys it has no ground truth for are absent
(never ``None``). ``DatasetInfo`` says which keys a dataset provides.

Conventions (per sample, before batching):

==================  ===================  ==============================================================
key                 dtype / shape        meaning
==================  ===================  ==============================================================
``image``           float32 [3, H, W]    RGB in [0, 1] (normalisation is the model's job)
``label``           int64 []             class index (single-label) …
                    float32 [C]          … or multi-hot over C classes (multi-label datasets)
``attributes``      float32 [A]          attribute vector in [0, 1] (binary, or certainty-weighted)
``mask``            bool [H, W]          foreground (object) mask
``part_masks``      bool [P, H, W]       one mask per named part
``landmarks``       float32 [P, 2]       part / landmark centres, (x, y) in pixels of ``image``
``landmark_visible`` bool [P]            whether each landmark is visible
``bbox``            float32 [4]          object box (x0, y0, x1, y1) in pixels, x1/y1 exclusive
``disc_mask``       bool [H, W]          mask of the part that separates the class from its confuser
``confuser``        int64 []             the most confusable other class (-1 if none)
``bias_aligned``    bool []              background agrees with the class's habitat (testbed only)
``index``           int64 []             position of the sample in its dataset
==================  ===================  ==============================================================
"""
from __future__ import annotations

from dataclasses import dataclass, field

IMAGE = "image"
LABEL = "label"
ATTRIBUTES = "attributes"
MASK = "mask"
PART_MASKS = "part_masks"
LANDMARKS = "landmarks"
LANDMARK_VISIBLE = "landmark_visible"
BBOX = "bbox"
DISC_MASK = "disc_mask"
CONFUSER = "confuser"
BIAS_ALIGNED = "bias_aligned"
INDEX = "index"

FIELDS: tuple[str, ...] = (
    IMAGE, LABEL, ATTRIBUTES, MASK, PART_MASKS, LANDMARKS, LANDMARK_VISIBLE, BBOX, DISC_MASK,
    CONFUSER, BIAS_ALIGNED, INDEX,
)


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is and which ground truth its samples carry."""

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    fields: tuple[str, ...]
    multilabel: bool = False
    attribute_names: tuple[str, ...] = ()
    part_names: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        unknown = set(self.fields) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown sample fields {sorted(unknown)}; valid: {list(FIELDS)}")
        if IMAGE not in self.fields or LABEL not in self.fields:
            raise ValueError("every dataset yields at least 'image' and 'label'")
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")

    def has(self, key: str) -> bool:
        """Whether the dataset's samples carry the field ``key``."""
        return key in self.fields
