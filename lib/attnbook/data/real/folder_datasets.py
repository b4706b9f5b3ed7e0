"""Datasets stored as one folder per class, indexed with torchvision's ``ImageFolder``:
cats vs dogs (Microsoft PetImages; BLA dataset A) and ImageNet (BLA §4.3, Sharpen Focus Table 4)."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from torchvision.datasets import ImageFolder
from torchvision.datasets import ImageNet as TorchvisionImageNet
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.datasets.imagenet import load_meta_file

from attnbook.data.catalog import require_dataset
from attnbook.data.real.base import (
    DatasetMissingError,
    RecordDataset,
    SampleTransform,
    check_choice,
    prepare_hint,
    shuffled_split,
)
from attnbook.data.records import IMAGE, LABEL, DatasetInfo

JFIF_WINDOW = 512  # bytes searched for "JFIF": what TFDS's ZipExtFile.peek(10) returns (see CatsVsDogs)


def index_folder(folder: Path, dataset: str, extensions: tuple[str, ...] = IMG_EXTENSIONS,
                 accept: Callable[[str], bool] | None = None) -> ImageFolder:
    """torchvision's ImageFolder index of ``folder/<class>/<file>``: files with one of ``extensions``
    directly in a class folder (deeper files are ignored) for which ``accept(path)`` holds.

    Only the index is used (``.classes``, ``.samples``); our loaders read the images.
    """
    def valid(path: str) -> bool:
        return (path.lower().endswith(extensions) and Path(path).parent.parent == folder
                and (accept is None or accept(path)))

    try:
        return ImageFolder(str(folder), loader=str, is_valid_file=valid, allow_empty=True)
    except FileNotFoundError as err:
        raise DatasetMissingError(f"{folder} holds no class folders ({err}); expected <class>/<image> — "
                                  f"get the dataset with: {prepare_hint(dataset)}") from None


class CatsVsDogs(RecordDataset):
    """Microsoft's cats-vs-dogs images (``PetImages/Cat``, ``PetImages/Dog``): ``label`` 0 = cat, 1 = dog.

    About 1,700 of the 25,000 files are empty, corrupt or not JPEG/JFIF. With ``jfif_only`` (default) the
    index keeps, like TensorFlow Datasets' ``cats_vs_dogs`` that BLA used, only files whose first
    :data:`JFIF_WINDOW` (512) bytes contain ``JFIF`` — 23,262 images (BLA §4.1); otherwise only empty files
    are dropped. Every dropped file is listed in ``self.skipped`` as (path, reason). A file that passes the
    filter but does not decode raises :class:`~attnbook.data.real.base.CorruptImageError` when read.
    Split: seeded, ⌊train_fraction·N⌋ train (0.8 → 18,609 / 4,653 as in BLA).

    Why 512 bytes, although the reference reads ``peek(10)``: TFDS's filter
    (``tensorflow_datasets/image_classification/cats_vs_dogs.py``, ``_generate_examples``) is
    ``tf.compat.as_bytes("JFIF") not in fobj.peek(10)`` where ``fobj`` is a member opened with
    ``zipfile.ZipFile.open`` (TFDS ``iter_zip``), and CPython's ``ZipExtFile.peek(n)`` ignores a small ``n``:
    it returns "up to 512 bytes" of its buffer (``Lib/zipfile.py``). So TFDS — and its expected 1,738 skipped
    files — tests the first 512 bytes (checked here on Python 3.11: ``JFIF`` at offset 508 passes, at 600
    fails). The Keras tutorial runs the same line on files on disk, where ``BufferedReader.peek`` returns a
    whole buffer (4–8 KiB, platform-dependent); we follow TFDS, the pipeline BLA used.
    """

    name = "cats_vs_dogs"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train",
                 size: int | tuple[int, int] | None = None, transform: SampleTransform | None = None, *,
                 train_fraction: float = 0.8, seed: int = 0, jfif_only: bool = True) -> None:
        super().__init__(root, size, transform)
        check_choice(split, "split", ("train", "test", "all"))
        home = require_dataset(self.name, self.root)
        self.skipped: list[tuple[Path, str]] = []
        self._jfif_only = jfif_only
        index = index_folder(home, self.name, accept=self._accept)
        train, test = shuffled_split(len(index.samples), train_fraction, seed)
        chosen = {"train": train, "test": test, "all": range(len(index.samples))}[split]
        self.paths = [Path(index.samples[k][0]) for k in chosen]
        self.labels = [index.samples[k][1] for k in chosen]
        self.info = DatasetInfo(name="Cats vs dogs", num_classes=2, class_names=("cat", "dog"),
                                fields=(IMAGE, LABEL),
                                extra={"split": split, "seed": seed, "skipped": len(self.skipped)})

    def _accept(self, path: str) -> bool:
        with open(path, "rb") as handle:
            head = handle.read(JFIF_WINDOW)
        reason = "empty file" if not head else "no JFIF header" if self._jfif_only and b"JFIF" not in head else ""
        if reason:
            self.skipped.append((Path(path), reason))
        return not reason


class ImageNet(RecordDataset):
    """ImageNet (ILSVRC 2012) in torchvision's folder layout ``imagenet/{train,val}/<wnid>/``.

    Class names are the first WordNet lemma from ``meta.bin`` (written by ``attnbook data prepare
    imagenet``), else the wnids; the wnids stay in ``info.extra["wnids"]``.
    """

    name = "imagenet"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train",
                 size: int | tuple[int, int] | None = None, transform: SampleTransform | None = None) -> None:
        super().__init__(root, size, transform)
        check_choice(split, "split", ("train", "val"))
        home = require_dataset(self.name, self.root)
        index = index_folder(home / split, self.name)
        self.paths = [Path(p) for p, _ in index.samples]
        self.labels = [y for _, y in index.samples]
        wnids = tuple(index.classes)
        names = wnids
        if (home / "meta.bin").exists():
            wnid_to_classes = load_meta_file(str(home))[0]
            names = tuple(wnid_to_classes.get(w, (w,))[0] for w in wnids)
        self.info = DatasetInfo(name="ImageNet", num_classes=len(wnids), class_names=names, fields=(IMAGE, LABEL),
                                extra={"split": split, "wnids": wnids})


def finalize_imagenet(home: Path) -> None:
    """After ``prepare`` linked the ILSVRC 2012 archives into ``home``: let torchvision's ImageNet parser
    (which checks their published md5s) unpack them into ``train/<wnid>/``, ``val/<wnid>/`` and ``meta.bin``,
    then remove the links."""
    for split in ("train", "val"):
        TorchvisionImageNet(str(home), split=split)
    for link in home.iterdir():
        if link.is_symlink():
            link.unlink()
