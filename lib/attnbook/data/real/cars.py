"""Stanford Cars (Krause et al. 2013): 16,185 images of 196 models, 8,144 train / 8,041 test (BR-NPA Table 1).

Indexed by torchvision's ``StanfordCars`` (layout ``stanford_cars/``: ``devkit/``, ``cars_train/``,
``cars_test/``, ``cars_test_annos_withlabels.mat``); boxes from the same annotation ``.mat`` files.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torchvision.datasets import StanfordCars as TorchvisionCars

from attnbook.data.catalog import require_dataset
from attnbook.data.real.base import RecordDataset, SampleTransform, box_from_one_based, check_choice, lookup, read_mat
from attnbook.data.records import BBOX, IMAGE, LABEL, DatasetInfo

ANNOTATIONS = {"train": "devkit/cars_train_annos.mat", "test": "cars_test_annos_withlabels.mat"}


class StanfordCars(RecordDataset):
    """Stanford Cars as records: ``image``, ``label`` (196 models), ``bbox``."""

    name = "stanford_cars"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train",
                 size: int | tuple[int, int] | None = None, transform: SampleTransform | None = None, *,
                 bbox: bool = True) -> None:
        super().__init__(root, size, transform)
        check_choice(split, "split", tuple(ANNOTATIONS))
        home = require_dataset(self.name, self.root)
        index = TorchvisionCars(str(self.root), split=split, download=False, loader=str)  # items: (path, label)
        items = [index[k] for k in range(len(index))]
        self.paths = [Path(p) for p, _ in items]
        self.labels = [int(y) for _, y in items]
        if bbox:
            mat_file = home / ANNOTATIONS[split]
            table = {str(a["fname"]): [float(a[f"bbox_{k}"]) for k in ("x1", "y1", "x2", "y2")]
                     for a in np.atleast_1d(read_mat(mat_file, self.name)["annotations"])}
            self.boxes = np.stack([box_from_one_based(*lookup(table, p.name, mat_file, self.name))
                                    for p in self.paths])
        self.info = DatasetInfo(name="Stanford Cars", num_classes=len(index.classes),
                                class_names=tuple(str(c) for c in index.classes),
                                fields=(IMAGE, LABEL, BBOX) if bbox else (IMAGE, LABEL), extra={"split": split})

