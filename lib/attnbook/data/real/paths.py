"""Where the real datasets live and the errors that name the fix: the light part of the loaders' machinery.

No torch import, so the CLI's ``data`` commands and ``attnbook list`` start fast. The loaders' base
class and parsing helpers are in :mod:`attnbook.data.real.base`.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

ENV_VAR = "ATTNBOOK_DATA"


class DatasetMissingError(FileNotFoundError):
    """A dataset (or a part of it) is not on disk; the message names the missing path and the command to get it."""


class DatasetFormatError(ValueError):
    """A dataset file is present but unreadable (truncated, malformed); the message names the file and line."""


class CorruptImageError(DatasetFormatError):
    """An image file cannot be decoded; the message names the file."""


def default_root() -> Path:
    """The data root: ``$ATTNBOOK_DATA`` if set, else ``<repo>/data/raw``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[4] / "data" / "raw"


def resolve_root(root: str | os.PathLike | None) -> Path:
    """``root`` if given, else :func:`default_root`."""
    return default_root() if root is None else Path(root).expanduser()


def prepare_hint(name: str, downloadable: bool = False) -> str:
    """The command that fixes a missing dataset."""
    hint = f"attnbook data prepare {name} --from DIR_WITH_ARCHIVES"
    return hint + (f" (or: attnbook data prepare {name} --download)" if downloadable else "")


def missing_paths(root: Path, paths: Sequence[str]) -> list[str]:
    """Entries of ``paths`` (relative to ``root``; ``"a | b"`` = either) with no existing file or folder."""
    return [p for p in paths if not any((root / alt.strip()).exists() for alt in p.split("|"))]


def first_existing(root: Path, alternatives: Sequence[str]) -> Path | None:
    """The first of ``alternatives`` (relative to ``root``) that exists, else ``None``."""
    return next((root / a for a in alternatives if (root / a).exists()), None)
