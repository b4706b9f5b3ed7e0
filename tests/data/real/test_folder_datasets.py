"""Cats vs dogs (skip list, BLA-style seeded split) and ImageNet folders, both indexed by ImageFolder."""
from __future__ import annotations

import io
import zipfile

import pytest
from fixtures import make_cats_vs_dogs, make_imagenet, write_image

from attnbook.data.real.base import CorruptImageError, DatasetMissingError
from attnbook.data.real.folder_datasets import JFIF_WINDOW, CatsVsDogs, ImageNet, finalize_imagenet
from attnbook.data.records import IMAGE, LABEL


def test_cats_vs_dogs_skips_unreadable_files(tmp_path):
    make_cats_vs_dogs(tmp_path)
    everything = CatsVsDogs(tmp_path, split="all")
    assert len(everything) == 10 and everything.labels.count(1) == 5
    assert sorted((p.name, why) for p, why in everything.skipped) == [("11702.jpg", "no JFIF header"),
                                                                     ("666.jpg", "empty file")]
    lenient = CatsVsDogs(tmp_path, split="all", jfif_only=False)
    assert len(lenient) == 11 and [p.name for p, _ in lenient.skipped] == ["666.jpg"]
    assert everything[7][LABEL].item() == 1  # sorted: Cat/0..4 then Dog/0..4


def _jpeg_with_jfif_at(path, offset: int) -> bytes:
    """A valid JPEG whose APP0 "JFIF" marker starts at byte ``offset``: a comment segment (as EXIF or
    editor data often is) sits between SOI and APP0."""
    write_image(path)
    data = path.read_bytes()
    assert data[6:10] == b"JFIF"  # PIL writes SOI, then APP0 with JFIF at byte 6
    length = offset - 8  # SOI (2) + COM marker (2) + COM segment (length) + APP0 marker and length (4)
    data = data[:2] + b"\xff\xfe" + length.to_bytes(2, "big") + b"c" * (length - 2) + data[2:]
    assert data.index(b"JFIF") == offset
    path.write_bytes(data)
    return data


def _tfds_keeps(data: bytes) -> bool:
    """The reference filter verbatim: TFDS's ``b"JFIF" in fobj.peek(10)`` on a zip member (TFDS iter_zip)."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("PetImages/Cat/x.jpg", data)
    with zipfile.ZipFile(archive) as zf, zf.open("PetImages/Cat/x.jpg") as fobj:
        return b"JFIF" in fobj.peek(10)


def test_cats_vs_dogs_jfif_window_matches_the_reference(tmp_path):
    """JFIF at byte 100 (past the first 10 bytes) is kept, as by TFDS; past byte 512 it is skipped, as by
    TFDS; a valid file loads; a corrupt one (JFIF header, truncated body) passes the filter as in TFDS and
    fails on reading with an error naming it."""
    make_cats_vs_dogs(tmp_path)
    cats = tmp_path / "PetImages" / "Cat"
    near = _jpeg_with_jfif_at(cats / "100.jpg", 100)
    far = _jpeg_with_jfif_at(cats / "600.jpg", JFIF_WINDOW + 88)
    assert _tfds_keeps(near) and not _tfds_keeps(far) and _tfds_keeps((cats / "0.jpg").read_bytes())
    (cats / "7.jpg").write_bytes((cats / "0.jpg").read_bytes()[:200])  # header intact, image data cut off
    data = CatsVsDogs(tmp_path, split="all")
    names = [p.name for p in data.paths]
    assert "100.jpg" in names and "7.jpg" in names and "0.jpg" in names
    assert ("600.jpg", "no JFIF header") in [(p.name, why) for p, why in data.skipped]
    assert data[names.index("100.jpg")][IMAGE].shape == (3, 30, 40)  # valid, with a segment before APP0
    with pytest.raises(CorruptImageError, match=r"Cat/7\.jpg"):
        data[names.index("7.jpg")]


def test_cats_vs_dogs_split(tmp_path):
    make_cats_vs_dogs(tmp_path)
    train, test = CatsVsDogs(tmp_path), CatsVsDogs(tmp_path, split="test")
    assert (len(train), len(test)) == (8, 2)  # ⌊0.8 · 10⌋
    assert not set(train.paths) & set(test.paths)


def test_imagenet_folders(tmp_path):
    make_imagenet(tmp_path)
    train, val = ImageNet(tmp_path), ImageNet(tmp_path, split="val")
    assert (len(train), len(val)) == (4, 2) and train.labels == [0, 0, 1, 1]
    assert train.info.class_names == ("n01440764", "n01443537") == train.info.extra["wnids"]


def test_finalize_imagenet_delegates_and_unlinks(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("attnbook.data.real.folder_datasets.TorchvisionImageNet",
                        lambda root, split: calls.append((root, split)))
    archive = tmp_path / "ILSVRC2012_img_val.tar"
    archive.write_bytes(b"x")
    home = tmp_path / "imagenet"
    home.mkdir()
    (home / archive.name).symlink_to(archive)
    finalize_imagenet(home)
    assert calls == [(str(home), "train"), (str(home), "val")]
    assert not (home / archive.name).exists() and archive.exists()


def test_flat_imagenet_val_is_named(tmp_path):
    make_imagenet(tmp_path)
    for wnid_dir in (tmp_path / "imagenet" / "val").iterdir():
        for image in wnid_dir.iterdir():
            image.rename(tmp_path / "imagenet" / "val" / image.name)
        wnid_dir.rmdir()
    with pytest.raises(DatasetMissingError, match=r"imagenet/val holds no class folders.*prepare imagenet"):
        ImageNet(tmp_path, split="val")
