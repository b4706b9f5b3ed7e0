"""File hashes and the per-dataset content manifest that ``attnbook data prepare`` records and ``verify`` checks.

A manifest lists every file of a dataset's folders, as ``prepare`` left them, with its sha256:
``<root>/.attnbook-manifests/<name>.json`` = ``{"dataset", "algorithm": "sha256", "scope": [paths],
"files": {relative path: sha256}}``, written atomically (:func:`attnbook.files.atomic_write_json`).
``scope`` is the folders (and loose files) it covers, relative to the data root; a file found there later
that the manifest lacks is *extra*, one it lists that is gone is *missing*, one whose hash differs is
*changed*. Names starting with ``.attnbook-`` (manifests, records, staging folders) are never part of a
dataset.

Hashing is I/O-bound: files are read in 1 MiB blocks by a few threads (``hashlib`` releases the GIL), with
a tqdm bar on a terminal for large trees.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from attnbook.data.real.paths import DatasetFormatError
from attnbook.files import atomic_write_json

RESERVED_PREFIX = ".attnbook-"  # our own files and folders under the data root
MANIFEST_DIR = ".attnbook-manifests"
BAR_MIN_BYTES = 64 << 20  # show a progress bar from this much data …
BAR_MIN_FILES = 2000  # … or this many files (and only on a terminal)
_CHUNK = 1 << 20
_BATCH = 4096  # files handed to the reader threads at a time


def file_hashes(path: Path, algorithms: Sequence[str] = ("sha256",)) -> dict[str, str]:
    """Hex digests of ``path`` for each of ``algorithms`` (``hashlib`` names), in one read."""
    hashers = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            for hasher in hashers.values():
                hasher.update(block)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def file_digests(path: Path) -> dict[str, object]:
    """md5, sha256 and size of a file, in one pass."""
    return {**file_hashes(path, ("md5", "sha256")), "bytes": path.stat().st_size}


def _within(path: str, folder: str) -> bool:
    """Whether relative posix ``path`` is ``folder`` or lies inside it (``""`` is the root: everything)."""
    return folder in ("", ".") or path == folder or path.startswith(folder.rstrip("/") + "/")


def manifest_scope(root: Path, home: str, candidates: Iterable[str]) -> list[str]:
    """The paths a dataset's manifest covers: its ``home`` folder plus every existing candidate (placed by
    prepare, or named by the catalog) outside it. A candidate that contains ``home`` (e.g. ``VOCdevkit``
    around ``VOCdevkit/VOC2012``) adds nothing: only ``home`` is the dataset's."""
    scope = [PurePosixPath(home).as_posix()]
    for rel in sorted({PurePosixPath(c.strip()).as_posix() for c in candidates if c.strip()}):
        if rel in (".", "") or _within(home, rel) or any(_within(rel, s) for s in scope):
            continue
        if (root / rel).exists():
            scope = [s for s in scope if not _within(s, rel)] + [rel]
    return sorted(scope)


def list_files(root: Path, scope: Sequence[str]) -> list[str]:
    """Every regular file under the ``scope`` paths (relative to ``root``), as sorted posix paths; names
    starting with ``.attnbook-`` are skipped at every level."""
    found: set[str] = set()
    for rel in scope:
        top = root / rel
        if top.is_file():
            found.add(PurePosixPath(rel).as_posix())
            continue
        for folder, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if not d.startswith(RESERVED_PREFIX)]
            base = Path(folder)
            for name in files:
                if not name.startswith(RESERVED_PREFIX) and (base / name).is_file():
                    found.add((base / name).relative_to(root).as_posix())
    return sorted(found)


def _bar_wanted(progress: bool | None, n_files: int, n_bytes: int) -> bool:
    if progress is not None:
        return progress
    return sys.stderr.isatty() and (n_bytes >= BAR_MIN_BYTES or n_files >= BAR_MIN_FILES)


def hash_files(root: Path, rels: Sequence[str], *, progress: bool | None = None, workers: int | None = None,
               desc: str = "sha256") -> dict[str, str | None]:
    """sha256 of each file ``root / rel``; ``None`` for a file that vanished or cannot be read.

    ``progress=None`` shows a tqdm bar (bytes) only on a terminal and for large trees.
    """
    sizes = {}
    for rel in rels:
        try:
            sizes[rel] = (root / rel).stat().st_size
        except OSError:
            sizes[rel] = 0

    def one(rel: str) -> tuple[str, str | None]:
        try:
            return rel, file_hashes(root / rel)["sha256"]
        except OSError:
            return rel, None

    out: dict[str, str | None] = {}
    workers = workers or min(8, os.cpu_count() or 1)
    with tqdm(total=sum(sizes.values()), unit="B", unit_scale=True, desc=desc, leave=False,
              disable=not _bar_wanted(progress, len(rels), sum(sizes.values()))) as bar, \
            ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(rels), _BATCH):  # batches: a million pending futures would cost memory
            for rel, digest in pool.map(one, rels[start:start + _BATCH]):
                out[rel] = digest
                bar.update(sizes[rel])
    return out


def manifest_path(root: Path, name: str) -> Path:
    """Where dataset ``name``'s manifest lives under the data root."""
    return root / MANIFEST_DIR / f"{name}.json"


def write_manifest(root: Path, name: str, scope: Sequence[str], files: dict[str, str | None]) -> Path:
    """Write dataset ``name``'s manifest atomically; unreadable files (``None``) are left out."""
    return atomic_write_json(manifest_path(root, name), {
        "dataset": name, "algorithm": "sha256", "scope": list(scope),
        "files": {rel: digest for rel, digest in sorted(files.items()) if digest is not None}})


def read_manifest(root: Path, name: str) -> dict | None:
    """Dataset ``name``'s manifest, ``None`` when none was recorded; a damaged one raises
    :class:`DatasetFormatError` naming it."""
    path = manifest_path(root, name)
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        if not (isinstance(manifest.get("files"), dict) and isinstance(manifest.get("scope"), list)):
            raise ValueError("no 'files' / 'scope'")
    except (ValueError, AttributeError, UnicodeDecodeError) as err:
        raise DatasetFormatError(f"manifest {path} is unreadable ({err}); record it again with: "
                                 f"attnbook data prepare {name} --record") from None
    return manifest


@dataclass
class ManifestDiff:
    """How the files on disk differ from a manifest."""

    recorded: int
    changed: list[tuple[str, str, str | None]] = field(default_factory=list)  # (path, recorded, now)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Whether every recorded file is there, unchanged, and nothing was added."""
        return not (self.changed or self.missing or self.extra)


def compare_manifest(root: Path, manifest: dict, *, progress: bool | None = None) -> ManifestDiff:
    """Re-hash the files a manifest lists (and look for new ones in its scope)."""
    recorded: dict[str, str] = manifest["files"]
    present = list_files(root, manifest["scope"])
    on_disk = set(present)
    diff = ManifestDiff(recorded=len(recorded))
    diff.missing = sorted(rel for rel in recorded if rel not in on_disk)
    diff.extra = [rel for rel in present if rel not in recorded]
    now = hash_files(root, [rel for rel in present if rel in recorded], progress=progress, desc="verify")
    diff.changed = [(rel, recorded[rel], digest) for rel, digest in now.items() if digest != recorded[rel]]
    return diff
