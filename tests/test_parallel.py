"""attnbook.parallel: a pool of spawned one-thread processes gives what a loop here gives, in order."""
from __future__ import annotations

import os
from functools import partial

import pytest
import torch

from attnbook import parallel


def _seeded_sum(seed: int, n: int = 5) -> tuple[float, int, int]:
    """A job that seeds itself: its result does not depend on the process; also which process and threads."""
    generator = torch.Generator().manual_seed(seed)
    return float(torch.rand(n, generator=generator).sum()), os.getpid(), torch.get_num_threads()


def _fail(item: int) -> int:
    if item == 2:
        raise ValueError(f"job {item} failed")
    return item


def test_one_worker_runs_here_in_order():
    out = parallel.process_map(_seeded_sum, [3, 1, 2], workers=1)
    assert [o[0] for o in out] == [_seeded_sum(s)[0] for s in (3, 1, 2)]
    assert {o[1] for o in out} == {os.getpid()}


def test_a_pool_gives_the_same_results_in_order_from_one_thread_processes():
    jobs = [4, 0, 7, 1]
    pooled = parallel.process_map(partial(_seeded_sum, n=7), jobs, workers=2)
    here = [_seeded_sum(s, n=7) for s in jobs]
    assert [p[0] for p in pooled] == [h[0] for h in here]  # bit-identical: each job seeds itself
    assert os.getpid() not in {p[1] for p in pooled} and len({p[1] for p in pooled}) <= 2
    assert {p[2] for p in pooled} == {1}
    assert [p[2] for p in parallel.process_map(_seeded_sum, [0, 1], workers=2, threads=2)] == [2, 2]


def test_a_failing_job_raises_here_and_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="job 2 failed"):
        parallel.process_map(_fail, [1, 2, 3], workers=2)
    with pytest.raises(ValueError, match="threads"):
        parallel.process_map(_fail, [1], workers=1, threads=0)
    assert parallel.process_map(_fail, [], workers=2) == []
    assert parallel.default_workers() == max(1, torch.get_num_threads())
