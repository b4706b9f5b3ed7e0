"""The child processes of a batch: each papermill run in a process group of its own, and all of them —
Jupyter kernels included — killed when the batch is interrupted (Ctrl-C) or terminated (SIGTERM, SIGHUP).

Jupyter starts each kernel in a new session, so killing papermill's process group alone would orphan
the kernel; :func:`kill_tree` collects every descendant first (``psutil``, a dependency of ipykernel),
then terminates them and kills what is left after a grace period.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import FrameType

import psutil

GRACE_S = 3.0

_children: dict[int, subprocess.Popen] = {}
_guard = threading.Lock()
_stopping = threading.Event()


class Interrupted(RuntimeError):
    """The batch is being stopped: no new run starts, running ones are killed."""


def stopping() -> bool:
    """Whether the batch is being stopped (:func:`terminate_all` was called)."""
    return _stopping.is_set()


def run(cmd: Sequence[str], *, env: Mapping[str, str], timeout: float | None = None) -> tuple[int, str]:
    """Run ``cmd`` in a new process group; (exit code, stderr). Past ``timeout`` the whole process tree
    is killed and the code is -1. Raises :class:`Interrupted` if the batch is stopping."""
    with _guard:
        if _stopping.is_set():
            raise Interrupted("the batch is stopping")
        proc = subprocess.Popen(list(cmd), env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        _children[proc.pid] = proc
    try:
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_trees([proc.pid])
            _, stderr = proc.communicate()
            return -1, f"TimeoutError: run exceeded {timeout} s\n{stderr or ''}"
        return proc.returncode, stderr or ""
    except BaseException:  # interrupted while waiting (Ctrl-C, SIGTERM in this thread): take the child along
        kill_trees([proc.pid])
        raise
    finally:
        with _guard:
            _children.pop(proc.pid, None)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return []


def _running(proc: psutil.Process) -> bool:
    """Alive and not a zombie (an orphan's zombie may never be reaped in a container: it is dead)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_trees(pids: Sequence[int], grace: float = GRACE_S) -> None:
    """SIGTERM each process of ``pids``, its process group and every descendant (collected first: a
    kernel in its own session is orphaned once its parent dies); SIGKILL survivors after ``grace`` s."""
    procs = [p for pid in pids for p in _tree(pid)]
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    deadline = time.monotonic() + grace
    alive = [p for p in procs if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _running(p)]
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def terminate_all() -> None:
    """Stop the batch: no new child starts, and every running child's tree is killed."""
    _stopping.set()
    with _guard:
        pids = list(_children)
    if pids:
        kill_trees(pids)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def killed_on_exit() -> Iterator[None]:
    """Within: SIGTERM and SIGHUP end the batch like Ctrl-C does (in the main thread); leaving by any
    exception kills every child process tree. Restores the previous handlers."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, _exit_on_signal)
    _stopping.clear()
    try:
        yield
    except BaseException:
        terminate_all()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
