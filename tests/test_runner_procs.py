"""Killing a batch kills its runs: papermill and the Jupyter kernel it starts in a session of its own."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

# A stand-in for papermill: it starts a "kernel" in a new session (as jupyter_client does), writes both
# pids, and waits.
CHILD = """
import subprocess, sys, time
kernel = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
open(sys.argv[1], "w").write(f"{__import__('os').getpid()} {kernel.pid}")
time.sleep(120)
"""

# The batch: runs CHILD through runner_procs.run inside killed_on_exit, as run_batch does.
BATCH = """
import os, sys
from attnbook import runner_procs as procs
with procs.killed_on_exit():
    procs.run([sys.executable, "-c", sys.argv[1], sys.argv[2]], env=os.environ)
"""

# The same through run_batch: the runs execute in worker threads (--jobs 2) while the main thread waits.
RUN_BATCH = """
import os, sys
from pathlib import Path
from attnbook import runner, runner_procs as procs
runner._papermill = lambda cmd, env, timeout: procs.run([sys.executable, "-c", sys.argv[1], sys.argv[2]], env=env)
spec = runner.RunSpec(Path("99_fixture.ipynb"), {"profile": "smoke", "seed": 0}, Path(sys.argv[3]))
runner.run_batch([spec], jobs=2, progress=False)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 60) -> list[int]:
    deadline = time.monotonic() + seconds
    while not (path.is_file() and len(path.read_text().split()) == 2):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "batch died"
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    return [int(p) for p in path.read_text().split()]


@pytest.mark.parametrize("sig, script", [(signal.SIGTERM, BATCH), (signal.SIGTERM, RUN_BATCH),
                                         (signal.SIGINT, RUN_BATCH)])
def test_terminating_the_batch_kills_papermill_and_its_kernel(tmp_path, sig, script):
    pids_file, results = tmp_path / "pids", tmp_path / "results"
    batch = subprocess.Popen([sys.executable, "-c", script, CHILD, str(pids_file), str(results)],
                             stderr=subprocess.PIPE, text=True)
    pids = []
    try:
        pids = _wait_for(pids_file, batch)
        batch.send_signal(sig)
        batch.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in pids if _alive(p)], "a child outlived the batch"
        assert batch.returncode != 0
        if results.exists():  # no half-written run is left behind
            assert not [p.name for p in (results / "99_fixture").iterdir() if "partial" in p.name]
    finally:
        batch.kill()
        for pid in pids:
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass


def test_a_timeout_kills_the_whole_tree(tmp_path):
    from attnbook import runner_procs

    pids_file = tmp_path / "pids"
    code, stderr = runner_procs.run([sys.executable, "-c", CHILD, str(pids_file)], env={}, timeout=2)
    assert code == -1 and "TimeoutError" in stderr
    pids = [int(p) for p in pids_file.read_text().split()]
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)]
