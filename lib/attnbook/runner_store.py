"""A batch's results folder, safe under faults and concurrency: run states, one lock per run,
finalising a run folder, cleaning what dead processes left behind.

* :func:`run_state` — ``missing`` / ``incomplete`` / ``stale`` (complete, but recorded by another code
  version, :func:`attnbook.provenance.code_version`) / ``complete``.
* :class:`RunLock` — ``results/<notebook>/.locks/<run-id>.lock``, an ``flock``: two processes (or two
  threads) never run the same run at once, and the kernel releases it when its holder dies, so a lock
  is never stale.
* :func:`finalize` — moves a finished work folder into place; a failed rerun never replaces a complete
  run, and concurrent finalisations cannot collide on a trash folder.
* :func:`clean_leftovers` / :func:`sweep_leftovers` — ``.<run-id>.partial-*`` and ``.old-*`` folders of
  runs whose lock is free belong to dead processes and are removed.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from attnbook import runs
from attnbook.files import atomic_write_json
from attnbook.provenance import code_version

LOCKS_DIR = ".locks"
MISSING, INCOMPLETE, STALE, COMPLETE = "missing", "incomplete", "stale", "complete"
_LEFTOVER = re.compile(r"^\.(?P<rid>.+)\.(?:partial|old)-\d+-\d+$")


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """``status.json`` of a run folder, or ``None`` when missing or unreadable."""
    try:
        status = json.loads((Path(run_dir) / runs.STATUS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return status if isinstance(status, dict) else None


def run_state(run_dir: Path, code: str | None = None) -> str:
    """``missing``, ``incomplete`` (no valid complete record), ``stale`` (complete, but its
    ``code_version`` is not ``code``, default: this process's) or ``complete``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return MISSING
    status = read_status(run_dir)
    if status is None or status.get("status") != "complete":
        return INCOMPLETE
    try:
        record = runs.read_record(run_dir)
    except runs.ResultsError:
        return INCOMPLETE
    return COMPLETE if record.get("code_version") == (code or code_version()) else STALE


def is_complete(run_dir: Path, *, allow_stale: bool = False) -> bool:
    """Whether ``run_dir`` holds a finished run of the current code (of any code with ``allow_stale``)."""
    state = run_state(run_dir)
    return state == COMPLETE or (allow_stale and state == STALE)


class RunLock:
    """An exclusive, non-blocking lock on one run (``flock`` on ``.locks/<run-id>.lock`` beside it).

    ``acquire()`` returns ``False`` when another process or thread holds it. Lock files stay in place
    (deleting them would race with a waiting locker); they are empty apart from the holder's pid."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir).parent / LOCKS_DIR / f"{Path(run_dir).name}.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock if it is free; ``OSError`` if the lock file cannot be created."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        """Let go of the lock (a no-op if not held)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def work_dir(run_dir: Path) -> Path:
    """A fresh, unique work folder name for a run: ``.<run-id>.partial-<pid>-<ns>`` beside it."""
    return run_dir.with_name(f".{run_dir.name}.partial-{os.getpid()}-{time.time_ns()}")


def _trash_name(run_dir: Path, rid: str) -> Path:
    return run_dir.with_name(f".{rid}.old-{os.getpid()}-{time.time_ns()}")


def finalize(run_dir: Path, work: Path, status: dict[str, Any], attempts: int = 5) -> Path:
    """Write ``status.json`` into ``work`` and move it to ``run_dir`` (a failed run whose folder holds a
    complete run — of any code version — goes to ``<run-id>.failed`` instead); returns the final folder.

    The previous folder is renamed to a unique trash name first and removed after; if another writer
    recreates the target in between, the move is retried."""
    atomic_write_json(work / runs.STATUS_FILE, status)
    final = Path(run_dir)
    if status["status"] != "complete" and is_complete(final, allow_stale=True):
        final = final.with_name(final.name + ".failed")
    for _ in range(attempts):
        trash = None
        if final.exists() or final.is_symlink():
            trash = _trash_name(final, run_dir.name)
            try:
                final.rename(trash)
            except FileNotFoundError:
                trash = None
        try:
            work.rename(final)
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            continue  # the target came back meanwhile: move it aside again
        finally:
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
        return final
    raise OSError(errno.EEXIST, f"could not move {work} to {final}: it keeps being recreated")


def delete_checkpoints(directory: Path) -> bool:
    """Remove a run's checkpoint folder; whether there was one."""
    existed = Path(directory).exists()
    shutil.rmtree(directory, ignore_errors=True)
    return existed


def clean_leftovers(run_dir: Path) -> list[Path]:
    """Remove this run's ``.partial-*`` / ``.old-*`` folders. Call it holding the run's lock: no live
    process is then writing them."""
    removed = []
    parent = Path(run_dir).parent
    if not parent.is_dir():
        return removed
    for path in parent.iterdir():
        match = _LEFTOVER.match(path.name)
        if match and match["rid"] == Path(run_dir).name:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def sweep_leftovers(notebook_dir: Path) -> list[Path]:
    """Remove the leftovers of every run in ``notebook_dir`` whose lock is free (their writers died)."""
    notebook_dir = Path(notebook_dir)
    if not notebook_dir.is_dir():
        return []
    rids = {m["rid"] for p in notebook_dir.iterdir() if (m := _LEFTOVER.match(p.name))}
    removed: list[Path] = []
    for rid in sorted(rids):
        lock = RunLock(notebook_dir / rid)
        try:
            if not lock.acquire():
                continue
        except OSError:
            continue
        with lock:
            removed += clean_leftovers(notebook_dir / rid)
    return removed
