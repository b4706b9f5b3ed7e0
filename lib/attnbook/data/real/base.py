"""Shared machinery of the real-dataset loaders: the data root, errors that name the fix, text-table
parsing with line numbers, image loading, seeded splits, and the record-yielding ``Dataset`` base class.

Every loader yields the sample dict of :mod:`attnbook.data.records`; ground truth is kept in the
image's own pixel coordinates until the optional ``size`` resize (:func:`attnbook.data.transforms.resize_sample`).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms.v2.functional import pil_to_tensor

from attnbook.data.real.paths import (  # noqa: F401 (the loaders import these from here too)
    ENV_VAR,
    CorruptImageError,
    DatasetFormatError,
    DatasetMissingError,
    default_root,
    first_existing,
    missing_paths,
    prepare_hint,
    resolve_root,
)
from attnbook.data.records import BBOX, IMAGE, INDEX, LABEL, DatasetInfo
from attnbook.data.transforms import as_size, resize_sample

SampleTransform = Callable[[dict[str, Tensor]], dict[str, Tensor]]


def require_file(path: Path, dataset: str) -> Path:
    """``path`` if it is a file, else :class:`DatasetMissingError` naming it and the fix."""
    if not path.is_file():
        raise DatasetMissingError(f"{path} is missing; re-extract the dataset with: {prepare_hint(dataset)}")
    return path


def read_rows(path: Path, n_fields: int, *, dataset: str, rest: bool = False, skip: int = 0,
              limit: int | None = None) -> list[list[str]]:
    """Whitespace-separated rows of a text table, at least ``n_fields`` each (extra fields are ignored).

    ``rest=True`` keeps the remainder of the line (spaces included) as the last field, for names.
    ``skip`` header lines are dropped; at most ``limit`` rows are read. A short row raises
    :class:`DatasetFormatError` naming file and line.
    """
    rows = []
    with open(require_file(path, dataset), encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if number <= skip or not line.strip():
                continue
            fields = line.split(maxsplit=n_fields - 1) if rest else line.split()
            if len(fields) < n_fields:
                raise DatasetFormatError(
                    f"{path}, line {number}: expected {n_fields} fields, got {len(fields)} ({line.strip()!r}); "
                    f"the file looks truncated or corrupt — re-extract it with: {prepare_hint(dataset)}")
            rows.append([f.strip() for f in fields[:n_fields]])
            if limit is not None and len(rows) == limit:
                break
    return rows


def read_numeric(path: Path, *, dataset: str, usecols: int | Sequence[int] | None = None, skip: int = 0,
                 dtype: type = np.float64) -> np.ndarray:
    """A whitespace-separated numeric table as a 2-D array [rows, cols] (fields beyond ``usecols`` are
    ignored); a short or non-numeric row raises :class:`DatasetFormatError` naming file and line."""
    require_file(path, dataset)
    try:
        return np.loadtxt(path, dtype=dtype, usecols=usecols, skiprows=skip, ndmin=2, comments=None)
    except ValueError:
        number, line = _first_bad_line(path, usecols, skip)
        raise DatasetFormatError(
            f"{path}, line {number}: malformed row {line!r}; the file looks truncated or corrupt — "
            f"re-extract it with: {prepare_hint(dataset)}") from None


def _first_bad_line(path: Path, usecols: int | Sequence[int] | None, skip: int) -> tuple[int, str]:
    """The first line (1-based) that is short, of changed width, or non-numeric in the columns read."""
    cols = None if usecols is None else [usecols] if isinstance(usecols, int) else list(usecols)
    width = None
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if number <= skip or not fields:
                continue
            width = width or len(fields)
            wanted = cols if cols is not None else range(width)
            if (len(fields) < max(wanted) + 1 or (cols is None and len(fields) != width)
                    or not _is_numeric(fields[c] for c in wanted)):
                return number, line.strip()
    return 0, ""


def _is_numeric(values: Iterable[str]) -> bool:
    try:
        [float(v) for v in values]
    except ValueError:
        return False
    return True


def read_names(path: Path, *, dataset: str, skip: int = 0) -> list[str]:
    """The first whitespace-separated field of every non-empty line after ``skip`` header lines."""
    return [row[0] for row in read_rows(path, 1, dataset=dataset, skip=skip)]


def expect_rows(array: np.ndarray | Sequence, n: int, path: Path, dataset: str, what: str) -> None:
    """Raise :class:`DatasetFormatError` unless ``array`` has ``n`` rows (``what`` says what they are)."""
    if len(array) != n:
        raise DatasetFormatError(
            f"{path}: {len(array)} rows, expected {n} ({what}); the file looks truncated — "
            f"re-extract it with: {prepare_hint(dataset)}")


def read_mat(path: Path, dataset: str) -> dict:
    """A MATLAB file (``scipy.io.loadmat``, ``squeeze_me``); unreadable → :class:`DatasetFormatError`."""
    try:
        return scipy.io.loadmat(require_file(path, dataset), squeeze_me=True)
    except (ValueError, OSError, TypeError) as err:
        raise DatasetFormatError(f"cannot read {path} ({err}); re-extract it with: {prepare_hint(dataset)}") from err


def lookup(table: dict, key: object, path: Path, dataset: str) -> object:
    """``table[key]``, or a :class:`DatasetFormatError` saying that ``path`` lacks the entry (truncated file)."""
    try:
        return table[key]
    except KeyError:
        raise DatasetFormatError(
            f"{path} has no entry for {key!r} ({len(table)} entries read); the file looks truncated — "
            f"re-extract it with: {prepare_hint(dataset)}") from None


def load_image(path: Path, dataset: str) -> Tensor:
    """RGB image as float32 [3, H, W] in [0, 1]; an unreadable file raises :class:`CorruptImageError`."""
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except FileNotFoundError:
        raise DatasetMissingError(f"image {path} is missing; re-extract it with: {prepare_hint(dataset)}") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise CorruptImageError(f"cannot read image {path} ({err}); the file is corrupt or truncated — "
                                f"replace it (re-extract with: {prepare_hint(dataset)})") from err
    return pil_to_tensor(rgb).float().div_(255.0)  # [3, H, W]


def load_mask(path: Path, dataset: str, threshold: float = 0.5) -> Tensor:
    """Grey-level mask image as bool [H, W] (value/255 ≥ ``threshold``)."""
    gray = load_image(path, dataset).mean(dim=0)  # [H, W]
    return gray >= threshold


def per_class_split(labels: Sequence[int], n_train: int | float, n_test: int | None,
                    seed: int) -> tuple[list[int], list[int]]:
    """Seeded split within each class: ``n_train`` images (a count, or a fraction if float) for training,
    then ``n_test`` (``None`` = all the rest) for testing. Returns sorted (train, test) indices."""
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    train: list[int] = []
    test: list[int] = []
    for cls in np.unique(labels_arr):
        members = rng.permutation(np.flatnonzero(labels_arr == cls))
        k = int(n_train * len(members)) if isinstance(n_train, float) else n_train
        train.extend(members[:k].tolist())
        test.extend(members[k:].tolist() if n_test is None else members[k:k + n_test].tolist())
    return sorted(train), sorted(test)


def shuffled_split(n: int, train_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded global split: the first ⌊train_fraction·n⌋ of a permutation train, the rest test (sorted)."""
    order = np.random.default_rng(seed).permutation(n)
    k = int(train_fraction * n)
    return sorted(order[:k].tolist()), sorted(order[k:].tolist())


def check_choice(value: object, name: str, choices: Sequence[object]) -> None:
    """Raise a ValueError naming the valid choices when ``value`` is not one of them."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(choices)}")


def box_from_one_based(x_min: float, y_min: float, x_max: float, y_max: float) -> np.ndarray:
    """A box given as 1-based inclusive pixel indices (MATLAB / VOC style) as (x0, y0, x1, y1),
    0-based with x1/y1 exclusive."""
    return np.array([x_min - 1.0, y_min - 1.0, x_max, y_max])


def box_from_zero_based(x_min: float, y_min: float, x_max: float, y_max: float) -> np.ndarray:
    """A box given as 0-based inclusive pixel indices (ImageNet style: ``xmax = 499`` on a 500-pixel-wide
    image) as (x0, y0, x1, y1), x1/y1 exclusive."""
    return np.array([x_min, y_min, x_max + 1.0, y_max + 1.0])


def clip_box(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """``box`` (x0, y0, x1, y1) clipped to a ``width`` × ``height`` image, i.e. to [0, width] × [0, height]."""
    return np.clip(box, 0.0, [width, height, width, height])


def enclosing_box(boxes: np.ndarray) -> np.ndarray:
    """The smallest box (x0, y0, x1, y1) containing all of ``boxes`` [K, 4]."""
    return np.concatenate([boxes[:, :2].min(axis=0), boxes[:, 2:].max(axis=0)])


def boxes_from_xywh(boxes: np.ndarray) -> np.ndarray:
    """Boxes [K, 4] given as (x, y, width, height) as (x0, y0, x1, y1)."""
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


class RecordDataset(Dataset):
    """Base of every real-dataset loader: indexes files once, yields record dicts.

    Subclasses fill ``self.paths`` (image files), ``self.labels`` (indices, or a multi-hot tensor),
    optionally ``self.boxes``, and set ``self.info``; they override :meth:`_image` (in-memory data) or
    :meth:`_ground_truth` (more keys).
    ``size`` resizes every sample consistently (:func:`resize_sample`); ``transform`` then maps the dict.
    """

    name: str = ""  # catalog key, used in error messages

    def __init__(self, root: str | os.PathLike | None = None, size: int | tuple[int, int] | None = None,
                 transform: SampleTransform | None = None) -> None:
        self.root = resolve_root(root)
        self.size = None if size is None else as_size(size)
        self.transform = transform
        self.paths: list[Path] = []
        self.labels: Sequence | Tensor = []  # class indices, or multi-hot [N, C]
        self.boxes: np.ndarray | None = None  # [N, 4] (x0, y0, x1, y1), when the dataset has boxes
        self.info: DatasetInfo

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {self.info.name} of length {len(self)}")
        index = index % len(self)
        image = self._image(index)
        sample = {IMAGE: image, LABEL: self._label(index), **self._ground_truth(index, image)}
        if self.size is not None:
            sample = resize_sample(sample, self.size)
        if self.transform is not None:
            sample = self.transform(sample)
        sample[INDEX] = torch.tensor(index, dtype=torch.int64)
        return sample

    def _image(self, index: int) -> Tensor:
        return load_image(self.paths[index], self.name)  # [3, H, W]

    def _label(self, index: int) -> Tensor:
        if isinstance(self.labels, Tensor):
            return self.labels[index]  # multi-hot [C]
        return torch.tensor(int(self.labels[index]), dtype=torch.int64)

    def _ground_truth(self, index: int, image: Tensor) -> dict[str, Tensor]:
        if self.boxes is None:
            return {}
        return {BBOX: torch.tensor(self.boxes[index], dtype=torch.float32)}  # [4]

