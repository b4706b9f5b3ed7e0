"""The dataset catalog: every loader resolves, every md5 is really published where it says, the README
is rendered from the catalog, and the completeness check names the missing path and the fix."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import torchvision
from real.fixtures import make_cub, make_mnist

from attnbook.data import catalog
from attnbook.data.real.base import DatasetMissingError, RecordDataset

README = Path(__file__).resolve().parents[2] / "data" / "README.md"


@pytest.mark.parametrize("name", list(catalog.CATALOG))
def test_spec_is_consistent(name):
    spec = catalog.get_spec(name)
    module, cls = spec.loader.split(":")
    loader = getattr(importlib.import_module(module), cls)
    assert issubclass(loader, RecordDataset) and loader.name == name
    assert spec.required and spec.items and spec.url and spec.licence
    assert all(p.split("|")[0].strip().startswith(spec.home.split("/")[0]) or "attributes.txt" in p
               for p in spec.required)


def _published_md5s():
    for spec in catalog.CATALOG.values():
        for item in spec.items:
            if item.md5:
                yield item.md5, item.md5_source, item.verified
        for file in spec.files:
            yield file.md5, file.source, file.verified


@pytest.mark.parametrize("md5,source,verified", list(_published_md5s()))
def test_every_md5_appears_in_its_published_source(md5, source, verified):
    """A checksum is enforced (``verified``) only if its source states it on a live line; one found only in
    a commented-out line (CelebA's list_landmarks_celeba.txt) must be marked ``verified=False``."""
    assert re.fullmatch(r"[0-9a-f]{32}", md5)
    relative = source.split()[0]
    assert relative.startswith("torchvision/datasets/")
    text = (Path(torchvision.__file__).parent / relative.removeprefix("torchvision/")).read_text()
    lines = [line.strip() for line in text.splitlines() if md5 in line]
    assert lines
    live = [line for line in lines if not line.startswith("#")]
    assert bool(live) == verified, f"{md5} in {relative}: {lines}"


def test_unverified_checksum_is_rendered_as_such():
    landmarks = next(i for i in catalog.get_spec("celeba").items if i.name == "list_landmarks_celeba.txt")
    assert not landmarks.verified
    assert ("md5 `063ee6ddb681f96bc9ca28c6febb9d1a` (unverified, from `torchvision/datasets/celeba.py` "
            "(commented-out entry): reported, not enforced)") in catalog.render_markdown()


def test_readme_is_rendered_from_catalog():
    assert catalog.render_markdown() in README.read_text()


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown dataset 'cubb'; known: cub, celeba"):
        catalog.get_spec("cubb")


def test_state_and_require(tmp_path):
    assert catalog.dataset_state("cub", tmp_path)[0] == "missing"
    make_cub(tmp_path)
    assert catalog.dataset_state("cub", tmp_path) == ("present", [])
    assert catalog.require_dataset("cub", tmp_path) == tmp_path / "CUB_200_2011"
    (tmp_path / "CUB_200_2011" / "bounding_boxes.txt").unlink()
    state, missing = catalog.dataset_state("cub", tmp_path)
    assert state == "incomplete" and missing == ["CUB_200_2011/bounding_boxes.txt"]
    with pytest.raises(DatasetMissingError, match=r"CUB-200-2011 incomplete at .*CUB_200_2011 \(missing "
                                                  r"CUB_200_2011/bounding_boxes\.txt\)\. Get it with: attnbook data "
                                                  r"prepare cub --from DIR_WITH_ARCHIVES$"):
        catalog.require_dataset("cub", tmp_path)


def test_alternative_paths_and_env_root(tmp_path, monkeypatch):
    make_mnist(tmp_path, gz=False)  # plain files satisfy "x | x.gz"
    monkeypatch.setenv("ATTNBOOK_DATA", str(tmp_path))
    assert catalog.dataset_state("mnist") == ("present", [])
    assert len(catalog.load_dataset("mnist", split="test", digits=(3, 8))) == 2
