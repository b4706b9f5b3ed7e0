"""Batches on a Dask cluster: ``attnbook run NB --grid … --cluster local:4 | tcp://host:8786 | slurm``.

Each run is one Dask task that executes the notebook with papermill on a worker; the run's files come
back to this process, which writes them into ``results/`` exactly as a local batch does — same run ids,
locks, skip/force/stale decisions, failures kept with their executed notebook, summary table and tqdm
bar — because only *where papermill runs* changes (:class:`ClusterBackend` is a
:class:`attnbook.runner.Backend`; everything else is :func:`attnbook.runner.run_batch`).

* ``local:N`` — a :class:`distributed.LocalCluster` of N single-threaded worker processes (each under a
  nanny that restarts it if it dies); checkpoints stay in ``results/<notebook>/.checkpoints``.
* ``tcp://host:8786`` — an existing scheduler; its workers need this repository at the same path and
  the same environment (start GPU workers with ``--resources GPU=1``).
* ``slurm`` — :class:`dask_jobqueue.SLURMCluster` with ``--cluster-opt cores=8,memory=32GB,gpus=1,
  queue=…,walltime=…,jobs=N`` (documented; not run in CI).

Runs of a profile that needs a GPU request one ``GPU`` worker resource. Training checkpoints of
resumable runs go to ``--checkpoints DIR`` (``DIR/<notebook>/.checkpoints/<run-id>``), which must be on
a file system every worker shares: without it a remote worker keeps them in its temporary folder,
where a retry on another host cannot find them.

Faults. A kernel start-up race ("Address already in use") is retried on the worker
(:func:`attnbook.runner.with_kernel_retries`). A worker that dies mid-run (killed, out of memory, node
lost): its papermill dies with it (``PR_SET_PDEATHSIG``; the kernel follows its parent), and the
scheduler retries the run **once** on another worker (``allowed_failures=1`` on a local cluster; an
existing scheduler uses its own ``distributed.scheduler.allowed-failures``); a run whose worker dies
again is reported failed (``KilledWorker``) and the batch goes on. What a dead attempt left in the
checkpoint folder's tree is removed by the next attempt; a run's folder appears in ``results/`` only
once it has ended. Ctrl-C cancels queued runs and kills running ones on the workers.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbook import runner, runs
from attnbook import runner_procs as procs
from attnbook import runner_store as store
from attnbook.files import atomic_write_json
from attnbook.runner import Outcome, RunSpec, UsageError

MARKER = ".attnbook-attempt"  # in a worker's work folder: the token of the task that made it
SLURM_OPTIONS = {"cores": int, "memory": str, "gpus": int, "queue": str, "walltime": str, "account": str,
                 "jobs": int, "processes": int, "interface": str, "local_directory": str}
LOCAL_OPTIONS = {"memory": str}
MAX_HANDED_OUT = 256  # client threads waiting on cluster runs at once (default --jobs with a cluster)

_RUNNING: dict[str, int] = {}  # on a worker: token → pid of the papermill it runs
_STOPPED: set[str] = set()  # on a worker: tokens of runs cancelled by the client


@dataclass(frozen=True)
class ClusterTarget:
    """A parsed ``--cluster`` value: ``kind`` local | address | slurm, the worker count or address,
    and the ``--cluster-opt`` options (typed)."""

    kind: str
    workers: int = 0
    address: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)


def parse_cluster(text: str, options: Sequence[str] = ()) -> ClusterTarget:
    """``local:N``, ``tcp://host:port`` (also ``tls://``) or ``slurm``, plus ``--cluster-opt`` items
    ``k=v[,k=v…]``; :class:`~attnbook.runner.UsageError` (exit 2) naming the fix otherwise."""
    import importlib.util

    missing = [m for m in ("distributed", *(["dask_jobqueue"] if text.strip() == "slurm" else []))
               if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"--cluster needs {', '.join(missing)}: pip install -e '.[cluster]'")
    text = text.strip()
    if text.startswith("local"):
        count = text.partition(":")[2] or "2"
        if not count.isdigit() or int(count) < 1:
            raise UsageError(f"--cluster {text}: expected local:N with N ≥ 1 worker processes, e.g. local:4")
        kind, extra = "local", {"workers": int(count)}
    elif "://" in text:
        kind, extra = "address", {"address": text}
    elif text == "slurm":
        kind, extra = "slurm", {}
    else:
        raise UsageError(f"--cluster {text!r}: expected local:N, a scheduler address tcp://host:8786, or slurm")
    valid = {"local": LOCAL_OPTIONS, "slurm": SLURM_OPTIONS, "address": {}}[kind]
    parsed: dict[str, Any] = {}
    for item in (piece for group in options for piece in group.split(",") if piece.strip()):
        name, value = runner.parse_assignment(item, "--cluster-opt")
        if name not in valid:
            allowed = ", ".join(valid) or "none (configure the scheduler's workers instead)"
            raise UsageError(f"--cluster-opt {name!r} is not an option of a {kind} cluster; valid: {allowed}")
        try:
            parsed[name] = valid[name](value)
        except ValueError:
            raise UsageError(f"--cluster-opt {name}={value}: expected an integer") from None
    return ClusterTarget(kind=kind, options=parsed, **extra)


def _slurm_cluster(options: Mapping[str, Any]) -> Any:
    from dask_jobqueue import SLURMCluster

    opts = dict(options)
    jobs, gpus = opts.pop("jobs", 1), opts.pop("gpus", 0)
    opts.setdefault("cores", 1)
    opts.setdefault("memory", "16GB")
    opts.setdefault("processes", 1)
    if gpus:
        opts["job_extra_directives"] = [f"--gres=gpu:{gpus}"]
        opts["worker_extra_args"] = ["--resources", f"GPU={gpus}"]
    cluster = SLURMCluster(**opts)
    cluster.scale(jobs=jobs)
    return cluster


@contextlib.contextmanager
def connect(target: ClusterTarget, *, gpu: bool = False) -> Iterator[Any]:
    """A :class:`distributed.Client` of ``target``, closed (with the cluster it started) on exit.
    ``gpu``: local workers offer one ``GPU`` resource each."""
    from distributed import Client, LocalCluster

    cluster = None
    if target.kind == "local":
        extra = {"memory_limit": target.options["memory"]} if "memory" in target.options else {}
        cluster = LocalCluster(n_workers=target.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, worker_dashboard_address=None, silence_logs=logging.ERROR,
                               scheduler_kwargs={"allowed_failures": 1}, resources={"GPU": 1} if gpu else None,
                               **extra)
    elif target.kind == "slurm":
        cluster = _slurm_cluster(target.options)
    try:
        client = Client(cluster if cluster is not None else target.address, timeout="60s")
    except OSError as err:
        if cluster is not None:
            cluster.close()
        raise UsageError(f"--cluster {target.address}: cannot reach the scheduler ({err}); start it with "
                         "`dask scheduler` or check the address") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# --- on the worker ------------------------------------------------------------------------------------

def _die_with_parent() -> None:
    """In the papermill child before exec: its own session, and SIGKILL when the worker dies (Linux)."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


def _run_child(cmd: Sequence[str], env: Mapping[str, str], timeout: float | None, token: str) -> tuple[int, str]:
    """papermill on the worker; (exit code, stderr). Killed past ``timeout`` or when the client stops."""
    if token in _STOPPED:
        return -1, "Interrupted: the batch was stopped"
    proc = subprocess.Popen(list(cmd), env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_die_with_parent)  # noqa: PLW1509 - prctl must run in the child
    _RUNNING[token] = proc.pid
    try:
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            procs.kill_trees([proc.pid])
            _, stderr = proc.communicate()
            return -1, f"TimeoutError: run exceeded {timeout} s\n{stderr or ''}"
        return proc.returncode, stderr or ""
    finally:
        _RUNNING.pop(token, None)


def stop_runs(tokens: Sequence[str]) -> int:
    """On a worker (``client.run``): kill the papermill trees of ``tokens``, refuse them later; how many ran."""
    _STOPPED.update(tokens)
    pids = [_RUNNING[t] for t in tokens if t in _RUNNING]
    if pids:
        procs.kill_trees(pids)
    return len(pids)


def remove_attempts(folder: str | Path, rid: str, token: str) -> int:
    """Remove the work folders of run ``rid`` in ``folder`` made by earlier attempts of the task ``token``
    (their worker died); how many."""
    removed = 0
    for path in Path(folder).glob(f".{rid}.partial-*"):
        marker = path / MARKER
        if marker.is_file() and marker.read_text().strip() == token:
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def _gpu_env(env: dict[str, str]) -> None:
    """Pin a local worker's GPU run to one device (worker ``i`` → GPU ``i mod count``) unless pinned already."""
    from distributed import get_worker

    if "CUDA_VISIBLE_DEVICES" in env:
        return
    name = get_worker().name
    if isinstance(name, int):
        import torch

        count = torch.cuda.device_count()
        if count:
            env["CUDA_VISIBLE_DEVICES"] = str(name % count)


def execute_on_worker(job: Mapping[str, Any]) -> dict[str, Any]:
    """The Dask task of one run: papermill into a work folder under ``job["root"]/<notebook>`` (so the
    notebook's checkpoints land in ``<root>/<notebook>/.checkpoints/<run-id>``), its files returned as
    bytes, the folder removed. Returns ``code``, ``stderr``, ``files`` (relative path → bytes), ``host``
    and ``retried`` (an earlier attempt's folder was found: its worker died)."""
    root = Path(job["root"] or Path(tempfile.gettempdir()) / "attnbook-cluster")
    folder = root / job["stem"]
    folder.mkdir(parents=True, exist_ok=True)
    retried = remove_attempts(folder, job["run_id"], job["token"]) > 0
    notebook = Path(job["notebook"])
    host = socket.gethostname()
    if not notebook.is_file():
        return {"code": 1, "files": {}, "host": host, "retried": retried,
                "stderr": f"FileNotFoundError: notebook {notebook} not found on worker host {host}; the workers "
                          "need this repository at the same path (a shared file system or the same checkout)"}
    work = store.work_dir(folder / job["run_id"])
    work.mkdir()
    try:
        (work / MARKER).write_text(job["token"])
        atomic_write_json(work / runs.PARAMS_FILE, dict(job["params"]))
        atomic_write_json(work / runner.PAPERMILL_PARAMS, {**job["params"], "run_dir": str(work)})
        env = runner._kernel_env(job["threads"])
        if job["gpu"]:
            _gpu_env(env)
        cmd = runner.papermill_command(notebook, work, log_output=job["log_output"])
        code, stderr = runner.with_kernel_retries(lambda: _run_child(cmd, env, job["timeout"], job["token"]),
                                                  work / runs.NOTEBOOK_FILE)
        skip = {MARKER, runner.PAPERMILL_PARAMS}
        files = {str(p.relative_to(work)): p.read_bytes() for p in sorted(work.rglob("*"))
                 if p.is_file() and p.name not in skip}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"code": code, "stderr": stderr, "files": files, "host": host, "retried": retried}


def delete_checkpoints_on_worker(directory: str) -> bool:
    """A Dask task: :func:`attnbook.runner_store.delete_checkpoints` where the workers see the folder."""
    return store.delete_checkpoints(Path(directory))


# --- on the client ------------------------------------------------------------------------------------

class ClusterBackend:
    """Executes runs as Dask tasks (see the module docstring); results are written here by the runner."""

    def __init__(self, client: Any, *, checkpoints: Path | None, gpu_runs: frozenset[str] = frozenset()) -> None:
        self.client = client
        self.root = str(Path(checkpoints).resolve()) if checkpoints is not None else None
        self.gpu_runs = gpu_runs  # run folders whose profile needs a GPU
        self.retried: set[str] = set()
        self.hosts: dict[str, str] = {}
        self._tokens: dict[str, Any] = {}  # token → future, while running

    def checkpoint_dir(self, spec: RunSpec) -> str:
        """Where the workers keep ``spec``'s checkpoints."""
        root = self.root or str(Path(tempfile.gettempdir()) / "attnbook-cluster")
        return str(runs.checkpoint_dir(Path(root) / spec.stem, spec.run_id))

    def papermill(self, spec: RunSpec, work: Path, timeout: float | None, log_output: bool) -> tuple[int, str]:
        """Run ``spec`` on a worker and write the files it made into ``work``."""
        from concurrent.futures import CancelledError

        from distributed import KilledWorker

        if procs.stopping():
            raise procs.Interrupted("the batch is stopping")
        token = uuid.uuid4().hex
        gpu = str(spec.run_dir) in self.gpu_runs
        job = {"notebook": str(spec.notebook.resolve()), "stem": spec.stem, "run_id": spec.run_id,
               "params": dict(spec.params), "threads": spec.threads, "timeout": timeout, "log_output": log_output,
               "root": self.root, "token": token, "gpu": gpu}
        future = self.client.submit(execute_on_worker, job, key=f"attnbook-run-{spec.run_id}-{token[:8]}", pure=False,
                                    resources={"GPU": 1} if gpu else None)
        self._tokens[token] = future
        try:
            result = future.result()
        except CancelledError:
            raise procs.Interrupted("the batch is stopping") from None
        except KilledWorker as err:
            self._cleanup(job)
            attempts = err.allowed_failures + 1 if isinstance(err.allowed_failures, int) else "all"
            last = getattr(err.last_worker, "address", "?")
            return -1, (f"KilledWorker: every Dask worker that ran this run died ({attempts} attempts, the last on "
                        f"{last}; see its log); run the batch again to retry it (it resumes from its checkpoint)")
        except Exception as err:  # noqa: BLE001 - a worker-side error fails this run only
            return 1, f"{type(err).__name__} on the Dask worker: {err}"
        finally:
            self._tokens.pop(token, None)
        if result["retried"]:
            self.retried.add(str(spec.run_dir))
        self.hosts[str(spec.run_dir)] = result["host"]
        for name, data in result["files"].items():
            target = work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return result["code"], result["stderr"]

    def _cleanup(self, job: Mapping[str, Any]) -> None:
        root = Path(job["root"] or Path(tempfile.gettempdir()) / "attnbook-cluster")
        with contextlib.suppress(Exception):
            self.client.submit(remove_attempts, str(root / job["stem"]), job["run_id"], job["token"],
                               pure=False).result(timeout=60)

    def delete_checkpoints(self, spec: RunSpec) -> bool:
        """Delete ``spec``'s checkpoints where the workers keep them (a small task on any worker)."""
        future = self.client.submit(delete_checkpoints_on_worker, self.checkpoint_dir(spec), pure=False)
        return bool(future.result())

    def stop(self) -> None:
        """Cancel every run handed out and kill the running ones on their workers."""
        tokens, futures = list(self._tokens), list(self._tokens.values())
        with contextlib.suppress(Exception):
            self.client.run(stop_runs, tokens)
        with contextlib.suppress(Exception):
            self.client.cancel(futures)


def _gpu_runs(specs: Sequence[RunSpec]) -> frozenset[str]:
    from attnbook.chapters import get_chapter

    needing = set()
    for spec in specs:
        config = get_chapter(spec.stem).profiles.get(str(spec.params.get("profile")))
        if getattr(config, "needs_gpu", False):
            needing.add(str(spec.run_dir))
    return frozenset(needing)


def run_batch(specs: Sequence[RunSpec], target: ClusterTarget, *, checkpoints: Path | None = None,
              jobs: int | None = None, **options: Any) -> list[Outcome]:
    """:func:`attnbook.runner.run_batch` on a Dask cluster: at most ``jobs`` runs handed out at once
    (default: all, up to :data:`MAX_HANDED_OUT`; the workers decide how many execute). ``checkpoints``:
    the shared folder for training checkpoints (a local cluster defaults to the results folder)."""
    unique = runner.distinct_specs(specs)
    if checkpoints is None and target.kind == "local" and unique:
        checkpoints = unique[0].results
    gpu_runs = _gpu_runs(unique)
    started = time.perf_counter()
    with connect(target, gpu=bool(gpu_runs)) as client:
        workers = client.scheduler_info().get("workers", {}).values()
        if gpu_runs and workers and not any(w.get("resources", {}).get("GPU") for w in workers):
            print(f"attnbook: no worker of {client.scheduler.address} offers a GPU resource yet: the {len(gpu_runs)} "
                  "run(s) needing a GPU wait for one (start workers with `dask worker … --resources GPU=1`)",
                  file=sys.stderr)
        backend = ClusterBackend(client, checkpoints=checkpoints, gpu_runs=gpu_runs)
        outcomes = runner.run_batch(unique, jobs=jobs or min(max(1, len(unique)), MAX_HANDED_OUT), backend=backend,
                                    **options)
    for outcome in outcomes:
        if str(outcome.spec.run_dir) in backend.retried:
            outcome.note = ", ".join(filter(None, [outcome.note, "retried: its first worker died"]))
    logging.getLogger(__name__).info("cluster batch of %d runs in %.1f s", len(unique), time.perf_counter() - started)
    return outcomes
