"""Atomic writes: modes that follow the umask, no temp files left, no clash between threads."""
from __future__ import annotations

import os
import threading

import pytest

from attnbook import files


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_new_files_get_the_mode_the_current_umask_gives(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        assert files.current_umask() == umask
        path = files.atomic_write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == mode


def test_threads_writing_one_file_never_share_a_temp_file(tmp_path):
    target = tmp_path / "status.json"
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for _ in range(20):
                files.atomic_write_json(target, {"writer": i, "pad": "x" * 10_000})
        except BaseException as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and [p.name for p in tmp_path.iterdir()] == ["status.json"]
