"""MNIST (LeCun et al. 1998) from its idx files, gzipped or not, in torchvision's ``MNIST/raw/`` layout.

BLA §4.1 trains on the 3-vs-8 subset (``digits=(3, 8)``: 11,982 train / 1,984 test images).
The reader is ours because torchvision's needs the files uncompressed and gives no usable error on a
truncated file.
"""
from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from attnbook.data.catalog import require_dataset
from attnbook.data.real.base import DatasetFormatError, RecordDataset, SampleTransform, check_choice, prepare_hint
from attnbook.data.records import IMAGE, LABEL, DatasetInfo

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
UBYTE = 0x08  # idx type code of unsigned bytes


def read_idx(path: Path, dataset: str = "mnist") -> np.ndarray:
    """An idx file of unsigned bytes (``.gz`` read transparently) as an array of its declared shape."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as err:
        raise DatasetFormatError(f"cannot read {path} ({err}); re-copy it with: {prepare_hint(dataset)}") from err
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != UBYTE:
        raise DatasetFormatError(f"{path} is not an idx file of unsigned bytes; re-copy it with: "
                                 f"{prepare_hint(dataset)}")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape))
    if len(raw) - offset != expected:
        raise DatasetFormatError(f"{path}: header declares {expected} bytes of data for shape {shape}, found "
                                 f"{len(raw) - offset}; the file is truncated — re-copy it with: "
                                 f"{prepare_hint(dataset)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


class MNIST(RecordDataset):
    """MNIST digits as records: ``image`` [3, 28, 28] (grey repeated), ``label``.

    ``digits`` keeps only those digits and relabels them by their position in ``digits``
    (``digits=(3, 8)``: 3 → 0, 8 → 1).
    """

    name = "mnist"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train",
                 size: int | tuple[int, int] | None = None, transform: SampleTransform | None = None, *,
                 digits: Sequence[int] | None = None) -> None:
        super().__init__(root, size, transform)
        check_choice(split, "split", tuple(FILES))
        digits = tuple(range(10)) if digits is None else tuple(digits)
        if not digits or len(set(digits)) != len(digits) or not set(digits) <= set(range(10)):
            raise ValueError(f"digits must be distinct values in 0..9, got {digits}")
        home = require_dataset(self.name, self.root)
        images, labels = (read_idx(self._file(home, f)) for f in FILES[split])
        if len(images) != len(labels):
            raise DatasetFormatError(f"{home}: {len(images)} images but {len(labels)} labels for split {split!r}; "
                                     f"re-copy the files with: {prepare_hint(self.name)}")
        keep = np.flatnonzero(np.isin(labels, digits))
        self._images = torch.from_numpy(images[keep].copy())  # [n, 28, 28] uint8
        relabel = {d: k for k, d in enumerate(digits)}
        self.labels = [relabel[int(v)] for v in labels[keep]]
        self.digits = digits
        self.info = DatasetInfo(name="MNIST", num_classes=len(digits), class_names=tuple(map(str, digits)),
                                fields=(IMAGE, LABEL), extra={"split": split, "home": str(home)})

    @staticmethod
    def _file(home: Path, name: str) -> Path:
        plain = home / name
        return plain if plain.exists() else home / f"{name}.gz"

    def _image(self, index: int) -> Tensor:
        return self._images[index].float().div(255.0).expand(3, -1, -1).contiguous()  # [3, 28, 28]
