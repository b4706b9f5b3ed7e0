"""The batch runner and its CLI, on a one-second fixture chapter (tests/runner_fixtures/).

Most tests replace papermill with :func:`_fake_papermill`, which does in-process what the fixture
notebook does (so they take milliseconds); the ``slow`` ones execute the notebook for real."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from attnbook import chapters, runner, runner_store, runs
from attnbook.cli import main

FIXTURES = Path(__file__).parent / "runner_fixtures"
NOTEBOOK = str(FIXTURES / "99_fixture.ipynb")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATTNBOOK_THREADS")


@pytest.fixture(autouse=True)
def fixture_chapter(monkeypatch):
    monkeypatch.delenv(runs.THREADS_ENV, raising=False)  # the runner sets it for its kernels, not for this process
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.setitem(chapters._MODULES, "99_fixture", "fixture_chapter")


class Calls(list):
    """The fake papermill's call log; ``hook(params, work)`` may return (code, stderr) to end a call."""

    hook = None


@pytest.fixture
def fake(monkeypatch):
    """papermill replaced by an in-process imitation of the fixture notebook; returns its call log."""
    calls = Calls()

    def run(cmd, env, timeout):
        params = json.loads(Path(cmd[cmd.index("-f") + 1]).read_text())
        work = Path(params.pop("run_dir"))
        calls.append({"params": params, "env": {k: env[k] for k in THREAD_VARS}, "work": work})
        (work / runs.NOTEBOOK_FILE).write_text("{}")
        if calls.hook:
            result = calls.hook(params, work)
            if result is not None:
                return result
        if params.get("fail"):
            return 1, "Traceback …\nRuntimeError: fixture failure requested\n"
        overrides = {k: v for k, v in params.items() if k not in ("profile", "seed")}
        rec = runs.start("99_fixture", run_dir=work, profile=params["profile"], seed=params["seed"], params=overrides)
        rec.log("score", 0.5 + params["seed"])
        rec.finish()
        return 0, ""

    monkeypatch.setattr(runner, "_papermill", run)
    return calls


def _spec(tmp_path, **params):
    return runner.RunSpec(notebook=Path(NOTEBOOK), params={"profile": "smoke", "seed": 0, **params},
                          results=tmp_path)


def _make_stale(run_dir: Path) -> None:
    record = json.loads((run_dir / runs.METRICS_FILE).read_text())
    record["code_version"] = "0" * 12
    (run_dir / runs.METRICS_FILE).write_text(json.dumps(record))


# --- planning: values parsed once, by type, validated before anything runs -----------------------------

@pytest.mark.parametrize("text, values", [("seed=0..3", [0, 1, 2, 3]), ("method=bl,bla", ["bl", "bla"]),
                                          ("lr=0.1,1e-2", ["0.1", "1e-2"]), ("epochs=3,none", ["3", None])])
def test_grid_values_stay_text_until_their_type_is_known(text, values):
    name, value = runner.parse_assignment(text, "--grid")
    assert runner.parse_grid_values(name, value) == values


def test_plan_expands_the_grid(tmp_path):
    specs = runner.plan(NOTEBOOK, profile="smoke", grid=["seed=0..2", "fail=false,true"], results=tmp_path)
    assert len(specs) == 6 and len({s.run_id for s in specs}) == 6
    assert specs[0].params == {"profile": "smoke", "seed": 0, "fail": False}
    assert list(tmp_path.iterdir()) == []  # planning writes nothing


def test_values_are_parsed_into_the_config_types(tmp_path):
    [spec] = runner.plan(NOTEBOOK, profile="smoke", params=["seed=01", "epochs=03", "p=0.25"], results=tmp_path)
    assert spec.params == {"profile": "smoke", "seed": 1, "epochs": 3, "p": 0.25}
    [same] = runner.plan(NOTEBOOK, profile="smoke", params=["seed=1", "epochs=3", "p=.25"], results=tmp_path)
    assert same.run_id == spec.run_id


def test_duplicate_grid_points_collapse(tmp_path):
    specs = runner.plan(NOTEBOOK, profile="smoke", grid=["seed=0,0,0,00", "epochs=3,03"], results=tmp_path)
    assert [s.params for s in specs] == [{"profile": "smoke", "seed": 0, "epochs": 3}]


@pytest.mark.parametrize("argv, message", [
    (["run", "nbs/nope.ipynb"], "not found"),
    (["run", NOTEBOOK, "--grid", "seed=a..b"], "a range needs integers"),
    (["run", NOTEBOOK, "--grid", "seed"], "expected NAME=VALUE"),
    (["run", NOTEBOOK, "--grid", "seed=3..1"], "empty range"),
    (["run", NOTEBOOK, "--profile", "huge"], "unknown profile 'huge'"),
    (["run", NOTEBOOK, "-p", "epoch=3"], "unknown parameter 'epoch'"),
    (["run", NOTEBOOK, "-p", "fail=perhaps"], "expected true/false"),
    (["run", NOTEBOOK, "--profile", "gpu"], "needs a CUDA GPU"),
    (["run", NOTEBOOK, "--jobs", "0"], "--jobs 0"),
    (["run", NOTEBOOK, "--threads", "0"], "--threads 0"),
    (["run", NOTEBOOK, "-p", "seed=18446744073709551616"], "above the maximum 9223372036854775807"),
    (["run", NOTEBOOK, "-p", "seed=-1"], "below the minimum 0"),
    (["run", NOTEBOOK, "-p", "p=5"], "'p': 5.0 is above the maximum 1"),
    (["run", NOTEBOOK, "-p", "p=nan"], "expected a finite number"),
    (["run", NOTEBOOK, "-p", "epochs=1.5"], "expected an integer"),
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


def test_a_notebook_that_is_not_json_is_one_line_and_exit_2(tmp_path, capsys):
    broken = tmp_path / "99_fixture.ipynb"
    broken.write_text('{"cells": [')
    assert main(["run", str(broken), "--profile", "smoke", "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot be read (NotJSONError" in err and str(broken) in err and len(err.splitlines()) == 1


def test_unwritable_results_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", NOTEBOOK, "--profile", "smoke", "--results", str(blocker / "results")]) == 2
    assert "is not writable" in capsys.readouterr().err


# --- threads: fixed per run, whatever --jobs is --------------------------------------------------------

def test_each_run_gets_the_same_threads_under_any_jobs(tmp_path, fake):
    for jobs in (1, 2):
        specs = [_spec(tmp_path / f"jobs{jobs}", seed=s) for s in range(3)]
        runner.run_batch(specs, jobs=jobs, progress=False)
    envs = {(c["work"].parents[1].name, c["params"]["seed"]): c["env"] for c in fake}
    assert len(envs) == 6
    assert {tuple(e.values()) for e in envs.values()} == {(str(runs.DEFAULT_THREADS),) * 3}
    assert {runs.read_record(p)["run_id"] for p in (tmp_path / "jobs1" / "99_fixture").iterdir()
            if not p.name.startswith(".")} == {runs.read_record(p)["run_id"] for p in
                                               (tmp_path / "jobs2" / "99_fixture").iterdir()
                                               if not p.name.startswith(".")}


def test_another_thread_count_is_another_run(tmp_path, monkeypatch):
    import torch

    monkeypatch.delenv(runs.THREADS_ENV, raising=False)
    set_threads = []
    monkeypatch.setattr(torch, "set_num_threads", set_threads.append)  # keep this process's threads
    [default] = runner.plan(NOTEBOOK, profile="smoke", results=tmp_path)
    [four] = runner.plan(NOTEBOOK, profile="smoke", results=tmp_path, threads=4)
    assert "threads" not in default.run_id and "threads=4" in four.run_id
    assert runner._kernel_env(four.threads)["ATTNBOOK_THREADS"] == "4"
    monkeypatch.setenv(runs.THREADS_ENV, "4")  # what the kernel of that run sees: the same id
    rec = runs.start("99_fixture", run_dir=tmp_path / "k", profile="smoke", seed=0, params={})
    assert runs.run_id(rec.params) == four.run_id and set_threads == [4]


# --- stale runs (another code version) -----------------------------------------------------------------

def test_stale_runs_are_rerun_unless_kept(tmp_path, fake, capsys):
    argv = ["run", NOTEBOOK, "--profile", "smoke", "--results", str(tmp_path)]
    assert main(argv) == 0
    [run_dir] = [p for p in (tmp_path / "99_fixture").iterdir() if not p.name.startswith(".")]
    assert runner.run_state(run_dir) == "complete"
    assert json.loads((run_dir / runs.STATUS_FILE).read_text())["code_version"] == runs.code_version()
    _make_stale(run_dir)
    assert runner.run_state(run_dir) == "stale" and not runner.is_complete(run_dir)
    capsys.readouterr()
    assert main(argv + ["--keep-stale"]) == 0 and len(fake) == 1
    assert "skipped (stale, kept)" in capsys.readouterr().out
    assert main(argv) == 0 and len(fake) == 2
    out = capsys.readouterr().out
    assert "complete (stale → rerun)" in out and "1 stale → rerun" in out
    assert runner.run_state(run_dir) == "complete"


def test_results_show_code_and_commit_and_never_pool_code_versions(tmp_path, fake, capsys):
    runner.run_batch([_spec(tmp_path, seed=s) for s in (0, 1, 2)], progress=False)
    stale = runner.RunSpec(Path(NOTEBOOK), {"profile": "smoke", "seed": 2}, tmp_path).run_dir
    _make_stale(stale)
    capsys.readouterr()
    assert main(["results", "99_fixture", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "code" in out and "commit" in out and "2 code versions" in out and "(current)" in out
    header = (tmp_path / "99_fixture" / "runs.csv").read_text().splitlines()[0].split(",")
    assert {"code", "commit"} <= set(header)
    assert main(["results", "99_fixture", "--by", "profile", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "aggregated separately per code version" in out and len(out.split("note:")) == 2
    from attnbook import collect

    table = collect.aggregate(collect.runs_frame("99_fixture", tmp_path), ["profile"])
    assert sorted(table[("score", "n")].tolist()) == [1, 2]  # 2 current runs, 1 stale: never pooled


# --- checkpoints: deleted on completion, a corrupt one deleted after its failure ------------------------

def test_completed_runs_lose_their_checkpoints_unless_kept(tmp_path, fake):
    def train(params, work):
        checkpoint = _spec(tmp_path, **{k: v for k, v in params.items() if k not in ("profile", "seed")},
                           seed=params["seed"]).checkpoint_dir
        checkpoint.mkdir(parents=True, exist_ok=True)
        (checkpoint / "checkpoint.pt").write_bytes(b"x" * 1000)

    fake.hook = train
    done, kept, failed = _spec(tmp_path, seed=0), _spec(tmp_path, seed=1), _spec(tmp_path, seed=2, fail=True)
    runner.run_batch([done, failed], progress=False)
    runner.run_batch([kept], keep_checkpoints=True, progress=False)
    assert not done.checkpoint_dir.exists()
    assert (kept.checkpoint_dir / "checkpoint.pt").is_file()
    assert (failed.checkpoint_dir / "checkpoint.pt").is_file()  # an unfinished run resumes from it


def test_a_run_failing_on_a_corrupt_checkpoint_does_not_fail_forever(tmp_path, fake):
    spec = _spec(tmp_path)
    spec.checkpoint_dir.mkdir(parents=True)
    (spec.checkpoint_dir / "checkpoint.pt").write_bytes(b"garbage")
    message = (f"CheckpointCorruptError: checkpoint {spec.checkpoint_dir}/checkpoint.pt is corrupt (SHA-256 differs); "
               "it cannot be resumed: delete … (or rerun with `attnbook run … --force`) to retrain from scratch")
    fake.hook = lambda params, work: (1, f"Traceback …\n{message}\n") if len(fake) == 1 else None
    [first] = runner.run_batch([spec], progress=False)
    assert first.status == "failed" and "--force" in first.error and "run again to retrain" in first.error
    assert not spec.checkpoint_dir.exists()
    [second] = runner.run_batch([spec], progress=False)
    assert second.status == "complete"


# --- locks, leftovers, finalising, folders that cannot be created ---------------------------------------

def test_a_run_already_running_elsewhere_is_skipped(tmp_path, fake):
    spec = _spec(tmp_path)
    spec.run_dir.parent.mkdir(parents=True)
    code = ("import sys, time; from attnbook.runner_store import RunLock; lock = RunLock(sys.argv[1]); "
            "assert lock.acquire(); print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(spec.run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        [outcome] = runner.run_batch([spec], progress=False)
        assert outcome.status == "skipped" and outcome.note.startswith("already running") and not fake
    finally:
        holder.kill()
        holder.wait()
    [outcome] = runner.run_batch([spec], progress=False)  # the dead holder's lock is gone with it
    assert outcome.status == "complete"


def test_the_lock_excludes_threads_of_one_process_too(tmp_path):
    first, second = runner_store.RunLock(tmp_path / "run"), runner_store.RunLock(tmp_path / "run")
    assert first.acquire() and not second.acquire()
    first.release()
    assert second.acquire()
    second.release()


def test_leftovers_of_dead_processes_are_cleaned(tmp_path, fake):
    spec = _spec(tmp_path)
    partial = spec.run_dir.with_name(f".{spec.run_id}.partial-999999-1")
    old = spec.run_dir.with_name(f".{spec.run_id}.old-999999-2")
    for folder in (partial, old):
        folder.mkdir(parents=True)
        (folder / "notebook.ipynb").write_text("{}")
    other = spec.run_dir.with_name(".other-run.partial-999999-3")
    other.mkdir()
    runner.run_batch([spec], progress=False)
    assert not partial.exists() and not old.exists() and not other.exists()


def test_concurrent_finalisations_of_one_run_never_collide(tmp_path):
    run_dir = tmp_path / "nb" / "run"
    works = []
    for i in range(8):
        work = runner_store.work_dir(run_dir)
        work.mkdir(parents=True)
        (work / "marker").write_text(str(i))
        works.append(work)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(works))

    def finish(work: Path) -> None:
        barrier.wait()
        try:
            runner_store.finalize(run_dir, work, {"status": "complete"})
        except BaseException as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    threads = [threading.Thread(target=finish, args=(w,)) for w in works]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [p.name for p in run_dir.parent.iterdir()] == ["run"] and (run_dir / "marker").is_file()


def test_a_run_folder_that_cannot_be_created_fails_alone(tmp_path, fake, capsys):
    blocked = _spec(tmp_path, seed=1)
    runner_store.RunLock(blocked.run_dir).path.mkdir(parents=True)  # its lock file cannot be created
    assert main(["run", NOTEBOOK, "--profile", "smoke", "--grid", "seed=0,1", "--results", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "1 failed" in out and "cannot create the run folder" in out
    assert runner.is_complete(_spec(tmp_path, seed=0).run_dir)


def test_a_failed_rerun_never_replaces_a_complete_run(tmp_path):
    spec = runner.RunSpec(notebook=Path(NOTEBOOK), params={"profile": "smoke", "seed": 0}, results=tmp_path)
    old = spec.run_dir
    rec = runs.start("99_fixture", run_dir=old, profile="smoke", seed=0, params={})
    rec.finish()
    runs.atomic_write_json(old / runs.STATUS_FILE, {"status": "complete"})
    assert runner.is_complete(old)
    work = tmp_path / "work"
    work.mkdir()
    final = runner_store.finalize(spec.run_dir, work, {"status": "failed"})
    assert final.name.endswith(".failed") and runner.is_complete(old)


def test_every_file_the_runner_writes_follows_the_umask(tmp_path, fake):
    previous = os.umask(0o027)
    try:
        runner.run_batch([_spec(tmp_path), _spec(tmp_path, seed=1, fail=True)], progress=False)
    finally:
        os.umask(previous)
    written = [p for p in (tmp_path / "99_fixture").rglob("*") if p.is_file() and p.name != "notebook.ipynb"]
    assert {p.name for p in written} >= {"params.json", "status.json", "metrics.json", "papermill.stderr.txt"}
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {oct(0o640)}


# --- the real thing -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_batch_keeps_failures_skips_completed_and_tabulates(tmp_path, capsys):
    results = tmp_path / "results"
    argv = ["run", NOTEBOOK, "--profile", "smoke", "--grid", "seed=0..1", "-p", "fail=false", "--jobs", "2",
            "--results", str(results)]
    assert main(argv) == 0
    runs_dir = results / "99_fixture"
    done = sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(done) == 2
    for run_dir in done:
        assert {"notebook.ipynb", "params.json", "metrics.json", "status.json"} <= {p.name for p in run_dir.iterdir()}
        record = runs.read_record(run_dir)
        assert record["run_id"] == run_dir.name and record["code_version"] == runs.code_version()
        assert record["threads"] == runs.DEFAULT_THREADS
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
    assert not any(p.name.startswith(".") and p.name not in (".locks", ".checkpoints") for p in runs_dir.iterdir())

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


@pytest.mark.slow
def test_plain_papermill_refuses_a_typo_and_never_writes_into_batch_runs(tmp_path):
    results = tmp_path / "results"
    env = {**os.environ, "ATTNBOOK_RESULTS": str(results), "PYTHONPATH": str(FIXTURES)}
    env.pop(runs.THREADS_ENV, None)
    out = tmp_path / "out.ipynb"
    cmd = [sys.executable, "-m", "papermill", NOTEBOOK, str(out), "--cwd", str(FIXTURES), "--kernel", "python3",
           "--no-progress-bar", "-p", "profile", "smoke"]
    typo = subprocess.run(cmd + ["-p", "epoch", "3"], env=env, capture_output=True, text=True)
    assert typo.returncode != 0
    assert "unknown parameter 'epoch' passed to 99_fixture.ipynb" in typo.stderr
    assert "valid parameters: profile, seed, run_dir, fail, epochs, p" in typo.stderr
    assert not (results / "99_fixture").exists() or not any((results / "99_fixture").iterdir())

    batch = runner.run_batch([runner.RunSpec(Path(NOTEBOOK), {"profile": "smoke", "seed": 0}, results)],
                             progress=False)[0].run_dir
    before = (batch / runs.METRICS_FILE).read_bytes()
    mine = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert mine.returncode == 0, mine.stderr[-2000:]
    [own] = (results / "99_fixture" / runs.INTERACTIVE_DIR).iterdir()
    assert own.name == batch.name and runs.read_record(own)["run_id"] == batch.name
    assert (batch / runs.METRICS_FILE).read_bytes() == before  # the batch run was not rewritten


def test_same_parameters_in_two_notebooks_are_two_runs(tmp_path):
    """Every chapter's book run has the same parameters (profile, seed): the batch must run each notebook."""
    a = runner.RunSpec(notebook=Path("nbs/00_testbed.ipynb"), params={"profile": "smoke", "seed": 0}, results=tmp_path)
    b = runner.RunSpec(notebook=Path("nbs/04_bla.ipynb"), params={"profile": "smoke", "seed": 0}, results=tmp_path)
    assert a.run_id == b.run_id and a.run_dir != b.run_dir
    assert len(runner.distinct_specs([a, b, a])) == 2
