"""Stanford Dogs (Khosla et al. 2011): 20,580 images of 120 breeds, 12,000 train / 8,580 test (BLA dataset B).

Layout: ``Images/<wnid-breed>/<file>.jpg``, ``Annotation/<wnid-breed>/<file>`` (ImageNet-style XML boxes)
and the split lists ``train_list.mat`` / ``test_list.mat`` (``lists/`` or the top folder).
torchvision has no loader for it.

Box convention: the XML files come from ImageNet's bounding-box release and, like it, give **0-based inclusive**
pixel indices — ``xmax = width - 1`` for a box touching the right edge (e.g. ``n02085620_10131``: width 395,
``xmax`` 393; ImageNet boxes with ``<ymin>0</ymin>`` exist, impossible in a 1-based convention). The loader
returns the book's ``(x0, y0, x1, y1)`` with x1/y1 exclusive (``xmax + 1``), clipped to the image (so that
an annotation reaching past the edge cannot give a box outside it).
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from attnbook.data.catalog import require_dataset
from attnbook.data.real.base import (
    DatasetFormatError,
    DatasetMissingError,
    RecordDataset,
    SampleTransform,
    box_from_zero_based,
    check_choice,
    clip_box,
    enclosing_box,
    first_existing,
    prepare_hint,
    read_mat,
)
from attnbook.data.records import BBOX, IMAGE, LABEL, DatasetInfo


def read_xml_boxes(path: Path, dataset: str) -> np.ndarray:
    """All ``<object><bndbox>`` boxes of an ImageNet/VOC-style XML file as [K, 4] (x0, y0, x1, y1).

    The files give 0-based inclusive pixel indices (converted by :func:`box_from_zero_based`; see the module
    docstring); the boxes are not clipped here (the image size is needed: :meth:`StanfordDogs._ground_truth`).
    """
    try:
        tree = ET.parse(path)
    except FileNotFoundError:
        raise DatasetMissingError(f"annotation {path} is missing; re-extract with: {prepare_hint(dataset)}") from None
    except ET.ParseError as err:
        raise DatasetFormatError(f"{path}: {err}; re-extract it with: {prepare_hint(dataset)}") from err
    try:
        boxes = [box_from_zero_based(*(float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")))
                 for obj in tree.getroot().iter("object")]
    except (TypeError, ValueError) as err:  # a missing or non-numeric corner
        raise DatasetFormatError(f"{path}: malformed <bndbox> ({err}); re-extract it with: "
                                 f"{prepare_hint(dataset)}") from None
    if not boxes:
        raise DatasetFormatError(f"{path} has no <object><bndbox>; re-extract it with: {prepare_hint(dataset)}")
    return np.stack(boxes)


class StanfordDogs(RecordDataset):
    """Stanford Dogs as records: ``image``, ``label`` (120 breeds), ``bbox`` (enclosing all annotated dogs,
    0-based exclusive corners clipped to the image)."""

    name = "stanford_dogs"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train",
                 size: int | tuple[int, int] | None = None, transform: SampleTransform | None = None, *,
                 bbox: bool = True) -> None:
        super().__init__(root, size, transform)
        check_choice(split, "split", ("train", "test"))
        self.home = home = require_dataset(self.name, self.root)
        lists = read_mat(first_existing(home, (f"lists/{split}_list.mat", f"{split}_list.mat")), self.name)
        files = [str(f) for f in np.atleast_1d(lists["file_list"])]
        self.labels = [int(v) - 1 for v in np.atleast_1d(lists["labels"])]
        self.paths = [home / "Images" / f for f in files]
        self._annotations = [home / "Annotation" / str(a) for a in np.atleast_1d(lists["annotation_list"])]
        folders = sorted(d.name for d in (home / "Images").iterdir() if d.is_dir())  # label k+1 = k-th wnid
        class_names = tuple(f.split("-", 1)[-1] for f in folders)
        num_classes = len(class_names)
        self._bbox = bbox
        self.info = DatasetInfo(name="Stanford Dogs", num_classes=num_classes, class_names=class_names,
                                fields=(IMAGE, LABEL, BBOX) if bbox else (IMAGE, LABEL), extra={"split": split})

    def _ground_truth(self, index: int, image: Tensor) -> dict[str, Tensor]:
        if not self._bbox:
            return {}
        boxes = read_xml_boxes(self._annotations[index], self.name)  # [K, 4]
        box = clip_box(enclosing_box(boxes), width=image.shape[2], height=image.shape[1])  # image [3, H, W]
        return {BBOX: torch.tensor(box, dtype=torch.float32)}
