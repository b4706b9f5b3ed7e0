"""iNaturalist 2017 (Van Horn et al. 2018): 5,089 species, 579,184 train / 95,986 val images, with COCO-style
json annotations; a subset carries boxes (Region Grouping Tables 5–6: accuracy, pointing game).

Layout: ``train_val_images/<super>/<species>/<file>.jpg``, ``train2017.json``, ``val2017.json`` and,
for boxes, ``train_2017_bboxes.json`` / ``val_2017_bboxes.json`` (or ``bbox`` fields in the main json).
"""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict
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
    boxes_from_xywh,
    check_choice,
    enclosing_box,
    lookup,
    prepare_hint,
    require_file,
)
from attnbook.data.records import BBOX, IMAGE, LABEL, MASK, DatasetInfo


def read_json(path: Path, dataset: str) -> dict:
    """A json file; a truncated or malformed one raises :class:`DatasetFormatError` naming file and line."""
    try:
        with open(require_file(path, dataset), encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise DatasetFormatError(f"{path}, line {err.lineno}: {err.msg}; the file looks truncated or corrupt — "
                                 f"re-extract it with: {prepare_hint(dataset)}") from None


def boxes_by_file(coco: dict) -> dict[str, np.ndarray]:
    """The ``bbox`` annotations of a COCO-style dict grouped by image file name: {file: [K, 4] (x0, y0, x1, y1)}."""
    files = {image["id"]: image["file_name"] for image in coco["images"]}
    grouped: dict[str, list] = defaultdict(list)
    for ann in coco["annotations"]:
        if "bbox" in ann:
            grouped[files[ann["image_id"]]].append(ann["bbox"])
    return {f: boxes_from_xywh(np.asarray(b, dtype=np.float64)) for f, b in grouped.items()}


def box_union_mask(boxes: np.ndarray, height: int, width: int) -> Tensor:
    """bool [H, W]: the pixels covered by any of ``boxes`` [K, 4] (pixel i spans [i, i+1))."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes:
        mask[max(0, math.floor(y0)):max(0, math.ceil(y1)), max(0, math.floor(x0)):max(0, math.ceil(x1))] = True
    return mask


class INaturalist2017(RecordDataset):
    """iNaturalist 2017 as records: ``image``, ``label`` (5,089 species, by category id order).

    ``with_boxes=True`` keeps only the images with boxes and adds ``bbox`` (enclosing all boxes) and
    ``mask`` (the union of the boxes: the pointing game's "inside an object box").
    """

    name = "inat2017"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train",
                 size: int | tuple[int, int] | None = None, transform: SampleTransform | None = None, *,
                 with_boxes: bool = False) -> None:
        super().__init__(root, size, transform)
        check_choice(split, "split", ("train", "val"))
        home = require_dataset(self.name, self.root)
        main_file = home / f"{split}2017.json"
        coco = read_json(main_file, self.name)
        categories = sorted(coco["categories"], key=lambda c: c["id"])
        class_index = {c["id"]: k for k, c in enumerate(categories)}
        label_of = {ann["image_id"]: class_index[ann["category_id"]] for ann in coco["annotations"]}
        files = [(image["file_name"], lookup(label_of, image["id"], main_file, self.name)) for image in coco["images"]]
        fields = [IMAGE, LABEL]
        self._box_lists: list[np.ndarray] = []
        if with_boxes:
            boxes = self._boxes(home, split, coco)
            files = [(f, y) for f, y in files if f in boxes]
            self._box_lists = [boxes[f] for f, _ in files]
            self.boxes = np.stack([enclosing_box(b) for b in self._box_lists]) if files else np.zeros((0, 4))
            fields += [BBOX, MASK]
        self.paths = [home / f for f, _ in files]
        self.labels = [y for _, y in files]
        self.info = DatasetInfo(
            name="iNaturalist 2017", num_classes=len(categories), class_names=tuple(c["name"] for c in categories),
            fields=tuple(fields), extra={"split": split, "with_boxes": with_boxes,
                                         "supercategories": tuple(c.get("supercategory", "") for c in categories)})

    def _boxes(self, home: Path, split: str, coco: dict) -> dict[str, np.ndarray]:
        box_file = home / f"{split}_2017_bboxes.json"
        boxes = boxes_by_file(read_json(box_file, self.name)) if box_file.exists() else boxes_by_file(coco)
        if not boxes:
            raise DatasetMissingError(
                f"iNaturalist 2017 boxes not found: {box_file} is missing and {split}2017.json has no 'bbox'. "
                f"Get them with: {prepare_hint(self.name)} ({split}_2017_bboxes.zip)")
        return boxes

    def _ground_truth(self, index: int, image: Tensor) -> dict[str, Tensor]:
        out = super()._ground_truth(index, image)
        if self._box_lists:
            out[MASK] = box_union_mask(self._box_lists[index], image.shape[1], image.shape[2])  # [H, W]
        return out
