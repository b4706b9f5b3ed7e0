"""PASCAL VOC 2012 as a multi-label classification dataset (Sharpen Focus Table 6: AP and AUC).

Targets come from ``ImageSets/Main/<class>_<split>.txt``: per image 1 (present), -1 (absent) or 0
(present only as "difficult" objects). torchvision reads VOC's detection XML, not these lists.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from attnbook.data.catalog import require_dataset
from attnbook.data.real.base import (
    DatasetFormatError,
    RecordDataset,
    SampleTransform,
    check_choice,
    prepare_hint,
    read_names,
    read_rows,
)
from attnbook.data.records import IMAGE, LABEL, DatasetInfo

CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
           "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


class VOC2012(RecordDataset):
    """VOC 2012 as multi-label records: ``label`` float [20] multi-hot.

    ``difficult``: how a 0 entry (only difficult instances) counts in ``label`` — ``"negative"`` (default)
    or ``"positive"``. Either way ``self.difficult`` [N, 20] marks those entries so that evaluation can
    ignore them, as the VOC devkit does.
    """

    name = "voc2012"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train",
                 size: int | tuple[int, int] | None = None, transform: SampleTransform | None = None, *,
                 difficult: Literal["negative", "positive"] = "negative") -> None:
        super().__init__(root, size, transform)
        check_choice(split, "split", ("train", "val", "trainval"))
        check_choice(difficult, "difficult", ("negative", "positive"))
        home = require_dataset(self.name, self.root)
        main = home / "ImageSets" / "Main"
        self.image_ids = read_names(main / f"{split}.txt", dataset=self.name)
        table = np.stack([self._class_column(main / f"{c}_{split}.txt") for c in CLASSES], axis=1)  # [N, 20]
        self.difficult = torch.tensor(table == 0)
        self.labels = torch.tensor((table == 1) | ((table == 0) & (difficult == "positive")), dtype=torch.float32)
        self.paths = [home / "JPEGImages" / f"{i}.jpg" for i in self.image_ids]
        self.info = DatasetInfo(name="PASCAL VOC 2012", num_classes=len(CLASSES), class_names=CLASSES,
                                fields=(IMAGE, LABEL), multilabel=True, extra={"split": split, "difficult": difficult})

    def _class_column(self, path: Path) -> np.ndarray:
        """One class list (``<image id> <1 | 0 | -1>``) in the order of the split's image list: [N]."""
        rows = read_rows(path, 2, dataset=self.name)
        values = np.array([int(v) for _, v in rows])
        if [name for name, _ in rows] != self.image_ids or not set(values.tolist()) <= {-1, 0, 1}:
            raise DatasetFormatError(f"{path}: its {len(rows)} rows do not match the {len(self.image_ids)} images "
                                     f"of the split list in order, or hold values other than -1/0/1; re-extract "
                                     f"with: {prepare_hint(self.name)}")
        return values
