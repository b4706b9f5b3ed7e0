"""``attnbook data`` after faults: content changes that ``verify`` must see (manifest of every extracted file),
offline downloads and truncated archives (one line, nothing half-extracted), unverified checksums (reported,
not enforced). Fixture trees in the official formats, archives made here; no network."""
from __future__ import annotations

import dataclasses
import io
import json
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from real.fixtures import make_celeba, make_cub, make_tar, write_image

from attnbook.data import commands
from attnbook.data.catalog import get_spec
from attnbook.data.commands import main, prepare, verify
from attnbook.data.real import integrity
from attnbook.data.real.base import DatasetFormatError, DatasetMissingError

IMAGES = "CUB_200_2011/images/001.Black_footed_Albatross"


@pytest.fixture()
def cub_downloads(tmp_path) -> Path:
    make_cub(tmp_path / "build")
    downloads = tmp_path / "downloads"
    make_tar(tmp_path / "build", downloads / "CUB_200_2011.tgz", ["CUB_200_2011", "attributes.txt"])
    make_tar(tmp_path / "build", downloads / "segmentations.tgz", ["segmentations"])
    return downloads


def _verify_cli(root: Path, capsys, name: str = "cub") -> tuple[int, list[str]]:
    code = main(["verify", name, "--root", str(root)])
    return code, capsys.readouterr().out.splitlines()


# --- 1. verify checks contents, not just the layout ---------------------------------------------------------

def test_verify_reports_each_changed_missing_and_extra_file(cub_downloads, tmp_path, capsys):
    root = tmp_path / "root"
    assert prepare("cub", cub_downloads, root, log=lambda _: None).ok
    assert _verify_cli(root, capsys) == (0, ["cub: layout complete",
                                             "  ok         .attnbook-manifests/cub.json  22 files as recorded at "
                                             "prepare (sha256)", "OK"])
    boxes = root / "CUB_200_2011" / "bounding_boxes.txt"
    boxes.write_bytes(boxes.read_bytes()[:-12])  # an annotation file truncated
    write_image(root / IMAGES / "bird_0001.jpg", value=255)  # a JPEG overwritten by another valid JPEG
    (root / IMAGES / "bird_0002.jpg").unlink()
    (root / IMAGES / "intruder.jpg").write_bytes(b"\xff\xd8")
    code, lines = _verify_cli(root, capsys)
    assert code == 1 and lines[0] == "cub: layout complete" and lines[-1] == "FAILED"  # the layout is intact
    assert "22 recorded files: 2 changed, 1 missing, 1 extra" in lines[1]
    body = [line.split(maxsplit=2)[:2] for line in lines[2:-1]]
    assert body == [["changed", "CUB_200_2011/bounding_boxes.txt"], ["changed", f"{IMAGES}/bird_0001.jpg"],
                    ["missing", f"{IMAGES}/bird_0002.jpg"], ["extra", f"{IMAGES}/intruder.jpg"]]
    assert "≠ recorded" in lines[2]


def test_manifest_covers_what_prepare_extracted_and_is_written_atomically(cub_downloads, tmp_path, monkeypatch):
    written, real = [], integrity.atomic_write_json
    monkeypatch.setattr(integrity, "atomic_write_json", lambda path, obj: written.append(path) or real(path, obj))
    root = tmp_path / "root"
    prepare("cub", cub_downloads, root, log=lambda _: None)
    assert written == [root / ".attnbook-manifests" / "cub.json"]
    manifest = json.loads(written[0].read_text())
    assert manifest["scope"] == ["CUB_200_2011", "attributes.txt", "segmentations"]  # both archives' top levels
    files = manifest["files"]
    assert len(files) == 22 and "attributes.txt" in files and f"{IMAGES}/bird_0001.jpg" in files
    assert any(f.startswith("segmentations/") for f in files) and not any(".attnbook-" in f for f in files)
    assert files["attributes.txt"] == integrity.file_digests(root / "attributes.txt")["sha256"]


def test_without_manifest_verify_says_so_and_record_adds_one(tmp_path, capsys):
    make_cub(tmp_path)  # extracted by hand: no manifest
    code, lines = _verify_cli(tmp_path, capsys)
    assert code == 0 and lines[-1] == "OK (layout and published checksums only: no manifest recorded)"
    assert lines[1].split()[:2] == ["unrecorded", ".attnbook-manifests/cub.json"] and "--record" in lines[1]
    assert main(["prepare", "cub", "--record", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "OK"
    (tmp_path / "CUB_200_2011" / "classes.txt").write_text("1 tampered\n")
    code, lines = _verify_cli(tmp_path, capsys)
    assert code == 1 and ["changed", "CUB_200_2011/classes.txt"] in [line.split()[:2] for line in lines]
    with pytest.raises(DatasetMissingError, match="complete it before recording"):
        prepare("celeba", root=tmp_path, record=True)


def test_damaged_manifest_is_one_error_line(tmp_path, capsys):
    make_cub(tmp_path)
    assert main(["prepare", "cub", "--record", "--root", str(tmp_path)]) == 0
    (tmp_path / ".attnbook-manifests" / "cub.json").write_text('{"files": [')  # torn by hand
    capsys.readouterr()
    assert main(["verify", "cub", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cub.json is unreadable" in err and "prepare cub --record" in err


def test_reprepare_merges_into_the_existing_tree(cub_downloads, tmp_path):
    root = tmp_path / "root"
    prepare("cub", cub_downloads, root, log=lambda _: None)
    (root / IMAGES / "bird_0001.jpg").write_bytes(b"damaged")
    assert prepare("cub", cub_downloads, root, log=lambda _: None).ok  # the archive's copy wins
    assert verify("cub", root).ok and not list(root.rglob(".attnbook-extract*"))


def test_progress_bar_only_on_a_terminal_for_large_trees(tmp_path, monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(integrity.sys, "stderr", Terminal())
    assert integrity._bar_wanted(None, 10, integrity.BAR_MIN_BYTES)
    assert integrity._bar_wanted(None, integrity.BAR_MIN_FILES, 0)
    assert not integrity._bar_wanted(None, 10, 1000) and not integrity._bar_wanted(False, 10**6, 10**12)
    monkeypatch.setattr(integrity.sys, "stderr", io.StringIO())  # not a terminal
    assert not integrity._bar_wanted(None, 10**6, 10**12)
    monkeypatch.undo()
    make_cub(tmp_path)
    files = integrity.list_files(tmp_path, ["CUB_200_2011"])
    assert integrity.hash_files(tmp_path, files) and capsys.readouterr().err == ""  # small tree, not a tty
    integrity.hash_files(tmp_path, files, progress=True, desc="sha256")
    assert "sha256" in capsys.readouterr().err


# --- 3. offline downloads and truncated archives --------------------------------------------------------------

def _offline(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.mark.parametrize("name,title,url", [
    ("cifar100", "CIFAR-100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
    ("mnist", "MNIST", "mnist/train-images-idx3-ubyte.gz"),  # torchvision tries its mirrors, then gives up
])
def test_offline_download_is_one_line_and_exit_2(name, title, url, tmp_path, monkeypatch, capsys):
    _offline(monkeypatch)
    assert main(["prepare", name, "--download", "--root", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith(f"error: {title}: download from ")
    assert url in captured.err and ("(URLError: " in captured.err or "(RuntimeError: " in captured.err)
    assert captured.err.rstrip().endswith(f"then run: attnbook data prepare {name} --from DIR")
    assert "Failed to download" not in captured.out  # torchvision's retry chatter is swallowed


def test_truncated_archive_leaves_nothing_behind(cub_downloads, tmp_path, capsys):
    archive = cub_downloads / "CUB_200_2011.tgz"
    archive.write_bytes(archive.read_bytes()[: len(archive.read_bytes()) * 3 // 5])
    root = tmp_path / "root"
    with pytest.raises(DatasetFormatError, match=r"cannot extract .*CUB_200_2011\.tgz .*nothing was extracted"):
        prepare("cub", cub_downloads, root, log=lambda _: None)
    assert sorted(p.name for p in root.iterdir()) == []  # no half tree, no staging folder, no record
    assert main(["prepare", "cub", "--from", str(cub_downloads), "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: cannot extract") and not list(root.iterdir())


def test_extract_is_all_or_nothing(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("top/a.txt", "a")
        zf.writestr("top/sub/b.txt", "b")
    dest = tmp_path / "dest"
    (dest / "top").mkdir(parents=True)
    (dest / "top" / "kept.txt").write_text("mine")
    assert commands.extract(good, dest) == ["top"]
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "top/a.txt", "top/kept.txt", "top/sub/b.txt"]  # merged into the existing folder


# --- 4. unverified checksums ----------------------------------------------------------------------------------

def test_unverified_checksum_reported_never_enforced(tmp_path, monkeypatch, capsys):
    """CelebA's list_landmarks_celeba.txt md5 comes from a commented-out line of torchvision: a differing copy
    is reported ("unverified checksum differs") and prepared anyway. (The verified md5s are swapped for the
    fixture's own, so that only the unverified one differs.)"""
    make_celeba(tmp_path / "downloads")
    folder = tmp_path / "downloads" / "celeba"
    with zipfile.ZipFile(folder / "img_align_celeba.zip", "w") as zf:
        for image in sorted((folder / "img_align_celeba").iterdir()):
            zf.write(image, f"img_align_celeba/{image.name}")
    spec = get_spec("celeba")
    items = tuple(dataclasses.replace(item, md5=integrity.file_digests(folder / item.name)["md5"])
                  if item.verified and (folder / item.name).exists() else item for item in spec.items)
    landmarks = next(item for item in items if item.name == "list_landmarks_celeba.txt")
    assert not landmarks.verified and landmarks.md5 == "063ee6ddb681f96bc9ca28c6febb9d1a"
    monkeypatch.setattr(commands, "get_spec", lambda name: dataclasses.replace(spec, items=items))
    logged: list[str] = []
    report = prepare("celeba", tmp_path / "downloads", tmp_path / "root", log=logged.append)
    assert report.ok and (tmp_path / "root" / "celeba" / "list_landmarks_celeba.txt").is_file()
    assert any(line.startswith("unverified checksum differs: ") and "list_landmarks_celeba.txt" in line
               and "not enforced" in line for line in logged)
    assert main(["verify", "celeba", "--root", str(tmp_path / "root")]) == 0
    out = capsys.readouterr().out.splitlines()
    flagged = [line for line in out if line.split()[0] == "unverified"]
    assert len(flagged) == 1 and "celeba/list_landmarks_celeba.txt  unverified checksum differs: md5 " in flagged[0]
    assert out[-1] == "OK"
