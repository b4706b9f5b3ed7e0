"""Writing files so that a reader never sees a torn one, and where the caches live. One of each.

Every results file, checkpoint and cache of the book goes through :func:`atomic_write`: a temporary
file in the same folder (unique per process and thread), ``fsync``, then ``os.replace`` — readers see
the old file or the complete new one. New files get the mode the user's *current* umask gives
(``mkstemp`` alone would make them 0600), e.g. 0644 under umask 022.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask now (read from ``/proc`` where possible: setting it to read it is racy)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it to ``path``.

    The file gets mode ``0o666 & ~umask``, like any file the user creates."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), 0o666 & ~current_umask())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return atomic_write(path, lambda handle: handle.write(text.encode()))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (NaN refused: JSON has none)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save(obj)`` atomically."""
    import torch

    return atomic_write(path, lambda handle: torch.save(obj, handle))


def cache_dir() -> Path:
    """Where generated data and trained stand-in backbones are cached between runs:
    ``$ATTNBOOK_CACHE`` or ``<repo>/data/cache``."""
    from attnbook.runs import repo_root

    return Path(os.environ.get("ATTNBOOK_CACHE", repo_root() / "data" / "cache"))
