"""CelebA (Liu et al. 2015): 202,599 celebrity faces, 40 binary attributes, 5 landmarks, face boxes.

Region Grouping (§4.1) uses the aligned images with the official partition for attribute recognition,
and the unaligned in-the-wild images, restricted to large faces, for landmark localisation.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from attnbook.data.catalog import require_dataset
from attnbook.data.real.base import (
    DatasetFormatError,
    DatasetMissingError,
    RecordDataset,
    SampleTransform,
    boxes_from_xywh,
    check_choice,
    expect_rows,
    prepare_hint,
    read_names,
    read_numeric,
    read_rows,
)
from attnbook.data.records import BBOX, IMAGE, LABEL, LANDMARK_VISIBLE, LANDMARKS, DatasetInfo

SPLITS = {"train": 0, "valid": 1, "test": 2, "all": None}  # list_eval_partition.txt codes
LANDMARK_NAMES = ("left eye", "right eye", "nose", "left mouth", "right mouth")
N_ATTRIBUTES = 40


class CelebA(RecordDataset):
    """CelebA as multi-label records: ``label`` = the 40 attributes as a multi-hot float vector
    ({-1, 1} in the file → {0, 1}), ``landmarks`` [5, 2] (all visible) and, for ``in_the_wild``, ``bbox``.

    ``in_the_wild=False``: ``img_align_celeba/`` + list_landmarks_align_celeba.txt (the boxes refer to the
    original photos, so no ``bbox``). ``in_the_wild=True``: ``img_celeba/`` + list_landmarks_celeba.txt +
    list_bbox_celeba.txt (x, y, w, h → x0, y0, x1, y1). See :func:`large_face_indices` for Region Grouping's
    interpretability filter. ``files``: keep only these image names of ``split`` (e.g. the MAFL lists of
    :func:`read_mafl_lists`); a name the partition file lacks raises :class:`DatasetFormatError`.
    """

    name = "celeba"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train",
                 size: int | tuple[int, int] | None = None, transform: SampleTransform | None = None, *,
                 in_the_wild: bool = False, landmarks: bool = True, files: Sequence[str] | None = None) -> None:
        super().__init__(root, size, transform)
        check_choice(split, "split", tuple(SPLITS))
        self.home = home = require_dataset(self.name, self.root)
        if in_the_wild:
            require_in_the_wild(home, landmarks)
        self.in_the_wild = in_the_wild
        partition_file = home / "list_eval_partition.txt"
        names = read_names(partition_file, dataset=self.name)
        partition = read_numeric(partition_file, dataset=self.name, usecols=1, dtype=np.int64)[:, 0]
        keep = np.arange(len(names)) if SPLITS[split] is None else np.flatnonzero(partition == SPLITS[split])
        if files is not None:  # a named subset (e.g. MAFL's lists), in the partition file's order
            wanted = set(files)
            unknown = wanted.difference(names)
            if unknown:
                raise DatasetFormatError(f"{len(unknown)} requested files are not in {partition_file} (e.g. "
                                         f"{sorted(unknown)[0]}); the lists do not belong to this CelebA copy")
            keep = np.array([i for i in keep if names[i] in wanted], dtype=np.int64)

        attr_file = home / "list_attr_celeba.txt"
        attribute_names = tuple(read_rows(attr_file, N_ATTRIBUTES, dataset=self.name, skip=1, limit=1)[0])
        attrs = self._table(attr_file, N_ATTRIBUTES, names)  # [N, 40] in {-1, 1}
        self.labels = torch.tensor((attrs[keep] > 0).astype(np.float32))  # [n, 40] multi-hot
        folder = home / ("img_celeba" if in_the_wild else "img_align_celeba")
        self.paths = [folder / names[i] for i in keep]
        self.file_names = [names[i] for i in keep]

        fields = [IMAGE, LABEL]
        self._landmarks = None
        if landmarks:
            landmark_file = home / ("list_landmarks_celeba.txt" if in_the_wild else "list_landmarks_align_celeba.txt")
            self._landmarks = self._table(landmark_file, 10, names)[keep].reshape(-1, 5, 2)  # [n, 5, (x, y)]
            fields += [LANDMARKS, LANDMARK_VISIBLE]
        if in_the_wild:
            boxes = self._table(home / "list_bbox_celeba.txt", 4, names)[keep]  # [n, (x, y, w, h)]
            self.boxes = boxes_from_xywh(boxes)
            fields.append(BBOX)
        self.info = DatasetInfo(
            name="CelebA", num_classes=N_ATTRIBUTES, class_names=attribute_names, fields=tuple(fields),
            multilabel=True, part_names=LANDMARK_NAMES if landmarks else (),
            extra={"split": split, "home": str(home), "in_the_wild": in_the_wild})

    def _table(self, path: Path, n_values: int, names: Sequence[str]) -> np.ndarray:
        """An annotation list (count line, header line, then ``<file> v1 … vn``) checked against the
        partition's file order: [N, n_values]."""
        values = read_numeric(path, dataset=self.name, usecols=range(1, n_values + 1), skip=2)
        expect_rows(values, len(names), path, self.name, "one row per image of list_eval_partition.txt")
        own_names = read_names(path, dataset=self.name, skip=2)
        if own_names != list(names):
            line = next(k for k, (a, b) in enumerate(zip(own_names, names)) if a != b) + 3
            raise DatasetFormatError(f"{path}, line {line}: image order differs from list_eval_partition.txt; "
                                     f"re-extract the annotations with: {prepare_hint(self.name)}")
        return values

    def _ground_truth(self, index: int, image: Tensor) -> dict[str, Tensor]:
        out = super()._ground_truth(index, image)
        if self._landmarks is not None:
            out[LANDMARKS] = torch.tensor(self._landmarks[index], dtype=torch.float32)  # [5, 2]
            out[LANDMARK_VISIBLE] = torch.ones(len(LANDMARK_NAMES), dtype=torch.bool)
        return out


def require_in_the_wild(home: Path, landmarks: bool = True) -> None:
    """Raise :class:`DatasetMissingError` with the exact steps when the in-the-wild images (or, with
    ``landmarks``, their landmark list) are missing under ``home``.

    Neither ``prepare --from`` nor ``--download`` can supply ``img_celeba/``: it ships only as a 14-part
    7-Zip archive (torchvision comments it out for that reason), which the user extracts with ``7z``.
    """
    images = home / "img_celeba"
    source = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
    then = "beside the other CelebA files, then run: attnbook data prepare celeba --from DIR"
    if not images.is_dir():
        raise DatasetMissingError(
            f"CelebA in-the-wild images not found at {images}; `attnbook data prepare` cannot supply them (they "
            f"ship only as a 14-part 7-Zip archive). Download all of img_celeba.7z.001 … img_celeba.7z.014 "
            f"(folder Img/img_celeba.7z/ of the CelebA Google Drive, linked from {source}) into one folder DIR, "
            f"extract them with `7z x DIR/img_celeba.7z.001 -o{home}` (p7zip / 7-Zip; creates {images}), put "
            f"list_landmarks_celeba.txt (folder Anno/) in DIR {then}")
    if landmarks and not (home / "list_landmarks_celeba.txt").is_file():
        raise DatasetMissingError(
            f"{home / 'list_landmarks_celeba.txt'} is missing (in-the-wild landmarks): download it from the "
            f"CelebA Drive's Anno/ folder ({source}) into DIR {then}")


MAFL_FILES = {"train": "celebA_training.txt", "fit": "MAFL_training.txt", "test": "MAFL_testing.txt"}


def read_mafl_lists(home: Path) -> dict[str, list[str]] | None:
    """The landmark protocol's image lists (SCOPS / the Region Grouping code: ``celebA_training.txt`` = the training
    images without MAFL's, ``MAFL_training.txt`` = the regressors' fitting split, ``MAFL_testing.txt`` = the test
    split; first field of each line) from ``home``, or None when any is missing (they do not ship with CelebA)."""
    paths = {split: home / name for split, name in MAFL_FILES.items()}
    if not all(p.is_file() for p in paths.values()):
        return None
    return {split: [row[0] for row in read_rows(p, 1, dataset="celeba")] for split, p in paths.items()}


def large_face_indices(dataset: CelebA, min_fraction: float = 0.3) -> list[int]:
    """Indices of in-the-wild faces whose box covers at least ``min_fraction`` of the image area.

    Region Grouping's landmark split (§4.1, from SCOPS [25]) keeps faces covering ≥ 30% of the image;
    use with ``torch.utils.data.Subset``. Reads only image headers (one file open per image).
    """
    if not dataset.in_the_wild:
        raise ValueError("the face-area filter needs in-the-wild boxes: build CelebA(..., in_the_wild=True)")
    keep = []
    for index, (path, box) in enumerate(zip(dataset.paths, dataset.boxes)):
        with Image.open(path) as img:
            width, height = img.size
        if (box[2] - box[0]) * (box[3] - box[1]) >= min_fraction * width * height:
            keep.append(index)
    return keep
