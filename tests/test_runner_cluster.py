"""Batches on a Dask cluster (attnbook.runner_cluster): a real LocalCluster of 2 worker processes runs the
fixture notebook tests/runner_fixtures/98_cluster_fixture.ipynb (about a second of work per run).

The notebook's failures and waits are switched by files in ``$ATTNBOOK_FIXTURE_GATE`` (set before the
workers start, so their kernels see it), not by parameters: the run ids are those of plain runs."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from attnbook import chapters, runner, runner_cluster, runner_store, runs
from attnbook.cli import main

FIXTURES = Path(__file__).parent / "runner_fixtures"
NOTEBOOK = str(FIXTURES / "98_cluster_fixture.ipynb")
STEM = "98_cluster_fixture"


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    """The folder of switch files; in the environment before any worker process starts."""
    folder = tmp_path_factory.mktemp("gate")
    previous = os.environ.get("ATTNBOOK_FIXTURE_GATE")
    os.environ["ATTNBOOK_FIXTURE_GATE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("ATTNBOOK_FIXTURE_GATE", None)
    else:
        os.environ["ATTNBOOK_FIXTURE_GATE"] = previous


@pytest.fixture(autouse=True)
def fixture_chapter(monkeypatch, gate):
    monkeypatch.delenv(runs.THREADS_ENV, raising=False)
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.setitem(chapters._MODULES, STEM, "cluster_fixture_chapter")
    for path in gate.iterdir():
        path.unlink()


@pytest.fixture(scope="module")
def cluster(gate):
    """What ``--cluster local:2`` starts (:func:`attnbook.runner_cluster.connect`): a LocalCluster of 2
    single-threaded worker processes under nannies, a run retried once after its worker dies. The tests
    reach it by its address (``--cluster tcp://…``), so one cluster serves the module."""
    with runner_cluster.connect(runner_cluster.ClusterTarget("local", workers=2)) as client:
        yield client.scheduler.address, client


def _started(gate: Path, seed: int) -> list[Path]:
    return sorted(gate.glob(f"started-{seed}-*"))


def _complete(run_dir: Path) -> bool:
    """status.json says complete and metrics.json is valid (whatever the code version: colleagues editing
    lib/ while the tests run change the version a kernel records)."""
    status = json.loads((run_dir / runs.STATUS_FILE).read_text())["status"]
    return status == "complete" and bool(runs.read_record(run_dir)["metrics"])


def _any_code_version_is_current(monkeypatch) -> None:
    """Decide skip/rerun as if every recorded code version were this one (see :func:`_complete`)."""
    real = runner_store.run_state

    def state(run_dir, code=None):
        try:
            code = runs.read_record(run_dir)["code_version"]
        except runs.ResultsError:
            pass
        return real(run_dir, code)

    monkeypatch.setattr(runner, "run_state", state)


def _layout(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- the command line -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, options, expected", [
    ("local:4", [], runner_cluster.ClusterTarget("local", workers=4)),
    ("tcp://sched:8786", [], runner_cluster.ClusterTarget("address", address="tcp://sched:8786")),
    ("slurm", ["cores=8,memory=32GB", "gpus=1,queue=gpu"],
     runner_cluster.ClusterTarget("slurm", options={"cores": 8, "memory": "32GB", "gpus": 1, "queue": "gpu"})),
])
def test_cluster_values_are_parsed(text, options, expected):
    assert runner_cluster.parse_cluster(text, options) == expected


@pytest.mark.parametrize("argv, message", [
    (["--cluster", "local:0"], "expected local:N with N ≥ 1"),
    (["--cluster", "yarn"], "expected local:N, a scheduler address"),
    (["--cluster", "slurm", "--cluster-opt", "gpu=1"], "'gpu' is not an option of a slurm cluster"),
    (["--cluster", "slurm", "--cluster-opt", "cores=many"], "cores=many: expected an integer"),
    (["--cluster", "tcp://h:1", "--cluster-opt", "cores=2"], "configure the scheduler's workers"),
    (["--checkpoints", "/shared/ckpt"], "go with --cluster"),
])
def test_bad_cluster_flags_exit_2_with_one_line(argv, message, tmp_path, capsys):
    assert main(["run", NOTEBOOK, "--profile", "smoke", "--results", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


# --- kernel start-up races are retried, not failures --------------------------------------------------------

RACE = ("Traceback …\n  File \".../ipykernel/kernelapp.py\", in init_sockets\n"
        "zmq.error.ZMQError: Address already in use (addr='tcp://127.0.0.1:50123')\n"
        "RuntimeError: Kernel died before replying to kernel_info\n")


def _unexecuted_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    path.write_text(nbformat.writes(nb))


def test_a_kernel_start_race_is_retried(tmp_path, monkeypatch):
    monkeypatch.setattr(runner.time, "sleep", lambda s: None)
    output = tmp_path / "notebook.ipynb"
    _unexecuted_notebook(output)
    results = iter([(1, RACE), (1, RACE), (0, "")])
    calls = []

    def call():
        calls.append(1)
        return next(results)

    assert runner.with_kernel_retries(call, output) == (0, "")
    assert len(calls) == 3
    assert runner.with_kernel_retries(lambda: (1, RACE), output) == (1, RACE)  # 3 attempts, then it is a failure


def test_the_same_message_after_a_cell_ran_is_the_notebooks_own_error(tmp_path):
    output = tmp_path / "notebook.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("serve()", execution_count=1)])
    output.write_text(nbformat.writes(nb))
    calls = []
    assert runner.with_kernel_retries(lambda: calls.append(1) or (1, RACE), output) == (1, RACE)
    assert len(calls) == 1
    assert not runner.kernel_start_race(0, RACE, output) and not runner.kernel_start_race(1, "ValueError", output)


def test_a_run_whose_kernel_lost_the_race_completes(tmp_path, monkeypatch):
    """Through the batch runner: the injected race is not reported; the run completes on the retry."""
    monkeypatch.setattr(runner.time, "sleep", lambda s: None)
    attempts = []

    def papermill(cmd, env, timeout):
        params = json.loads(Path(cmd[cmd.index("-f") + 1]).read_text())
        work = Path(params.pop("run_dir"))
        attempts.append(work)
        _unexecuted_notebook(work / runs.NOTEBOOK_FILE)
        if len(attempts) == 1:
            return 1, RACE
        rec = runs.start(STEM, run_dir=work, profile="smoke", seed=params["seed"], params={})
        rec.finish()
        return 0, ""

    monkeypatch.setattr(runner, "_papermill", papermill)
    spec = runner.RunSpec(Path(NOTEBOOK), {"profile": "smoke", "seed": 0}, tmp_path)
    [outcome] = runner.run_batch([spec], progress=False)
    assert outcome.status == "complete" and outcome.error == "" and len(attempts) == 2


# --- a real LocalCluster --------------------------------------------------------------------------------------

def test_a_cluster_batch_matches_a_local_batch(tmp_path, gate, cluster, capsys, monkeypatch):
    """4 runs, one failing: 3 complete, the failure keeps its executed notebook; the folder's layout is a
    local --jobs 2 batch's; the rerun executes only the failed run."""
    (gate / "fail-3").write_text("")
    on_cluster, local = tmp_path / "cluster", tmp_path / "local"
    address, _ = cluster
    argv = ["run", NOTEBOOK, "--profile", "smoke", "--grid", "seed=0..3"]
    assert main([*argv, "--cluster", address, "--results", str(on_cluster), "--checkpoints", str(on_cluster)]) == 1
    out = capsys.readouterr().out
    assert "3 ok (0 skipped" in out and "1 failed" in out and "RuntimeError: fixture failure requested" in out
    failed = on_cluster / STEM / runs.run_id({"profile": "smoke", "seed": 3})
    assert json.loads((failed / runs.STATUS_FILE).read_text())["status"] == "failed"
    executed = nbformat.read(failed / runs.NOTEBOOK_FILE, as_version=4)
    assert any(o.get("ename") == "RuntimeError" for c in executed.cells for o in c.get("outputs", []))
    for seed in range(3):
        run_dir = on_cluster / STEM / runs.run_id({"profile": "smoke", "seed": seed})
        assert _complete(run_dir) and runs.read_record(run_dir)["metrics"]["score"] == 0.5 + seed

    assert main([*argv, "--jobs", "2", "--results", str(local)]) == 1
    assert _layout(on_cluster) == _layout(local)
    status_keys = {p.name: sorted(json.loads((p / runs.STATUS_FILE).read_text())) for p in (on_cluster / STEM).iterdir()
                   if not p.name.startswith(".")}
    assert status_keys == {p.name: sorted(json.loads((p / runs.STATUS_FILE).read_text()))
                           for p in (local / STEM).iterdir() if not p.name.startswith(".")}

    (gate / "fail-3").unlink()
    for path in gate.glob("started-*"):
        path.unlink()
    _any_code_version_is_current(monkeypatch)
    specs = runner.plan(NOTEBOOK, profile="smoke", grid=["seed=0..3"], results=on_cluster)
    outcomes = runner_cluster.run_batch(specs, runner_cluster.parse_cluster(address), checkpoints=on_cluster,
                                        progress=False)
    assert [o.status for o in outcomes] == ["skipped"] * 3 + ["complete"]
    assert [len(_started(gate, s)) for s in range(4)] == [0, 0, 0, 1]
    assert _complete(failed)
    rerun = f"{STEM}/{failed.name}"
    assert set(_layout(on_cluster)) ^ set(_layout(local)) == {f"{rerun}/metrics.json", f"{rerun}/papermill.stderr.txt"}


def test_a_worker_killed_mid_run_is_retried_once_and_leaves_nothing_half_written(tmp_path, gate, cluster):
    address, client = cluster
    (gate / "wait-0").write_text("")
    target = runner_cluster.parse_cluster(address)
    specs = runner.plan(NOTEBOOK, profile="smoke", grid=["seed=0..1"], results=tmp_path)
    outcomes: list = []
    batch = threading.Thread(target=lambda: outcomes.extend(
        runner_cluster.run_batch(specs, target, checkpoints=tmp_path, progress=False)))
    batch.start()
    deadline = time.monotonic() + 120
    while not _started(gate, 0):
        assert time.monotonic() < deadline and batch.is_alive(), "run 0 never started"
        time.sleep(0.1)
    [kernel_pid] = [int(p.name.rsplit("-", 1)[1]) for p in _started(gate, 0)]
    worker_pids = client.run(os.getpid)
    [busy] = [addr for addr, keys in client.processing().items() if any(specs[0].run_id in str(k) for k in keys)]
    partial = [p for p in (tmp_path / STEM).iterdir() if ".partial-" in p.name]
    assert partial, "the run's work folder on the worker"
    os.kill(worker_pids[busy], signal.SIGKILL)
    time.sleep(1)
    (gate / "wait-0").unlink()  # the retry runs through
    batch.join(timeout=180)
    assert not batch.is_alive()
    first, second = outcomes
    assert first.status == "complete" and "retried: its first worker died" in first.note
    assert second.status == "complete" and "retried" not in second.note
    assert len(_started(gate, 0)) == 2  # executed twice: the killed attempt and the retry
    assert sorted(p.name for p in (tmp_path / STEM).iterdir() if p.name.startswith(".")) == [".locks"]
    assert runs.read_record(first.run_dir)["metrics"]["score"] == 0.5
    deadline = time.monotonic() + 15  # the killed attempt's papermill died with its worker, its kernel follows
    while psutil.pid_exists(kernel_pid) and psutil.Process(kernel_pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the dead worker's kernel is still running"
        time.sleep(0.2)


class _Done:
    def __init__(self, value=None, error=None):
        self.value, self.error = value, error

    def result(self, timeout=None):
        if self.error is not None:
            raise self.error
        return self.value


class _DyingWorkers:
    """A Dask client whose runs always lose their worker (the scheduler's KilledWorker); small tasks run here."""

    def __init__(self):
        self.cleanups = []

    def submit(self, fn, *args, **kwargs):
        from distributed import KilledWorker

        if fn is runner_cluster.execute_on_worker:
            job = args[0]
            folder = Path(job["root"]) / job["stem"]  # what the dead attempt left behind
            work = runner_store.work_dir(folder / job["run_id"])
            work.mkdir(parents=True)
            (work / runner_cluster.MARKER).write_text(job["token"])
            (work / runs.NOTEBOOK_FILE).write_text("{}")
            return _Done(error=KilledWorker(kwargs["key"], type("W", (), {"address": "tcp://10.0.0.7:4000"})(), 1))
        if fn is runner_cluster.remove_attempts:
            self.cleanups.append(args)
        return _Done(fn(*args))


def test_a_run_whose_workers_keep_dying_fails_alone_and_leaves_nothing(tmp_path):
    client = _DyingWorkers()
    backend = runner_cluster.ClusterBackend(client, checkpoints=tmp_path)
    spec = runner.RunSpec(Path(NOTEBOOK), {"profile": "smoke", "seed": 0}, tmp_path)
    [outcome] = runner.run_batch([spec], backend=backend, progress=False)
    assert outcome.status == "failed" and outcome.error.startswith("KilledWorker: every Dask worker that ran this")
    assert "2 attempts, the last on tcp://10.0.0.7:4000" in outcome.error and len(client.cleanups) == 1
    assert json.loads((spec.run_dir / runs.STATUS_FILE).read_text())["status"] == "failed"
    assert sorted(p.name for p in (tmp_path / STEM).iterdir()) == [".locks", spec.run_id]
