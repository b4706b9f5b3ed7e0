"""The batch runner and its CLI, on a one-second fixture chapter (tests/runner_fixtures/)."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from attnbook import chapters, runner, runs
from attnbook.cli import main

FIXTURES = Path(__file__).parent / "runner_fixtures"
NOTEBOOK = str(FIXTURES / "99_fixture.ipynb")


@pytest.fixture(autouse=True)
def fixture_chapter(monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.setitem(chapters._MODULES, "99_fixture", "fixture_chapter")


@pytest.mark.parametrize("text, values", [("seed=0..3", [0, 1, 2, 3]), ("method=bl,bla", ["bl", "bla"]),
                                          ("lr=0.1,1e-2", [0.1, 0.01]), ("amp=true,false", [True, False])])
def test_grid_values(text, values):
    name, value = runner.parse_assignment(text, "--grid")
    assert runner.parse_grid_values(name, value) == values


def test_plan_expands_the_grid(tmp_path):
    specs = runner.plan(NOTEBOOK, profile="smoke", grid=["seed=0..2", "fail=false,true"], results=tmp_path)
    assert len(specs) == 6 and len({s.run_id for s in specs}) == 6
    assert specs[0].params == {"profile": "smoke", "seed": 0, "fail": False}
    assert list(tmp_path.iterdir()) == []  # planning writes nothing


@pytest.mark.parametrize("argv, message", [
    (["run", "nbs/nope.ipynb"], "not found"),
    (["run", NOTEBOOK, "--grid", "seed=a..b"], "a range needs integers"),
    (["run", NOTEBOOK, "--grid", "seed"], "expected NAME=VALUE"),
    (["run", NOTEBOOK, "--grid", "seed=3..1"], "empty range"),
    (["run", NOTEBOOK, "--profile", "huge"], "unknown profile 'huge'"),
    (["run", NOTEBOOK, "-p", "epochs=3"], "unknown parameter 'epochs'"),
    (["run", NOTEBOOK, "-p", "fail=perhaps"], "expected true/false"),
    (["run", NOTEBOOK, "--profile", "gpu"], "needs a CUDA GPU"),
    (["run", NOTEBOOK, "--jobs", "0"], "--jobs 0"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(argv, message, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if "--profile" not in argv:
        argv = argv + ["--profile", "smoke"]
    assert main(argv + ["--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "results").exists()


def test_unwritable_results_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", NOTEBOOK, "--profile", "smoke", "--results", str(blocker / "results")]) == 2
    assert "is not writable" in capsys.readouterr().err


@pytest.mark.slow
def test_batch_keeps_failures_skips_completed_and_tabulates(tmp_path, capsys):
    results = tmp_path / "results"
    argv = ["run", NOTEBOOK, "--profile", "smoke", "--grid", "seed=0..1", "-p", "fail=false", "--jobs", "2",
            "--results", str(results)]
    assert main(argv) == 0
    runs_dir = results / "99_fixture"
    done = sorted(p for p in runs_dir.iterdir() if p.is_dir())
    assert len(done) == 2
    for run_dir in done:
        assert {"notebook.ipynb", "params.json", "metrics.json", "status.json"} <= {p.name for p in run_dir.iterdir()}
        record = runs.read_record(run_dir)
        assert record["run_id"] == run_dir.name
        assert json.loads((run_dir / "params.json").read_text())["seed"] == record["seed"]

    # A failing run keeps its executed notebook with the error; the batch goes on and exits 1.
    assert main(["run", NOTEBOOK, "--profile", "smoke", "--grid", "seed=0..1", "--grid", "fail=false,true",
                 "--results", str(results)]) == 1
    out = capsys.readouterr().out
    assert out.count("skipped") >= 2 and "RuntimeError: fixture failure requested" in out
    failed = runs_dir / runs.run_id({"profile": "smoke", "seed": 1, "fail": True})
    assert json.loads((failed / "status.json").read_text())["status"] == "failed"
    executed = nbformat.read(failed / "notebook.ipynb", as_version=4)
    assert any(o.get("ename") == "RuntimeError" for c in executed.cells for o in c.get("outputs", []))
    assert not any(p.name.startswith(".") for p in runs_dir.iterdir())  # no partial folders left

    # --force re-executes a complete run from scratch: its training checkpoints are deleted first.
    stale = runs.checkpoint_dir(runs_dir, runs.run_id({"profile": "smoke", "seed": 0, "fail": False}))
    stale.mkdir(parents=True)
    assert main(["run", NOTEBOOK, "--profile", "smoke", "-p", "fail=false", "--force", "--results", str(results)]) == 0
    assert not stale.exists()

    assert main(["results", "99_fixture", "--results", str(results)]) == 0
    table = capsys.readouterr().out
    assert "score" in table and "left out" in table
    csv = (runs_dir / "runs.csv").read_text().splitlines()
    assert len(csv) == 3 and "score" in csv[0]


def test_a_failed_rerun_never_replaces_a_complete_run(tmp_path):
    spec = runner.RunSpec(notebook=Path(NOTEBOOK), params={"profile": "smoke", "seed": 0}, results=tmp_path)
    old = spec.run_dir
    rec = runs.start("99_fixture", run_dir=old, profile="smoke", seed=0, params={})
    rec.finish()
    runs.atomic_write_json(old / runs.STATUS_FILE, {"status": "complete"})
    assert runner.is_complete(old)
    work = tmp_path / "work"
    work.mkdir()
    final = runner._finalize(spec, work, {"status": "failed"})
    assert final.name.endswith(".failed") and runner.is_complete(old)
