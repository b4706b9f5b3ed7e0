"""``attnbook data``: prepare from tar and zip archives made here, status, verify (published md5s,
recorded sha256s, archives), the errors, and the argparse wiring. No network."""
from __future__ import annotations

import argparse
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from real.fixtures import make_cats_vs_dogs, make_celeba, make_cifar100, make_cub, make_stanford_cars, make_tar

from attnbook.data import commands
from attnbook.data.catalog import dataset_state
from attnbook.data.commands import ChecksumMismatchError, main, prepare, register_cli, status, verify
from attnbook.data.real.base import DatasetFormatError, DatasetMissingError
from attnbook.data.real.cub import CUB200


@pytest.fixture()
def cub_archives(tmp_path) -> Path:
    """CUB_200_2011.tgz (with the top-level attributes.txt) and segmentations.tgz, in a nested download folder."""
    make_cub(tmp_path / "build")
    downloads = tmp_path / "downloads"
    make_tar(tmp_path / "build", downloads / "CUB_200_2011.tgz", ["CUB_200_2011", "attributes.txt"])
    make_tar(tmp_path / "build", downloads / "extra" / "segmentations.tgz", ["segmentations"])
    return downloads


def test_prepare_from_tgz_then_load(cub_archives, tmp_path):
    root = tmp_path / "root"
    logged: list[str] = []
    report = prepare("cub", cub_archives, root, log=logged.append)
    assert report.ok and dataset_state("cub", root)[0] == "present"
    assert len(CUB200(root, split="all", masks=True, attributes="image")) == 6
    record = json.loads((root / commands.CHECKSUM_FILE).read_text())["cub"]
    assert set(record) == {"CUB_200_2011.tgz", "segmentations.tgz"}
    assert record["CUB_200_2011.tgz"]["sha256"] == commands.file_digests(cub_archives / "CUB_200_2011.tgz")["sha256"]
    assert record["CUB_200_2011.tgz"]["published_md5"] == "none published"
    assert any("segmentations.tgz" in line for line in logged)


def test_verify_archives_against_record(cub_archives, tmp_path):
    root = tmp_path / "root"
    prepare("cub", cub_archives, root, log=lambda _: None)
    assert all(c.status == "ok" for c in verify("cub", root, cub_archives).checks)
    with open(cub_archives / "CUB_200_2011.tgz", "ab") as handle:
        handle.write(b"tampered")
    report = verify("cub", root, cub_archives)
    assert not report.ok and [c.status for c in report.checks].count("mismatch") == 1


def test_prepare_from_zip_with_optional_missing(tmp_path):
    make_cats_vs_dogs(tmp_path / "build")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with zipfile.ZipFile(downloads / "kagglecatsanddogs_5340.zip", "w") as zf:
        for path in sorted((tmp_path / "build").rglob("*")):
            zf.write(path, path.relative_to(tmp_path / "build"))
    assert prepare("cats_vs_dogs", downloads, tmp_path / "root", log=lambda _: None).ok
    assert (tmp_path / "root" / "PetImages" / "Dog" / "4.jpg").is_file()


def test_prepare_names_missing_archives(tmp_path):
    (tmp_path / "downloads").mkdir()
    with pytest.raises(DatasetMissingError, match=r"CUB_200_2011\.tgz not found under .*vision\.caltech\.edu"):
        prepare("cub", tmp_path / "downloads", tmp_path / "root")
    with pytest.raises(ValueError, match="--from DIR"):
        prepare("cub", None, tmp_path / "root")


def test_prepare_stops_on_published_md5_mismatch(tmp_path):
    make_celeba(tmp_path / "downloads", in_the_wild=False)
    folder = tmp_path / "downloads" / "celeba"
    with zipfile.ZipFile(folder / "img_align_celeba.zip", "w") as zf:
        for image in sorted((folder / "img_align_celeba").iterdir()):
            zf.write(image, f"img_align_celeba/{image.name}")
    shutil.rmtree(folder / "img_align_celeba")
    with pytest.raises(ChecksumMismatchError, match=r"img_align_celeba\.zip: md5 .* ≠ published "
                                                    r"00d2c5bc6d35e252742224ab0c1e8fcb .*--force"):
        prepare("celeba", tmp_path / "downloads", tmp_path / "root")
    assert not (tmp_path / "root" / "celeba").exists()  # nothing extracted
    report = prepare("celeba", tmp_path / "downloads", tmp_path / "root", force=True, log=lambda _: None)
    assert not report.missing and not report.ok  # forced in, but the copied lists still mismatch
    copies = [c for c in report.checks if c.path.endswith(".txt")]
    assert len(copies) == 4 and {c.status for c in copies} == {"mismatch"}
    assert report.checks[-1].status == "recorded"  # the manifest of what was extracted


def test_verify_detects_published_md5_mismatch(tmp_path):
    make_cifar100(tmp_path)  # pickles of our own: not the published bytes
    report = verify("cifar100", tmp_path)
    assert not report.missing and not report.ok
    assert [c.path for c in report.checks if c.status == "mismatch"] == [
        "cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"]
    assert "16019d7e3df5f24257cddd939b257f8d" in report.checks[0].detail


def test_verify_detects_change_of_recorded_file(tmp_path):
    make_stanford_cars(tmp_path / "build")
    home = tmp_path / "build" / "stanford_cars"
    downloads = tmp_path / "downloads"
    for folder in ("devkit", "cars_train", "cars_test"):
        make_tar(home, downloads / f"{'car_devkit' if folder == 'devkit' else folder}.tgz", [folder])
    shutil.copy(home / "cars_test_annos_withlabels.mat", downloads)
    root = tmp_path / "root"
    assert prepare("stanford_cars", downloads, root, log=lambda _: None).ok
    placed = root / "stanford_cars" / "cars_test_annos_withlabels.mat"
    mat, manifest = "stanford_cars/cars_test_annos_withlabels.mat", ".attnbook-manifests/stanford_cars.json"
    assert [(c.path, c.status) for c in verify("stanford_cars", root).checks] == [(mat, "ok"), (manifest, "ok")]
    placed.write_bytes(placed.read_bytes()[:-10])
    assert [(c.path, c.status) for c in verify("stanford_cars", root).checks] == [
        (mat, "mismatch"), (manifest, "mismatch"), (mat, "changed")]


def test_extract_refuses_escaping_and_garbage(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.txt", "x")
    with pytest.raises(DatasetFormatError, match="outside"):
        commands.extract(evil, tmp_path / "dest")
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"not an archive")
    with pytest.raises(DatasetFormatError, match="neither a tar nor a zip"):
        commands.extract(junk, tmp_path / "dest")


def test_download_only_where_supported(tmp_path):
    with pytest.raises(ValueError, match="CUB-200-2011 has no automatic download; get the files from"):
        prepare("cub", root=tmp_path, download=True)


def test_status_rows(tmp_path):
    make_cub(tmp_path)
    (tmp_path / "celeba").mkdir()
    rows = {row.name: row for row in status(tmp_path)}
    assert rows["cub"].state == "present" and rows["celeba"].state == "incomplete"
    assert rows["mnist"].state == "missing" and rows["mnist"].home == tmp_path / "MNIST" / "raw"


def test_cli_status_verify_and_errors(tmp_path, capsys):
    make_cub(tmp_path)
    assert main(["status", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"data root: {tmp_path}" in out
    assert any(line.split()[:2] == ["cub", "present"] for line in out.splitlines())
    assert any(line.split()[:2] == ["imagenet", "missing"] for line in out.splitlines())
    assert main(["verify", "cub", "--root", str(tmp_path)]) == 0 and "OK" in capsys.readouterr().out
    assert main(["verify", "mnist", "--root", str(tmp_path)]) == 1
    assert main(["prepare", "cub", "--root", str(tmp_path), "--from", str(tmp_path / "nowhere")]) == 1
    assert "is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["prepare", "cub"])  # --from or --download is required


def test_register_cli_adds_data_command():
    parser = argparse.ArgumentParser(prog="attnbook")
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "verify", "cub", "--from", "/tmp/x"])
    assert args.command == "data" and args.name == "cub" and args.archive_dir == "/tmp/x" and callable(args.func)
