"""``attnbook data``: see which real datasets are on disk, check them, and put user-supplied archives in place.

- ``attnbook data status`` — every catalog dataset: present / incomplete / missing under the data root.
- ``attnbook data verify NAME [--from DIR]`` — layout check, then checksums: published md5s of files in the
  root, the sha256 of every file against the manifest recorded at prepare time (one line per changed,
  missing or extra file), and (with ``--from``) the archives themselves. Exit code 1 on any difference.
- ``attnbook data prepare NAME --from DIR`` — find the dataset's archives/files in ``DIR`` (searched
  recursively), check published md5s (an unverified one is reported, never enforced), record every archive's
  sha256 in ``<root>/.attnbook-checksums.json``, extract (tar, tgz, zip — each into a temporary folder that is
  moved into place only once the archive has been read to the end) or copy them into the root, record the
  sha256 of every resulting file in ``<root>/.attnbook-manifests/NAME.json``, then verify. ``--download``
  instead lets torchvision fetch the datasets it can (only when asked; never in tests; a failure is one line
  and exit code 2); ``--record`` only records the manifest of a copy you extracted yourself.

:func:`register_cli` adds the ``data`` sub-command to an argparse parser; each handler is stored as
``args.func`` and returns an exit code. :func:`main` runs it directly.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import traceback
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from attnbook.data.catalog import CATALOG, DatasetSpec, Item, dataset_state, get_spec
from attnbook.data.real.integrity import (
    RESERVED_PREFIX,
    compare_manifest,
    file_digests,
    hash_files,
    list_files,
    manifest_path,
    manifest_scope,
    read_manifest,
    write_manifest,
)
from attnbook.data.real.paths import ENV_VAR, DatasetFormatError, DatasetMissingError, resolve_root
from attnbook.files import atomic_write_json

CHECKSUM_FILE = ".attnbook-checksums.json"
STAGING_PREFIX = RESERVED_PREFIX + "extract-"
FAILING = ("mismatch", "changed", "missing", "extra")  # check statuses that fail verify


class ChecksumMismatchError(ValueError):
    """A file's checksum differs from the published or recorded one."""


class DownloadError(RuntimeError):
    """``prepare --download`` failed (offline, blocked, quota); the message names the URL and the manual route."""


@dataclass(frozen=True)
class StatusRow:
    """One catalog dataset's state under the data root, with the required paths it lacks."""

    name: str
    state: str  # present | incomplete | missing
    home: Path
    missing: tuple[str, ...]


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``ok``, ``mismatch``, ``unrecorded`` (nothing to compare with), ``unverified``
    (an unverified checksum differs: reported only), ``changed`` / ``missing`` / ``extra`` (a file against
    the manifest) or ``recorded`` (the manifest was just written)."""

    path: str
    status: str
    detail: str


@dataclass
class VerifyReport:
    """What :func:`verify` found for one dataset: the missing layout paths and the checks."""

    name: str
    missing: list[str]
    checks: list[Check] = field(default_factory=list)
    contents_checked: bool = False  # a manifest was compared (or just recorded)

    @property
    def ok(self) -> bool:
        """Whether the layout is complete and no check failed (unverified checksums do not fail)."""
        return not self.missing and all(c.status not in FAILING for c in self.checks)

    @property
    def verdict(self) -> str:
        """``FAILED``, ``OK``, or an OK that says the file contents could not be checked."""
        if not self.ok:
            return "FAILED"
        return "OK" if self.contents_checked else "OK (layout and published checksums only: no manifest recorded)"

    def lines(self) -> list[str]:
        """The report as text: a layout line, then one line per check."""
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


def load_record(root: Path) -> dict:
    """The archive checksums recorded at prepare time: {dataset: {file name: digests}}."""
    path = root / CHECKSUM_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _flat(text: object) -> str:
    """``text`` on one line."""
    return " ".join(str(text).split())


def _brief(err: BaseException, limit: int = 200) -> str:
    """An inner error's text for a one-line message: flattened, at most ``limit`` characters."""
    text = _flat(err) or type(err).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _check(path: Path, label: str, md5: str | None, source: str, recorded: dict | None,
           verified: bool = True) -> Check:
    """Compare a file with its published md5 (enforced only if ``verified``), else its recorded sha256."""
    digests = file_digests(path)
    if md5 and verified:
        good = digests["md5"] == md5
        return Check(label, "ok" if good else "mismatch",
                     f"md5 {digests['md5']}" + ("" if good else f" ≠ published {md5} ({source})"))
    note = (f"unverified checksum differs: md5 {digests['md5']} ≠ {md5} ({source}), not enforced"
            if md5 and digests["md5"] != md5 else "")
    if recorded:
        if digests["sha256"] != recorded["sha256"]:
            return Check(label, "mismatch", f"sha256 {digests['sha256']} ≠ recorded {recorded['sha256']}")
        return Check(label, "unverified" if note else "ok", note or "sha256 as recorded at prepare")
    if note:
        return Check(label, "unverified", note)
    if md5:
        return Check(label, "ok", f"md5 {md5} (matches an unverified checksum)")
    return Check(label, "unrecorded", "no published checksum and none recorded")


def verify(name: str, root: str | os.PathLike | None = None, archive_dir: str | os.PathLike | None = None, *,
           contents: bool = True, progress: bool | None = None) -> VerifyReport:
    """Layout check plus every checksum that can be checked (see the module docstring); ``contents=False``
    skips re-hashing the files against the manifest."""
    spec = get_spec(name)
    root_path = resolve_root(root)
    report = VerifyReport(name, dataset_state(name, root_path)[1])
    recorded = load_record(root_path).get(name, {})
    for file in spec.files:
        if (root_path / file.path).exists():
            report.checks.append(_check(root_path / file.path, file.path, file.md5, file.source, None, file.verified))
    for item in spec.items:
        placed = root_path / item.dest / item.name
        if item.action == "copy" and placed.exists():
            report.checks.append(_check(placed, str(placed.relative_to(root_path)), item.md5, item.md5_source,
                                        recorded.get(item.name), item.verified))
        elif item.action != "copy" and archive_dir is not None:
            found = find_item(Path(archive_dir), item.name)
            if found is not None:
                report.checks.append(_check(found, str(found), item.md5, item.md5_source, recorded.get(item.name),
                                            item.verified))
    if contents:
        _check_manifest(report, spec, root_path, progress)
    return report


def _check_manifest(report: VerifyReport, spec: DatasetSpec, root: Path, progress: bool | None) -> None:
    """Re-hash the dataset's files against its manifest: one line per changed, missing or extra file."""
    label = manifest_path(root, spec.name).relative_to(root).as_posix()
    manifest = read_manifest(root, spec.name)
    if manifest is None:
        report.checks.append(Check(label, "unrecorded", f"no manifest: file contents not checked — record one "
                                   f"with: attnbook data prepare {spec.name} --from DIR (or --record for a copy "
                                   f"you extracted yourself)"))
        return
    diff = compare_manifest(root, manifest, progress=progress)
    report.contents_checked = True
    if diff.clean:
        report.checks.append(Check(label, "ok", f"{diff.recorded} files as recorded at prepare (sha256)"))
        return
    report.checks.append(Check(label, "mismatch", f"{diff.recorded} recorded files: {len(diff.changed)} changed, "
                                                  f"{len(diff.missing)} missing, {len(diff.extra)} extra"))
    report.checks += [Check(rel, "changed", f"sha256 {now[:16]}… ≠ recorded {was[:16]}…" if now else
                            "unreadable now") for rel, was, now in diff.changed]
    report.checks += [Check(rel, "missing", "recorded at prepare, now absent") for rel in diff.missing]
    report.checks += [Check(rel, "extra", "not in the manifest (added after prepare)") for rel in diff.extra]


def find_item(archive_dir: Path, file_name: str) -> Path | None:
    """The first file called ``file_name`` under ``archive_dir`` (searched recursively), else ``None``."""
    direct = archive_dir / file_name
    if direct.is_file():
        return direct
    return next((p for p in sorted(archive_dir.rglob(file_name)) if p.is_file()), None)


def extract(archive: Path, dest: Path) -> list[str]:
    """Unpack a tar (any compression) or zip archive into ``dest``, all or nothing; returns the top-level
    names placed there.

    The members land in a temporary folder inside ``dest`` (same file system), which is moved into place
    (merged folder by folder, files replaced) only once the whole archive has been read; on any failure —
    a truncated download, a member escaping ``dest``, Ctrl-C — the temporary folder and everything in it
    are removed, so no half-extracted tree is left.
    """
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=dest))
    try:
        _unpack(archive, staging)
        names = sorted(p.name for p in staging.iterdir())
        for name in names:
            _move_into(staging / name, dest / name)
        return names
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unpack(archive: Path, dest: Path) -> None:
    """Extract every member of ``archive`` into ``dest``; any failure → one-line :class:`DatasetFormatError`."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    if not (dest / member).resolve().is_relative_to(dest.resolve()):
                        raise DatasetFormatError(f"{archive}: member {member!r} would land outside the target folder")
                zf.extractall(dest)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                tf.extractall(dest, filter="data")
        else:
            raise DatasetFormatError(f"{archive} is neither a tar nor a zip archive; the download is incomplete or "
                                     f"corrupt — download it again")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise DatasetFormatError(f"cannot extract {archive} ({_brief(err)}); the download is incomplete or "
                                 f"corrupt — download it again (nothing was extracted)") from err


def _move_into(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``; folders on both sides are merged, anything else at ``dst`` is replaced."""
    if src.is_dir() and not src.is_symlink() and dst.is_dir() and not dst.is_symlink():
        for child in sorted(src.iterdir()):
            _move_into(child, dst / child.name)
        return
    if dst.is_symlink() or dst.is_file():
        dst.unlink()
    elif dst.exists():
        shutil.rmtree(dst)
    os.replace(src, dst)


def _place(item: Item, source: Path, root: Path) -> list[str]:
    """Extract, copy or link one item into the root; returns what it placed (paths relative to the root)."""
    dest = root / item.dest
    if item.action == "extract":
        return [(dest / name).relative_to(root).as_posix() for name in extract(source, dest)]
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / item.name
    if target.is_symlink() or target.exists():
        target.unlink()
    if item.action == "copy":
        shutil.copy2(source, target)
    else:
        target.symlink_to(source.resolve())
    return [target.relative_to(root).as_posix()]


def prepare(name: str, archive_dir: str | os.PathLike | None = None, root: str | os.PathLike | None = None, *,
            download: bool = False, force: bool = False, record: bool = False, log: Callable[[str], None] = print,
            progress: bool | None = None) -> VerifyReport:
    """Put dataset ``name`` under the root from the user's files in ``archive_dir`` (or by ``download``), or
    with ``record`` take the copy already there as it is; then record its manifest and verify."""
    spec = get_spec(name)
    root_path = resolve_root(root)
    placed: list[str] = []
    if download:
        _download(spec, root_path, log)
    elif record:
        missing = dataset_state(name, root_path)[1]
        if missing:
            raise DatasetMissingError(f"{spec.title} is incomplete under {root_path} (missing {missing[0]}); "
                                      f"complete it before recording its manifest")
    elif archive_dir is None:
        raise ValueError(f"say where the files are: attnbook data prepare {name} --from DIR"
                         + (" (or --download)" if spec.download else ""))
    else:
        placed = _prepare_from(spec, Path(archive_dir), root_path, force, log)
    written = _record_manifest(spec, root_path, placed, progress)
    report = verify(name, root_path, contents=False)
    report.checks.append(written)
    report.contents_checked = True
    return report


def _record_manifest(spec: DatasetSpec, root: Path, placed: Sequence[str], progress: bool | None) -> Check:
    """Hash every file of the dataset's folders (its home, what prepare placed, the catalog's paths outside
    the home) and write the manifest atomically."""
    declared = [alt for path in spec.required + spec.optional for alt in path.split("|")]
    scope = manifest_scope(root, spec.home, [*placed, *declared])
    files = list_files(root, scope)
    digests = hash_files(root, files, progress=progress, desc=f"{spec.name} sha256")
    path = write_manifest(root, spec.name, scope, digests)
    return Check(path.relative_to(root).as_posix(), "recorded",
                 f"{len(files)} files hashed (sha256) under {', '.join(scope)}")


def _prepare_from(spec: DatasetSpec, archive_dir: Path, root: Path, force: bool,
                  log: Callable[[str], None]) -> list[str]:
    """Check, record and place the items found in ``archive_dir``; returns what was placed (root-relative)."""
    if not archive_dir.is_dir():
        raise DatasetMissingError(f"{archive_dir} is not a folder; pass the folder that holds the downloaded files")
    found = {item.name: find_item(archive_dir, item.name) for item in spec.items}
    absent = [item.name for item in spec.items if found[item.name] is None and not item.optional]
    if absent:
        raise DatasetMissingError(f"{spec.title}: {', '.join(absent)} not found under {archive_dir}. "
                                  f"Download them from {spec.url}")
    digests = {name: file_digests(path) for name, path in found.items() if path is not None}
    for item in spec.items:  # every published md5 is checked before anything is extracted
        if not (item.md5 and item.name in digests) or digests[item.name]["md5"] == item.md5:
            continue
        if not item.verified:
            log(f"unverified checksum differs: {found[item.name]}: md5 {digests[item.name]['md5']} ≠ {item.md5} "
                f"({item.md5_source}); not enforced")
        elif not force:
            raise ChecksumMismatchError(
                f"{found[item.name]}: md5 {digests[item.name]['md5']} ≠ published {item.md5} ({item.md5_source}); "
                f"the download is corrupt or a different version — download it again from {spec.url} "
                f"(or pass --force)")
    record = load_record(root)
    entries = record.setdefault(spec.name, {})
    placed: list[str] = []
    for item in spec.items:
        source = found[item.name]
        if source is None:
            log(f"skip   {item.name} (optional, not found)")
            continue
        same = digests[item.name]["md5"] == item.md5
        verdict = ("none published" if not item.md5 else "matches published md5" if same else
                   "unverified checksum differs" if not item.verified else "MISMATCH (forced)")
        entries[item.name] = {**digests[item.name], "published_md5": verdict}
        log(f"{item.action:<7}{source} → {root / item.dest} (md5 {verdict})")
        placed += _place(item, source, root)
    atomic_write_json(root / CHECKSUM_FILE, record)
    if spec.finalize:
        module, function = spec.finalize.split(":")
        getattr(importlib.import_module(module), function)(spec.home_dir(root))
    return placed


def _failed_url(err: BaseException) -> str | None:
    """The URL a failed download was fetching: the innermost ``url`` local of the traceback, if any."""
    url = None
    for frame, _ in traceback.walk_tb(err.__traceback__):
        value = frame.f_locals.get("url")
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            url = value
    return url


def _download(spec: DatasetSpec, root: Path, log: Callable[[str], None]) -> None:
    """Let torchvision fetch the dataset; any failure becomes one :class:`DownloadError` line naming the URL."""
    if spec.download is None:
        raise ValueError(f"{spec.title} has no automatic download; get the files from {spec.url}, then run: "
                         f"attnbook data prepare {spec.name} --from DIR")
    import torchvision.datasets  # only here: downloading is the one place that needs the network

    cls_name, kwargs = spec.download
    log(f"downloading {spec.title} with torchvision.datasets.{cls_name} into {root}")
    root.mkdir(parents=True, exist_ok=True)
    chatter = io.StringIO()  # torchvision prints its retries on stdout; shown only on success
    try:
        with contextlib.redirect_stdout(chatter):
            getattr(torchvision.datasets, cls_name)(str(root), download=True, **kwargs)
    except Exception as err:  # offline (URLError), blocked, quota, missing gdown …: all one line
        raise DownloadError(
            f"{spec.title}: download from {_failed_url(err) or spec.url} failed ({type(err).__name__}: "
            f"{_brief(err)}). Download the files by hand from {spec.url} (on a connected machine) into a folder "
            f"DIR, then run: attnbook data prepare {spec.name} --from DIR") from err
    for line in chatter.getvalue().splitlines():
        log(line)


# --- command line -------------------------------------------------------------------------------------------

def _reporting(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A handler that prints a problem as one ``error:`` line: exit code 2 for a failed download, else 1."""
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except DownloadError as err:
            print(f"error: {_flat(err)}", file=sys.stderr)
            return 2
        except (ValueError, OSError) as err:  # format, checksum, usage and missing-file errors, disk errors
            print(f"error: {_flat(err)}", file=sys.stderr)
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
    print(report.verdict)
    return 0 if report.ok else 1


@_reporting
def _cmd_verify(args: argparse.Namespace) -> int:
    return _print_report(verify(args.name, args.root, args.archive_dir))


@_reporting
def _cmd_prepare(args: argparse.Namespace) -> int:
    return _print_report(prepare(args.name, args.archive_dir, args.root, download=args.download, force=args.force,
                                 record=args.record))


def register_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``data {status, verify, prepare}`` to an argparse sub-parser collection; returns the ``data`` parser."""
    parser = subparsers.add_parser("data", help="see, check and prepare the real datasets",
                                   description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="data_command", required=True)
    root_help = "data root (default: $ATTNBOOK_DATA, else <repo>/data/raw)"

    p_status = commands.add_parser("status", help="which datasets are present")
    p_status.add_argument("--root", help=root_help)
    p_status.set_defaults(func=_cmd_status)

    p_verify = commands.add_parser("verify", help="check a dataset's layout, checksums and file contents")
    p_verify.add_argument("name", choices=list(CATALOG))
    p_verify.add_argument("--root", help=root_help)
    p_verify.add_argument("--from", dest="archive_dir", help="also check the archives in this folder")
    p_verify.set_defaults(func=_cmd_verify)

    p_prepare = commands.add_parser("prepare", help="extract user-supplied archives into the root, then verify")
    p_prepare.add_argument("name", choices=list(CATALOG))
    source = p_prepare.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="archive_dir", help="folder holding the downloaded archives/files")
    source.add_argument("--download", action="store_true", help="let torchvision download it (where it can)")
    source.add_argument("--record", action="store_true",
                        help="record the manifest of a complete copy already in the root (extracted by hand)")
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
