"""SUN Attribute Database (Patterson & Hays 2012): 14,340 scene images of 717 classes with 102 attributes
(EAT Tables II–III). ``SUNAttributeDB/images.mat`` lists the images (``<letter>/<class>/<file>.jpg``),
``attributes.mat`` the names, ``attributeLabels_continuous.mat`` the votes ([14340, 102], fraction of 3).

EAT (§IV-A) uses class-level attributes ("all the images in one sub-category hold the same label for every
attribute"); the database gives per-image votes, so a class's attribute is the mean vote over the class's images
(every image, not only one split: a property of the class, as CUB's ``class_attribute_labels_continuous.txt``)."""
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
    check_choice,
    per_class_split,
    prepare_hint,
    read_mat,
)
from attnbook.data.records import ATTRIBUTES, IMAGE, LABEL, DatasetInfo

AttributeMode = Literal["image", "class", "class_binary"]


def scene_class(relative_path: str) -> str:
    """The scene class of an image path: its folders without the leading letter (``a/abbey/x.jpg`` → abbey)."""
    parts = Path(relative_path).parent.parts
    return "/".join(parts[1:] if len(parts) > 1 and len(parts[0]) == 1 else parts)


class SUNAttributes(RecordDataset):
    """SUN attributes as records: ``image``, ``label`` (scene class), ``attributes`` [102] in [0, 1].

    ``attributes``: ``"image"`` = the image's own votes (fraction of its 3 voters), ``"class"`` = the class-level
    matrix (mean vote over every image of the class, :attr:`class_attribute_votes`), ``"class_binary"`` = that
    matrix ≥ ``class_threshold`` (EAT's class-level labels; :attr:`class_attribute_matrix`).
    No official classification split exists (EAT does not state its split): ``split`` draws, per class,
    ``train_fraction`` of the images for training with ``seed``; ``"all"`` keeps every image.
    """

    name = "sun_attributes"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train",
                 size: int | tuple[int, int] | None = None, transform: SampleTransform | None = None, *,
                 train_fraction: float = 0.8, seed: int = 0, attributes: AttributeMode = "image",
                 class_threshold: float = 0.5) -> None:
        super().__init__(root, size, transform)
        check_choice(split, "split", ("train", "test", "all"))
        check_choice(attributes, "attributes", ("image", "class", "class_binary"))
        home = require_dataset(self.name, self.root)
        db = home / "SUNAttributeDB"
        files = [str(f) for f in np.atleast_1d(read_mat(db / "images.mat", self.name)["images"])]
        attribute_names = tuple(str(a) for a in np.atleast_1d(read_mat(db / "attributes.mat", self.name)["attributes"]))
        votes = np.atleast_2d(read_mat(db / "attributeLabels_continuous.mat", self.name)["labels_cv"])  # [N, A]
        if votes.shape != (len(files), len(attribute_names)):
            raise DatasetFormatError(f"{db / 'attributeLabels_continuous.mat'}: labels_cv has shape {votes.shape}, "
                                     f"expected ({len(files)}, {len(attribute_names)}); re-extract with: "
                                     f"{prepare_hint(self.name)}")
        class_of = [scene_class(f) for f in files]
        class_names = tuple(sorted(set(class_of)))
        class_index = {c: k for k, c in enumerate(class_names)}
        labels = [class_index[c] for c in class_of]
        train, test = per_class_split(labels, float(train_fraction), None, seed)
        chosen = {"train": train, "test": test, "all": range(len(files))}[split]
        self.paths = [home / "images" / files[k] for k in chosen]
        self.labels = [labels[k] for k in chosen]
        self._votes = votes[list(chosen)].astype(np.float32)
        self.attribute_mode, self.class_threshold = attributes, float(class_threshold)
        sums, counts = np.zeros((len(class_names), votes.shape[1])), np.bincount(labels, minlength=len(class_names))
        np.add.at(sums, labels, votes)  # every image of each class, whatever the split
        self.class_attribute_votes = (sums / counts[:, None]).astype(np.float32)  # [C, A]
        self._class_rows = {"class": self.class_attribute_votes, "class_binary": self.class_attribute_matrix}.get(
            attributes)
        self.info = DatasetInfo(name="SUN attributes", num_classes=len(class_names), class_names=class_names,
                                fields=(IMAGE, LABEL, ATTRIBUTES), attribute_names=attribute_names,
                                extra={"split": split, "seed": seed, "train_fraction": train_fraction})

    @property
    def class_attribute_matrix(self) -> np.ndarray:
        """EAT's binary class-level labels ``A`` ``[C, A]``: mean vote over the class's images ≥ the threshold."""
        return (self.class_attribute_votes >= self.class_threshold).astype(np.float32)

    def _ground_truth(self, index: int, image: Tensor) -> dict[str, Tensor]:
        if self.attribute_mode == "image":
            return {ATTRIBUTES: torch.from_numpy(self._votes[index])}  # [A]
        return {ATTRIBUTES: torch.from_numpy(self._class_rows[self.labels[index]].copy())}  # [A], the class's row
