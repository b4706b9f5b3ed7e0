"""Shared test setup: deterministic seeds and one torch thread per test (the machine has 2 cores)."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory):
    """Every chapter executed once with the ``smoke`` profile through the batch runner."""
    from attnbook import publish, runner
    from attnbook.chapters import notebook_names
    from attnbook.runs import repo_root

    results = tmp_path_factory.mktemp("results")
    specs = [runner.RunSpec(notebook=repo_root() / "nbs" / f"{name}.ipynb", params=publish.book_run_params("smoke"),
                            results=results) for name in notebook_names()]
    outcomes = runner.run_batch(specs, jobs=1, progress=False)
    return results, {o.spec.stem: o for o in outcomes}


@pytest.fixture(scope="session")
def built_book(smoke_results, tmp_path_factory):
    """The book built from the smoke runs; returns the HTML folder."""
    from attnbook import publish
    from attnbook.chapters import notebook_names

    results, _ = smoke_results
    out = tmp_path_factory.mktemp("book")
    publish.stage(out / "src", profile="smoke", results=results, notebooks=notebook_names())
    index = publish.build(out / "src", out)
    return index.parent
