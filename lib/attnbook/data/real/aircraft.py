"""FGVC-Aircraft (Maji et al. 2013): 10,000 images, 100 variants / 70 families / 30 manufacturers
(BR-NPA Table 1). Indexed by torchvision's ``FGVCAircraft``; boxes from ``data/images_box.txt``."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torch import Tensor
from torchvision.datasets import FGVCAircraft as TorchvisionAircraft

from attnbook.data.catalog import require_dataset
from attnbook.data.real.base import (
    RecordDataset,
    SampleTransform,
    box_from_one_based,
    check_choice,
    load_image,
    lookup,
    read_rows,
)
from attnbook.data.records import BBOX, IMAGE, LABEL, DatasetInfo

BANNER = 20  # rows of copyright banner at the bottom of every image


class FGVCAircraft(RecordDataset):
    """FGVC-Aircraft as records: ``image``, ``label`` at ``annotation_level`` and ``bbox``.

    ``split``: ``train``, ``val``, ``trainval`` or ``test`` (official). ``remove_banner`` crops the bottom
    20-pixel copyright banner (the box is clipped to the remaining image).
    """

    name = "fgvc_aircraft"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "trainval",
                 size: int | tuple[int, int] | None = None, transform: SampleTransform | None = None, *,
                 annotation_level: str = "variant", remove_banner: bool = False, bbox: bool = True) -> None:
        super().__init__(root, size, transform)
        check_choice(split, "split", ("train", "val", "trainval", "test"))
        check_choice(annotation_level, "annotation_level", ("variant", "family", "manufacturer"))
        home = require_dataset(self.name, self.root)
        index = TorchvisionAircraft(str(self.root), split=split, annotation_level=annotation_level,
                                    download=False, loader=str)  # items are (path, label)
        items = [index[k] for k in range(len(index))]
        self.paths = [Path(p) for p, _ in items]
        self.labels = [y for _, y in items]
        self.remove_banner = remove_banner
        if bbox:
            box_file = home / "data" / "images_box.txt"
            table = {r[0]: r[1:] for r in read_rows(box_file, 5, dataset=self.name)}  # name: xmin ymin xmax ymax
            self.boxes = np.stack([box_from_one_based(*map(float, lookup(table, p.stem, box_file, self.name)))
                                    for p in self.paths])
        self.info = DatasetInfo(
            name="FGVC-Aircraft", num_classes=len(index.classes), class_names=tuple(index.classes),
            fields=(IMAGE, LABEL, BBOX) if bbox else (IMAGE, LABEL),
            extra={"split": split, "annotation_level": annotation_level, "remove_banner": remove_banner})

    def _image(self, index: int) -> Tensor:
        image = load_image(self.paths[index], self.name)  # [3, H, W]
        return image[:, :-BANNER] if self.remove_banner else image

    def _ground_truth(self, index: int, image: Tensor) -> dict[str, Tensor]:
        out = super()._ground_truth(index, image)
        if BBOX in out:
            out[BBOX][3] = out[BBOX][3].clamp(max=image.shape[1])  # inside the (banner-less) image
        return out
