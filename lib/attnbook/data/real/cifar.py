"""CIFAR-100 (Krizhevsky 2009) from its python pickle batches (``cifar-100-python/{train,test,meta}``).

Sharpen Focus (Table 1–2) trains ResNet-110 on it. The reader is ours (torchvision's CIFAR100 unpickles
with plain ``pickle.load``). A pickle can carry code, so a file is read only

1. after its md5 matches the published one (``torchvision/datasets/cifar.py``, in the catalog), unless
   ``checksum=False`` (your own batches, e.g. the test fixtures), and
2. always with :class:`~attnbook.data.real.pickles.DataUnpickler`, which builds numpy arrays and plain
   Python values and refuses every other global (``os.system``, ``builtins.exec`` …) before calling it.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from torch import Tensor

from attnbook.data.catalog import get_spec, require_dataset
from attnbook.data.real.base import DatasetFormatError, RecordDataset, SampleTransform, check_choice, prepare_hint
from attnbook.data.real.integrity import file_hashes
from attnbook.data.real.pickles import ForbiddenGlobalError, load_data_pickle_file
from attnbook.data.records import IMAGE, LABEL, DatasetInfo


def check_published_md5(path: Path, md5: str, source: str, dataset: str) -> None:
    """Raise :class:`DatasetFormatError` (one line, naming the file) unless ``path`` has the published ``md5``."""
    actual = file_hashes(path, ("md5",))["md5"]
    if actual != md5:
        raise DatasetFormatError(
            f"{path}: md5 {actual} ≠ published {md5} ({source}); refusing to unpickle a file that is not the "
            f"published one — re-extract it with: {prepare_hint(dataset, True)} (or pass checksum=False to read "
            f"your own batches, still data-only)")


def read_pickle(path: Path, dataset: str, md5: str | None = None, md5_source: str = "") -> dict:
    """A CIFAR python batch (a pickled dict with bytes keys), read data-only; with ``md5``, only after the
    file's md5 matches it. Unreadable, or naming a forbidden global → :class:`DatasetFormatError`."""
    if md5 is not None:
        check_published_md5(path, md5, md5_source, dataset)
    try:
        batch = load_data_pickle_file(path, encoding="bytes")
    except ForbiddenGlobalError as err:
        raise DatasetFormatError(
            f"{path}: refused to unpickle {err.module}.{err.name} — the file carries code, not just data "
            f"(allowed: numpy arrays and dtypes, lists, dicts, str, bytes, int, float); replace it with the "
            f"published file: {prepare_hint(dataset, True)}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise DatasetFormatError(f"cannot unpickle {path} ({err}); the file is truncated or corrupt — "
                                 f"re-extract it with: {prepare_hint(dataset, True)}") from err
    if not isinstance(batch, dict):
        raise DatasetFormatError(f"{path} holds a {type(batch).__name__}, not a CIFAR batch dict; re-extract it "
                                 f"with: {prepare_hint(dataset, True)}")
    return batch


class CIFAR100(RecordDataset):
    """CIFAR-100 as records: ``image`` [3, 32, 32], ``label`` (the 100 fine classes).

    ``checksum=True`` (default) reads a batch only if its md5 is the published one (see the module docstring).
    """

    name = "cifar100"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train",
                 size: int | tuple[int, int] | None = None, transform: SampleTransform | None = None, *,
                 checksum: bool = True) -> None:
        super().__init__(root, size, transform)
        check_choice(split, "split", ("train", "test"))
        home = require_dataset(self.name, self.root)
        published = {Path(f.path).name: f for f in get_spec(self.name).files if f.verified} if checksum else {}

        def read(file: str) -> dict:
            entry = published.get(file)
            return read_pickle(home / file, self.name, entry.md5 if entry else None, entry.source if entry else "")

        batch, meta = read(split), read("meta")
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
                                fields=(IMAGE, LABEL), extra={"split": split, "home": str(home),
                                                              "checksum": checksum})

    def _image(self, index: int) -> Tensor:
        return self._images[index].float().div(255.0)  # [3, 32, 32]
