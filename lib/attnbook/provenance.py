"""What produced a result: the code version of this package, the git commit, package versions.

:func:`code_version` hashes the package's own source (``lib/attnbook/**/*.py`` and its JSON schemas),
so it changes with any edit of the code that computes results, committed or not; ``metrics.json``,
``status.json`` and training checkpoints record it, and a run recorded under another code version is
*stale* (``attnbook run`` reruns it). The git commit says where to find that code again.
"""
from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

PROVENANCE_PACKAGES = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "papermill", "attnbook")
CODE_VERSION_LENGTH = 12


def package_dir() -> Path:
    """The ``attnbook`` package folder (``lib/attnbook`` in a checkout)."""
    return Path(__file__).resolve().parent


def code_files(root: Path | None = None) -> list[Path]:
    """The files whose content is the code version: every ``*.py`` and the schemas, sorted."""
    root = root or package_dir()
    files = [p for p in root.rglob("*.py") if "__pycache__" not in p.parts]
    files += list((root / "schemas").glob("*.json"))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def hash_code(root: Path) -> str:
    """The code version of the package at ``root`` (see :func:`code_version`)."""
    digest = hashlib.sha256()
    for path in code_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:CODE_VERSION_LENGTH]


@functools.cache
def code_version() -> str:
    """12 hex digits of the SHA-256 of this package's source files and schemas (computed once per process)."""
    return hash_code(package_dir())


def git_state(root: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout, or (None, None) outside git."""
    root = root or package_dir().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, check=True, timeout=10).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return None, None


def package_versions(names: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, str]:
    """Python's version and that of each installed package in ``names`` (missing ones are left out)."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def jsonable(value: Any, what: str = "value") -> Any:
    """``value`` as plain JSON types (dataclasses → dicts, tuples → lists, paths → strings, numpy/torch
    scalars → numbers); anything else raises ``TypeError`` naming ``what``."""
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value), what)
    if isinstance(value, Mapping):
        return {str(key): jsonable(item, what) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item, what) for item in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if callable(getattr(value, "item", None)):  # numpy / torch scalars
        return jsonable(value.item(), what)
    raise TypeError(f"{what}: {value!r} ({type(value).__name__}) is not JSON-able; pass plain values")
