"""CIFAR-100 (Krizhevsky 2009) from its python pickle batches (``cifar-100-python/{train,test,meta}``).

Sharpen Focus (Table 1–2) trains ResNet-110 on it. The reader is ours because torchvision's CIFAR100
re-hashes every file at construction and refuses anything but the published bytes; checksums are the
job of ``attnbook data verify``.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from torch import Tensor

from attnbook.data.catalog import require_dataset
from attnbook.data.real.base import DatasetFormatError, RecordDataset, SampleTransform, check_choice, prepare_hint
from attnbook.data.records import IMAGE, LABEL, DatasetInfo


def read_pickle(path: Path, dataset: str) -> dict:
    """A CIFAR python batch (a pickled dict with bytes keys); unreadable → :class:`DatasetFormatError`."""
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise DatasetFormatError(f"cannot unpickle {path} ({err}); the file is truncated or corrupt — "
                                 f"re-extract it with: {prepare_hint(dataset, True)}") from err


class CIFAR100(RecordDataset):
    """CIFAR-100 as records: ``image`` [3, 32, 32], ``label`` (the 100 fine classes)."""

    name = "cifar100"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train",
                 size: int | tuple[int, int] | None = None, transform: SampleTransform | None = None) -> None:
        super().__init__(root, size, transform)
        check_choice(split, "split", ("train", "test"))
        home = require_dataset(self.name, self.root)
        batch = read_pickle(home / split, self.name)
        meta = read_pickle(home / "meta", self.name)
        try:
            data, labels = batch[b"data"], batch[b"fine_labels"]
            class_names = tuple(n.decode() for n in meta[b"fine_label_names"])
        except KeyError as err:
            raise DatasetFormatError(f"{home}: CIFAR-100 batch lacks the key {err}; is this CIFAR-10? "
                                     f"Get CIFAR-100 with: {prepare_hint(self.name, True)}") from None
        if len(data) != len(labels) or data.shape[1:] != (3 * 32 * 32,):
            raise DatasetFormatError(f"{home / split}: {len(data)} images of shape {data.shape[1:]} for "
                                     f"{len(labels)} labels; re-extract with: {prepare_hint(self.name, True)}")
        self._images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())  # [N, 3, 32, 32] uint8
        self.labels = [int(v) for v in labels]
        self.info = DatasetInfo(name="CIFAR-100", num_classes=len(class_names), class_names=class_names,
                                fields=(IMAGE, LABEL), extra={"split": split, "home": str(home)})

    def _image(self, index: int) -> Tensor:
        return self._images[index].float().div(255.0)  # [3, 32, 32]
