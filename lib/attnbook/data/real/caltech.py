"""Caltech-256 (Griffin et al. 2007): 30,607 images in ``256_ObjectCategories/<NNN.name>/``.

Sharpen Focus (Table 3) trains with 30 or 60 images per class and tests on 25 per class, over the 256
object classes (class 257, clutter, is dropped). There is no official split: ours is seeded.
Indexing uses torchvision's ``ImageFolder`` (its ``Caltech256`` class assumes contiguous file numbers).
"""
from __future__ import annotations

import os
from pathlib import Path

from attnbook.data.catalog import require_dataset
from attnbook.data.real.base import RecordDataset, SampleTransform, check_choice, per_class_split
from attnbook.data.real.folder_datasets import index_folder
from attnbook.data.records import IMAGE, LABEL, DatasetInfo

CLUTTER = "257.clutter"


class Caltech256(RecordDataset):
    """Caltech-256 as records: ``image``, ``label`` over 256 classes (names without the number prefix).

    ``split``: ``train`` (``n_train`` ∈ {30, 60} per class) or ``test`` (the next ``n_test`` per class;
    a class with fewer than ``n_train + n_test`` images gives what remains), drawn with ``seed``.
    """

    name = "caltech256"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train",
                 size: int | tuple[int, int] | None = None, transform: SampleTransform | None = None, *,
                 n_train: int = 30, n_test: int = 25, seed: int = 0) -> None:
        super().__init__(root, size, transform)
        check_choice(split, "split", ("train", "test"))
        home = require_dataset(self.name, self.root)
        index = index_folder(home / "256_ObjectCategories", self.name, (".jpg",))
        classes = [c for c in index.classes if c != CLUTTER]  # sorted: clutter is last, indices unchanged
        samples = [(p, y) for p, y in index.samples if y < len(classes)]
        train, test = per_class_split([y for _, y in samples], n_train, n_test, seed)
        chosen = [samples[k] for k in (train if split == "train" else test)]
        self.paths = [Path(p) for p, _ in chosen]
        self.labels = [y for _, y in chosen]
        self.info = DatasetInfo(
            name="Caltech-256", num_classes=len(classes), class_names=tuple(c.split(".", 1)[-1] for c in classes),
            fields=(IMAGE, LABEL), extra={"split": split, "n_train": n_train, "n_test": n_test, "seed": seed})
