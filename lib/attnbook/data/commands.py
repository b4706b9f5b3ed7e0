"""``attnbook data``: see which real datasets are on disk, check them, and put user-supplied archives in place.

- ``attnbook data status`` — every catalog dataset: present / incomplete / missing under the data root.
- ``attnbook data verify NAME [--from DIR]`` — layout check, then checksums: published md5s of files in the
  root, the sha256s recorded at prepare time, and (with ``--from``) the archives themselves.
- ``attnbook data prepare NAME --from DIR`` — find the dataset's archives/files in ``DIR`` (searched
  recursively), check published md5s, record every file's sha256 in ``<root>/.attnbook-checksums.json``,
  extract (tar, tgz, zip) or copy them into the root, then verify. ``--download`` instead lets torchvision
  fetch the datasets it can (only when asked; never in tests).

:func:`register_cli` adds the ``data`` sub-command to an argparse parser; each handler is stored as
``args.func`` and returns an exit code. :func:`main` runs it directly.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import shutil
import sys
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from attnbook.data.catalog import CATALOG, DatasetSpec, Item, dataset_state, get_spec
from attnbook.data.real.base import ENV_VAR, DatasetFormatError, DatasetMissingError, resolve_root

CHECKSUM_FILE = ".attnbook-checksums.json"


class ChecksumMismatchError(ValueError):
    """A file's checksum differs from the published or recorded one."""


@dataclass(frozen=True)
class StatusRow:
    name: str
    state: str  # present | incomplete | missing
    home: Path
    missing: tuple[str, ...]


@dataclass(frozen=True)
class Check:
    path: str
    status: str  # ok | mismatch | unrecorded
    detail: str


@dataclass
class VerifyReport:
    name: str
    missing: list[str]
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and all(c.status != "mismatch" for c in self.checks)

    def lines(self) -> list[str]:
        head = [f"{self.name}: layout complete" if not self.missing else
                f"{self.name}: missing {', '.join(self.missing)}"]
        return head + [f"  {c.status:<10} {c.path}  {c.detail}" for c in self.checks]


def status(root: str | os.PathLike | None = None) -> list[StatusRow]:
    """One row per catalog dataset with its state under ``root``."""
    rows = []
    for name, spec in CATALOG.items():
        state, missing = dataset_state(name, root)
        rows.append(StatusRow(name, state, spec.home_dir(root), tuple(missing)))
    return rows


def file_digests(path: Path, chunk: int = 1 << 20) -> dict[str, object]:
    """md5, sha256 and size of a file, in one pass."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            md5.update(block)
            sha256.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest(), "bytes": path.stat().st_size}


def load_record(root: Path) -> dict:
    """The checksums recorded at prepare time: {dataset: {file name: digests}}."""
    path = root / CHECKSUM_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _save_record(root: Path, record: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{CHECKSUM_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    os.replace(tmp, root / CHECKSUM_FILE)


def _check(path: Path, label: str, md5: str | None, source: str, recorded: dict | None) -> Check:
    """Compare a file with its published md5, else with its recorded sha256."""
    digests = file_digests(path)
    if md5:
        good = digests["md5"] == md5
        return Check(label, "ok" if good else "mismatch",
                     f"md5 {digests['md5']}" + ("" if good else f" ≠ published {md5} ({source})"))
    if recorded:
        good = digests["sha256"] == recorded["sha256"]
        return Check(label, "ok" if good else "mismatch",
                     "sha256 as recorded at prepare" if good else
                     f"sha256 {digests['sha256']} ≠ recorded {recorded['sha256']}")
    return Check(label, "unrecorded", "no published checksum and none recorded")


def verify(name: str, root: str | os.PathLike | None = None,
           archive_dir: str | os.PathLike | None = None) -> VerifyReport:
    """Layout check plus every checksum that can be checked (see the module docstring)."""
    spec = get_spec(name)
    root_path = resolve_root(root)
    report = VerifyReport(name, dataset_state(name, root_path)[1])
    recorded = load_record(root_path).get(name, {})
    for item in spec.files:
        if (root_path / item.path).exists():
            report.checks.append(_check(root_path / item.path, item.path, item.md5, item.source, None))
    for item in spec.items:
        placed = root_path / item.dest / item.name
        if item.action == "copy" and placed.exists():
            report.checks.append(_check(placed, str(placed.relative_to(root_path)), item.md5, item.md5_source,
                                        recorded.get(item.name)))
        elif item.action != "copy" and archive_dir is not None:
            found = find_item(Path(archive_dir), item.name)
            if found is not None:
                report.checks.append(_check(found, str(found), item.md5, item.md5_source, recorded.get(item.name)))
    return report


def find_item(archive_dir: Path, file_name: str) -> Path | None:
    """The first file called ``file_name`` under ``archive_dir`` (searched recursively), else ``None``."""
    direct = archive_dir / file_name
    if direct.is_file():
        return direct
    return next((p for p in sorted(archive_dir.rglob(file_name)) if p.is_file()), None)


def extract(archive: Path, dest: Path) -> None:
    """Unpack a tar (any compression) or zip archive into ``dest``, refusing members that escape it."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    if not (dest / member).resolve().is_relative_to(dest.resolve()):
                        raise DatasetFormatError(f"{archive}: member {member!r} would land outside {dest}")
                zf.extractall(dest)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                tf.extractall(dest, filter="data")
        else:
            raise DatasetFormatError(f"{archive} is neither a tar nor a zip archive; the download is incomplete or "
                                     f"corrupt — download it again")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise DatasetFormatError(f"cannot extract {archive} ({err}); the download is incomplete or corrupt — "
                                 f"download it again") from err


def _place(item: Item, source: Path, root: Path) -> None:
    dest = root / item.dest
    if item.action == "extract":
        extract(source, dest)
        return
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / item.name
    if target.is_symlink() or target.exists():
        target.unlink()
    if item.action == "copy":
        shutil.copy2(source, target)
    else:
        target.symlink_to(source.resolve())


def prepare(name: str, archive_dir: str | os.PathLike | None = None, root: str | os.PathLike | None = None, *,
            download: bool = False, force: bool = False, log: Callable[[str], None] = print) -> VerifyReport:
    """Put dataset ``name`` under the root from the user's files in ``archive_dir`` (or by ``download``)."""
    spec = get_spec(name)
    root_path = resolve_root(root)
    if download:
        _download(spec, root_path, log)
    elif archive_dir is None:
        raise ValueError(f"say where the files are: attnbook data prepare {name} --from DIR"
                         + (" (or --download)" if spec.download else ""))
    else:
        _prepare_from(spec, Path(archive_dir), root_path, force, log)
    return verify(name, root_path)


def _prepare_from(spec: DatasetSpec, archive_dir: Path, root: Path, force: bool, log: Callable[[str], None]) -> None:
    if not archive_dir.is_dir():
        raise DatasetMissingError(f"{archive_dir} is not a folder; pass the folder that holds the downloaded files")
    found = {item.name: find_item(archive_dir, item.name) for item in spec.items}
    absent = [item.name for item in spec.items if found[item.name] is None and not item.optional]
    if absent:
        raise DatasetMissingError(f"{spec.title}: {', '.join(absent)} not found under {archive_dir}. "
                                  f"Download them from {spec.url}")
    digests = {name: file_digests(path) for name, path in found.items() if path is not None}
    for item in spec.items:  # every published md5 is checked before anything is extracted
        if item.md5 and item.name in digests and digests[item.name]["md5"] != item.md5 and not force:
            raise ChecksumMismatchError(
                f"{found[item.name]}: md5 {digests[item.name]['md5']} ≠ published {item.md5} ({item.md5_source}); "
                f"the download is corrupt or a different version — download it again from {spec.url} "
                f"(or pass --force)")
    record = load_record(root)
    entries = record.setdefault(spec.name, {})
    for item in spec.items:
        source = found[item.name]
        if source is None:
            log(f"skip   {item.name} (optional, not found)")
            continue
        verdict = ("none published" if not item.md5 else
                   "matches published md5" if digests[item.name]["md5"] == item.md5 else "MISMATCH (forced)")
        entries[item.name] = {**digests[item.name], "published_md5": verdict}
        log(f"{item.action:<7}{source} → {root / item.dest} (md5 {verdict})")
        _place(item, source, root)
    _save_record(root, record)
    if spec.finalize:
        module, function = spec.finalize.split(":")
        getattr(importlib.import_module(module), function)(spec.home_dir(root))


def _download(spec: DatasetSpec, root: Path, log: Callable[[str], None]) -> None:
    if spec.download is None:
        raise ValueError(f"{spec.title} has no automatic download; get the files from {spec.url}, then run: "
                         f"attnbook data prepare {spec.name} --from DIR")
    import torchvision.datasets  # only here: downloading is the one place that needs the network

    cls_name, kwargs = spec.download
    log(f"downloading {spec.title} with torchvision.datasets.{cls_name} into {root}")
    root.mkdir(parents=True, exist_ok=True)
    getattr(torchvision.datasets, cls_name)(str(root), download=True, **kwargs)


# --- command line -------------------------------------------------------------------------------------------

def _reporting(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A handler that prints a dataset problem as one ``error:`` line and returns exit code 1."""
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (DatasetMissingError, ValueError) as err:  # format, checksum and usage errors are ValueErrors
            print(f"error: {err}", file=sys.stderr)
            return 1

    return run


@_reporting
def _cmd_status(args: argparse.Namespace) -> int:
    root = resolve_root(args.root)
    print(f"data root: {root}  (set with --root or ${ENV_VAR})")
    print(f"{'dataset':<16}{'state':<12}folder under the root")
    for row in status(root):
        note = f"  (missing {row.missing[0]}{' …' if len(row.missing) > 1 else ''})" if row.missing else ""
        print(f"{row.name:<16}{row.state:<12}{row.home.relative_to(root)}{note}")
    return 0


def _print_report(report: VerifyReport) -> int:
    print("\n".join(report.lines()))
    print("OK" if report.ok else "FAILED")
    return 0 if report.ok else 1


@_reporting
def _cmd_verify(args: argparse.Namespace) -> int:
    return _print_report(verify(args.name, args.root, args.archive_dir))


@_reporting
def _cmd_prepare(args: argparse.Namespace) -> int:
    return _print_report(prepare(args.name, args.archive_dir, args.root, download=args.download, force=args.force))


def register_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``data {status, verify, prepare}`` to an argparse sub-parser collection; returns the ``data`` parser."""
    parser = subparsers.add_parser("data", help="see, check and prepare the real datasets",
                                   description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="data_command", required=True)
    root_help = "data root (default: $ATTNBOOK_DATA, else <repo>/data/raw)"

    p_status = commands.add_parser("status", help="which datasets are present")
    p_status.add_argument("--root", help=root_help)
    p_status.set_defaults(func=_cmd_status)

    p_verify = commands.add_parser("verify", help="check a dataset's layout and checksums")
    p_verify.add_argument("name", choices=list(CATALOG))
    p_verify.add_argument("--root", help=root_help)
    p_verify.add_argument("--from", dest="archive_dir", help="also check the archives in this folder")
    p_verify.set_defaults(func=_cmd_verify)

    p_prepare = commands.add_parser("prepare", help="extract user-supplied archives into the root, then verify")
    p_prepare.add_argument("name", choices=list(CATALOG))
    source = p_prepare.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="archive_dir", help="folder holding the downloaded archives/files")
    source.add_argument("--download", action="store_true", help="let torchvision download it (where it can)")
    p_prepare.add_argument("--root", help=root_help)
    p_prepare.add_argument("--force", action="store_true", help="extract even if a published md5 differs")
    p_prepare.set_defaults(func=_cmd_prepare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``attnbook data …`` with ``argv`` (the words after ``data``); returns the exit code."""
    parser = argparse.ArgumentParser(prog="attnbook")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
