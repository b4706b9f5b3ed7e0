"""CUB-200-2011 (Wah et al. 2011): 200 bird species, 11,788 images (5,994 train / 5,794 test), with
boxes, 15 part locations with visibility, 312 attributes and (separate archive) segmentation masks.

Used by all five papers: EAT (class-level attributes, masks for FAR), Region Grouping (landmarks,
normalised by the box), BLA (dataset C), BR-NPA and Sharpen Focus (accuracy).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from attnbook.data.catalog import require_dataset
from attnbook.data.real.base import (
    DatasetFormatError,
    RecordDataset,
    SampleTransform,
    boxes_from_xywh,
    check_choice,
    expect_rows,
    first_existing,
    load_mask,
    lookup,
    prepare_hint,
    read_numeric,
    read_rows,
)
from attnbook.data.records import ATTRIBUTES, BBOX, IMAGE, LABEL, LANDMARK_VISIBLE, LANDMARKS, MASK, DatasetInfo

AttributeMode = Literal["image", "class", "class_binary"]
SPLITS = ("train", "test", "all")
ATTRIBUTE_FILES = ("attributes.txt", "CUB_200_2011/attributes/attributes.txt", "CUB_200_2011/attributes.txt")
SEGMENTATION_DIRS = ("segmentations", "CUB_200_2011/segmentations")


class CUB200(RecordDataset):
    """CUB-200-2011 as records: ``image``, ``label`` and, by option, ``bbox``, ``landmarks`` +
    ``landmark_visible`` (15 parts), ``attributes`` and the foreground ``mask``.

    ``attributes``: ``"image"`` = the per-image ``is_present`` votes (0/1),
    ``"class"`` = the class-level matrix (class_attribute_labels_continuous.txt / 100, in [0, 1]),
    ``"class_binary"`` = that matrix ≥ 0.5 (EAT's class-level attribute labels), ``None`` = no attributes.
    Boxes (x, y, w, h in the file) become (x0, y0, x1, y1); parts not visible have (0, 0) in the file.
    """

    name = "cub"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train",
                 size: int | tuple[int, int] | None = None, transform: SampleTransform | None = None, *,
                 attributes: AttributeMode | None = None, landmarks: bool = True, bbox: bool = True,
                 masks: bool = False) -> None:
        super().__init__(root, size, transform)
        check_choice(split, "split", SPLITS)
        check_choice(attributes, "attributes", (None, "image", "class", "class_binary"))
        self.home = require_dataset(self.name, self.root, also=(" | ".join(SEGMENTATION_DIRS),) if masks else ())
        self.attribute_mode = attributes
        ids, keep = self._index(split)
        class_names = tuple(n.split(".", 1)[-1] for n in self._names(self.home / "classes.txt"))
        part_names = self._names(self.home / "parts" / "parts.txt") if landmarks else ()
        attribute_names = self._names(first_existing(self.root, ATTRIBUTE_FILES)) if attributes else ()
        if bbox:
            self.boxes = boxes_from_xywh(self._by_id(self.home / "bounding_boxes.txt", 5, ids)[keep, 1:])  # [n, 4]
        self._part_locs = self._load_part_locs(ids, len(part_names))[keep] if landmarks else None  # [n, P, 3]
        self._attributes = (self._load_attributes(attributes, ids, len(attribute_names), len(class_names))
                            if attributes else None)
        if attributes == "image":
            self._attributes = self._attributes[keep]  # [n, A]; class-level stays [C, A]
        self._mask_dir = first_existing(self.root, SEGMENTATION_DIRS) if masks else None
        fields = ((IMAGE, LABEL) + (BBOX,) * bbox + (LANDMARKS, LANDMARK_VISIBLE) * landmarks
                  + (ATTRIBUTES,) * (attributes is not None) + (MASK,) * masks)
        self.info = DatasetInfo(
            name="CUB-200-2011", num_classes=len(class_names), class_names=class_names, fields=fields,
            attribute_names=attribute_names, part_names=part_names,
            extra={"split": split, "home": str(self.home), "attributes": attributes})

    def _index(self, split: str) -> tuple[list[int], list[int]]:
        """Read images.txt, labels and the split; set paths, labels, image_ids. Returns (all ids, kept rows)."""
        image_rows = read_rows(self.home / "images.txt", 2, dataset=self.name, rest=True)  # id, relative path
        ids = [int(r[0]) for r in image_rows]
        labels = self._by_id(self.home / "image_class_labels.txt", 2, ids)  # [N, 2]
        is_train = self._by_id(self.home / "train_test_split.txt", 2, ids)[:, 1] == 1  # [N]
        keep = [k for k in range(len(ids)) if split == "all" or is_train[k] == (split == "train")]
        self.image_ids = [ids[k] for k in keep]
        self.paths = [self.home / "images" / image_rows[k][1] for k in keep]
        self.labels = [int(labels[k, 1]) - 1 for k in keep]
        return ids, keep

    def _names(self, path: Path) -> tuple[str, ...]:
        """The names of an ``<id> <name>`` list (names may contain spaces)."""
        return tuple(r[1] for r in read_rows(path, 2, dataset=self.name, rest=True))

    def _by_id(self, path: Path, n_fields: int, ids: list[int]) -> np.ndarray:
        """Rows of an ``<image_id> …`` table reordered to match images.txt: [N, n_fields]."""
        table = read_numeric(path, dataset=self.name, usecols=range(n_fields))
        by_id = {int(row[0]): row for row in table}
        return np.stack([lookup(by_id, i, path, self.name) for i in ids])

    def _positions(self, ids: list[int], table_ids: np.ndarray, path: Path) -> np.ndarray:
        """Row of images.txt for each image id of a table; an unknown id raises naming the file."""
        lut = np.full(max(ids) + 2, -1)
        lut[ids] = np.arange(len(ids))
        rows = lut[np.clip(table_ids.astype(int), 0, len(lut) - 1)]
        if (rows < 0).any():
            bad = int(table_ids[np.argmax(rows < 0)])
            raise DatasetFormatError(f"{path}: image id {bad} is not in images.txt; the files do not belong "
                                     f"together — re-extract them with: {prepare_hint(self.name)}")
        return rows

    def _per_image_table(self, path: Path, ids: list[int], n_keys: int, n_values: int) -> np.ndarray:
        """A ``<image_id> <key_id> <v_1> … <v_n>`` table with one row per image and key, as [N, K, n].

        Extra fields after the values are ignored (a few lines of the real image_attribute_labels.txt
        carry some).
        """
        table = read_numeric(path, dataset=self.name, usecols=range(2 + n_values))
        expect_rows(table, len(ids) * n_keys, path, self.name, f"{len(ids)} images × {n_keys}")
        rows = self._positions(ids, table[:, 0], path)
        out = np.zeros((len(ids), n_keys, n_values))
        out[rows, table[:, 1].astype(int) - 1] = table[:, 2:]
        return out

    def _load_part_locs(self, ids: list[int], n_parts: int) -> np.ndarray:
        """part_locs.txt (``<image_id> <part_id> <x> <y> <visible>``) as [N, P, 3] (x, y, visible)."""
        return self._per_image_table(self.home / "parts" / "part_locs.txt", ids, n_parts, 3)

    def _load_attributes(self, mode: AttributeMode, ids: list[int], n_attributes: int,
                         n_classes: int) -> np.ndarray:
        """[N, A] per-image ``is_present`` votes, or [C, A] class-level values in [0, 1]."""
        if mode == "image":  # <image_id> <attribute_id> <is_present> <certainty_id> <time>
            path = self.home / "attributes" / "image_attribute_labels.txt"
            return self._per_image_table(path, ids, n_attributes, 1)[..., 0]
        path = self.home / "attributes" / "class_attribute_labels_continuous.txt"
        matrix = read_numeric(path, dataset=self.name) / 100.0  # [C, A], percent of voters
        expect_rows(matrix, n_classes, path, self.name, "one row per class")
        return (matrix >= 0.5).astype(np.float64) if mode == "class_binary" else matrix

    @property
    def class_attribute_matrix(self) -> np.ndarray:
        """The class-level attributes ``[C, A]`` (modes ``"class"``/``"class_binary"``; EAT's labels ``A``)."""
        if self.attribute_mode not in ("class", "class_binary"):
            raise ValueError(f"class-level attributes need attributes='class' or 'class_binary', "
                             f"this loader has attributes={self.attribute_mode!r}")
        return self._attributes

    def _ground_truth(self, index: int, image: Tensor) -> dict[str, Tensor]:
        out = super()._ground_truth(index, image)
        if self._part_locs is not None:
            out[LANDMARKS] = torch.tensor(self._part_locs[index, :, :2], dtype=torch.float32)  # [P, 2]
            out[LANDMARK_VISIBLE] = torch.tensor(self._part_locs[index, :, 2] > 0)  # [P]
        if self._attributes is not None:
            row = index if self.attribute_mode == "image" else self.labels[index]
            out[ATTRIBUTES] = torch.tensor(self._attributes[row], dtype=torch.float32)  # [A]
        if self._mask_dir is not None:
            relative = self.paths[index].relative_to(self.home / "images").with_suffix(".png")
            out[MASK] = load_mask(self._mask_dir / relative, self.name)  # [H, W]
        return out
