"""Cats vs dogs (skip list, BLA-style seeded split) and ImageNet folders, both indexed by ImageFolder."""
from __future__ import annotations

import pytest
from fixtures import make_cats_vs_dogs, make_imagenet

from attnbook.data.real.base import DatasetMissingError
from attnbook.data.real.folder_datasets import CatsVsDogs, ImageNet, finalize_imagenet
from attnbook.data.records import LABEL


def test_cats_vs_dogs_skips_unreadable_files(tmp_path):
    make_cats_vs_dogs(tmp_path)
    everything = CatsVsDogs(tmp_path, split="all")
    assert len(everything) == 10 and everything.labels.count(1) == 5
    assert sorted((p.name, why) for p, why in everything.skipped) == [("11702.jpg", "no JFIF header"),
                                                                     ("666.jpg", "empty file")]
    lenient = CatsVsDogs(tmp_path, split="all", jfif_only=False)
    assert len(lenient) == 11 and [p.name for p, _ in lenient.skipped] == ["666.jpg"]
    assert everything[7][LABEL].item() == 1  # sorted: Cat/0..4 then Dog/0..4


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
