"""SUN Attribute Database (Patterson & Hays 2012): 14,340 scene images of 717 classes with 102 attributes
(EAT Tables II–III). ``SUNAttributeDB/images.mat`` lists the images (``<letter>/<class>/<file>.jpg``),
``attributes.mat`` the names, ``attributeLabels_continuous.mat`` the votes ([14340, 102], fraction of 3)."""
from __future__ import annotations

import os
from pathlib import Path

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


def scene_class(relative_path: str) -> str:
    """The scene class of an image path: its folders without the leading letter (``a/abbey/x.jpg`` → abbey)."""
    parts = Path(relative_path).parent.parts
    return "/".join(parts[1:] if len(parts) > 1 and len(parts[0]) == 1 else parts)


class SUNAttributes(RecordDataset):
    """SUN attributes as records: ``image``, ``label`` (scene class), ``attributes`` [102] in [0, 1].

    No official classification split exists (EAT does not state its split): ``split`` draws, per class,
    ``train_fraction`` of the images for training with ``seed``; ``"all"`` keeps every image.
    """

    name = "sun_attributes"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train",
                 size: int | tuple[int, int] | None = None, transform: SampleTransform | None = None, *,
                 train_fraction: float = 0.8, seed: int = 0) -> None:
        super().__init__(root, size, transform)
        check_choice(split, "split", ("train", "test", "all"))
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
        self.info = DatasetInfo(name="SUN attributes", num_classes=len(class_names), class_names=class_names,
                                fields=(IMAGE, LABEL, ATTRIBUTES), attribute_names=attribute_names,
                                extra={"split": split, "seed": seed, "train_fraction": train_fraction})

    def _ground_truth(self, index: int, image: Tensor) -> dict[str, Tensor]:
        return {ATTRIBUTES: torch.from_numpy(self._votes[index])}  # [A]
