"""Execute notebooks headless through papermill: one run or a parametrized batch.

``attnbook run nbs/04_bla.ipynb --profile cpu --grid seed=0..9 --grid method=bl,bla -p epochs_override=3 --jobs 2``
plans one run per grid point, parses every value into the chapter config's type and validates it
*before* anything executes (the run id comes from the parsed values, so ``epochs=03`` is ``epochs=3``;
duplicate grid points collapse), skips runs that already completed with the current code (a *stale*
run, recorded by another code version, is rerun unless ``keep_stale``), executes the rest in parallel
subprocesses, and keeps a failing run's executed notebook (with the error) while the batch goes on.

Faults: one lock per run (a second process reports it as already running), leftovers of dead
processes are cleaned, killing the batch kills its runs (:mod:`attnbook.runner_procs`), a kernel that
cannot bind its ports at start-up ("Address already in use", several kernels starting at once) is
restarted (:func:`with_kernel_retries`), and a run's training checkpoints are deleted once it completes
unless ``keep_checkpoints``. Every run gets the same fixed number of CPU threads whatever ``jobs`` is
(``$ATTNBOOK_THREADS``, recorded in metrics.json).

Where papermill executes is a :class:`Backend`: this host (:data:`LOCAL`, subprocesses) or a Dask
cluster (:class:`attnbook.runner_cluster.ClusterBackend`); locks, decisions and the results folder
stay with this process either way.
"""
from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from attnbook import runner_procs as procs
from attnbook import runner_store as store
from attnbook import runs
from attnbook.chapters import Chapter, get_chapter
from attnbook.config import ConfigError, RequirementError
from attnbook.files import atomic_write_json, atomic_write_text
from attnbook.provenance import code_version, jsonable
from attnbook.runner_store import is_complete, run_state  # noqa: F401 (re-exported)

PAPERMILL_PARAMS = ".papermill-params.json"
STDERR_FILE = "papermill.stderr.txt"
KERNEL_RACE = "Address already in use"  # a kernel lost the race for its ZMQ ports to another starting kernel
KERNEL_START_ATTEMPTS = 3


class UsageError(ValueError):
    """Bad input to the runner: exit code 2, one line naming the fix, nothing written."""


def parse_text(text: str) -> str | None:
    """A command-line value before it meets its parameter's type: ``none``/``null`` → ``None`` ("the
    profile's default"), anything else the stripped text (the chapter config parses it)."""
    text = text.strip()
    return None if text.lower() in ("none", "null") else text


def parse_assignment(text: str, flag: str) -> tuple[str, str]:
    """Split a ``NAME=VALUE`` option of ``flag`` into stripped name and value (``UsageError`` if malformed)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise UsageError(f"{flag} {text!r}: expected NAME=VALUE (e.g. {flag} seed=0..9)")
    return name.strip(), value.strip()


def parse_grid_values(name: str, text: str) -> list[Any]:
    """``0..9`` (inclusive integer range) or a comma list ``bl,bla,bla_t`` (texts, parsed later by type)."""
    if ".." in text:
        lo, _, hi = text.partition("..")
        if not (lo.strip().lstrip("-").isdigit() and hi.strip().lstrip("-").isdigit()):
            raise UsageError(f"--grid {name}={text}: a range needs integers, e.g. {name}=0..9")
        start, stop = int(lo), int(hi)
        if stop < start:
            raise UsageError(f"--grid {name}={text}: empty range (write {name}={stop}..{start})")
        return list(range(start, stop + 1))
    values = [parse_text(v) for v in text.split(",") if v.strip()]
    if not values:
        raise UsageError(f"--grid {name}={text}: no values (write {name}=a,b,c or {name}=0..9)")
    return values


def default_threads() -> int:
    """CPU threads per run unless ``--threads`` says otherwise: ``$ATTNBOOK_THREADS`` or
    :data:`attnbook.runs.DEFAULT_THREADS` — never derived from ``--jobs`` or the machine."""
    return runs.managed_threads() or runs.DEFAULT_THREADS


@dataclass(frozen=True)
class RunSpec:
    """One planned run: a notebook, the (typed) parameters injected into its ``parameters`` cell and
    the CPU threads it gets."""

    notebook: Path
    params: Mapping[str, Any]
    results: Path
    threads: int = runs.DEFAULT_THREADS

    @property
    def stem(self) -> str:
        """The notebook's name without its suffix (its folder under ``results``)."""
        return self.notebook.stem

    @property
    def run_id(self) -> str:
        """The run's id from its parameters and, if not the default, its thread count (:func:`runs.identity`)."""
        return runs.run_id(runs.identity(self.params, self.threads))

    @property
    def run_dir(self) -> Path:
        """The run's folder, ``<results>/<notebook>/<run id>``."""
        return self.results / self.stem / self.run_id

    @property
    def checkpoint_dir(self) -> Path:
        """The run's training checkpoints (:func:`attnbook.runs.checkpoint_dir`)."""
        return runs.checkpoint_dir(self.results / self.stem, self.run_id)


@dataclass
class Outcome:
    """How one planned run ended: its status, folder, duration, error text, metrics and a note
    (``stale → rerun``, ``already running`` …)."""

    spec: RunSpec
    status: str  # complete | failed | skipped
    run_dir: Path
    seconds: float = 0.0
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    note: str = ""


def notebook_parameters(path: Path) -> tuple[str, ...]:
    """Names declared in the notebook's papermill ``parameters`` cell (``UsageError`` if unreadable)."""
    import papermill

    try:
        return tuple(papermill.inspect_notebook(str(path)).keys())
    except Exception as err:  # nbformat's NotJSONError, a validation error, an OSError …
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:100]
        raise UsageError(f"notebook {path} cannot be read ({type(err).__name__}: {reason}); "
                         "restore it from git or pass another notebook") from None


def _check_results_writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UsageError(f"results folder {root} is not writable ({err.strerror}); "
                         "pass --results DIR or set ATTNBOOK_RESULTS to a writable folder") from None


def plan(notebook: str | Path, *, profile: str = "cpu", grid: Sequence[str] = (), params: Sequence[str] = (),
         results: Path | None = None, threads: int | None = None) -> list[RunSpec]:
    """Validate a batch request and expand its grid into run specs, each value parsed into its
    parameter's type; grid points that parse to the same run collapse into one. Nothing is written."""
    path = Path(notebook)
    if path.suffix != ".ipynb" or not path.is_file():
        raise UsageError(f"notebook {notebook} not found; pass a path such as nbs/00_testbed.ipynb")
    try:
        chapter = get_chapter(path.stem)
    except ConfigError as err:
        raise UsageError(str(err)) from None
    threads = default_threads() if threads is None else threads
    if threads < 1:
        raise UsageError(f"--threads {threads}: give at least 1")
    fixed: dict[str, Any] = {}
    for item in params:
        name, value = parse_assignment(item, "-p")
        fixed[name] = parse_text(value)
    axes: dict[str, list[Any]] = {}
    for item in grid:
        name, value = parse_assignment(item, "--grid")
        if name in axes or name in fixed:
            raise UsageError(f"parameter {name!r} is given twice; use either -p or one --grid for it")
        axes[name] = parse_grid_values(name, value)
    _check_names(chapter, path, {**fixed, **axes})
    root = Path(results) if results else runs.results_root()
    specs: dict[str, RunSpec] = {}
    for combo in itertools.product(*axes.values()) if axes else [()]:
        values = typed_values(chapter, {"profile": profile, "seed": "0", **fixed, **dict(zip(axes, combo))})
        spec = RunSpec(notebook=path, params=values, results=root, threads=threads)
        specs.setdefault(spec.run_id, spec)
    _check_results_writable(root)
    return list(specs.values())


def _check_names(chapter: Chapter, path: Path, given: Mapping[str, Any]) -> None:
    declared = set(notebook_parameters(path))
    valid = [p for p in chapter.notebook_parameters if p not in ("profile", "run_dir")]
    for name in given:
        if name == "profile":
            raise UsageError("set the profile with --profile, not -p/--grid")
        if name not in valid or name not in declared:
            raise UsageError(f"unknown parameter {name!r} for {path.name}; valid parameters: {', '.join(valid)}")


def typed_values(chapter: Chapter, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (texts or numbers) parsed into the chapter config's types and validated (ranges,
    choices, the profile's requirements); ``None`` stays ``None`` (the profile's default)."""
    overrides = {k: v for k, v in values.items() if k not in ("profile", "seed")}
    try:
        config = chapter.configure(values["profile"], values["seed"], namespace={}, **overrides)
    except (ConfigError, RequirementError) as err:
        raise UsageError(str(err)) from None
    typed = {name: None if value is None else jsonable(getattr(config, name)) for name, value in overrides.items()}
    return {"profile": values["profile"], "seed": config.seed, **typed}


def decide(spec: RunSpec, *, force: bool, keep_stale: bool) -> tuple[bool, str]:
    """(run it?, note) for a spec given what its folder holds: complete runs are skipped unless
    ``force``; a stale one (another code version) is rerun unless ``keep_stale``."""
    state = run_state(spec.run_dir)
    if force:
        return True, "forced" if state in (store.COMPLETE, store.STALE) else ""
    if state == store.COMPLETE:
        return False, ""
    if state == store.STALE:
        return (False, "stale, kept") if keep_stale else (True, "stale → rerun")
    return True, ""


def _kernel_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # an inherited Agg backend makes plt.show() draw nothing in notebooks
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", runs.THREADS_ENV):
        env[var] = str(threads)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads starve parallel runs on a busy machine
    env["PYTHONHASHSEED"] = "0"
    env["ATTNBOOK_PROGRESS"] = "0"  # no progress bars in executed notebooks (interactive use keeps them)
    return env


def _last_error(stderr: str, notebook: Path) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line.strip()[:600]
    return (lines[-1].strip()[:600] if lines else f"papermill failed on {notebook}")


def _papermill(cmd: Sequence[str], env: Mapping[str, str], timeout: float | None) -> tuple[int, str]:
    """Run papermill (its own process group, killed with the batch); (exit code, stderr)."""
    return procs.run(cmd, env=env, timeout=timeout)


def papermill_command(notebook: Path, work: Path, *, log_output: bool = False) -> list[str]:
    """The papermill command line executing ``notebook`` into ``work`` with ``work``'s parameters file."""
    cmd = [sys.executable, "-m", "papermill", str(notebook), str(work / runs.NOTEBOOK_FILE),
           "-f", str(work / PAPERMILL_PARAMS), "--cwd", str(notebook.parent), "--kernel", "python3",
           "--no-progress-bar"]
    return cmd + ["--log-output"] if log_output else cmd


def kernel_start_race(code: int, stderr: str, output: Path) -> bool:
    """Whether papermill failed only because its kernel could not bind its ports ("Address already in
    use": several kernels picked the same free port at once) before any cell ran — not the notebook's fault."""
    if code == 0 or KERNEL_RACE not in stderr:
        return False
    try:
        cells = json.loads(Path(output).read_text()).get("cells", [])
    except (OSError, ValueError, AttributeError):
        return True  # no readable output notebook: nothing was executed
    return not any(cell.get("execution_count") for cell in cells if isinstance(cell, dict))


def with_kernel_retries(call: Callable[[], tuple[int, str]], output: Path,
                        attempts: int = KERNEL_START_ATTEMPTS) -> tuple[int, str]:
    """``call()`` (a papermill run writing ``output``), repeated after a random pause while it fails on a
    kernel start-up race (:func:`kernel_start_race`), at most ``attempts`` times; the last (code, stderr)."""
    for attempt in range(1, attempts + 1):
        code, stderr = call()
        if attempt == attempts or not kernel_start_race(code, stderr, output):
            return code, stderr
        time.sleep(random.uniform(0.2, 1.0) * attempt)  # de-synchronise the kernels that collided
    raise AssertionError("unreachable")  # pragma: no cover


class Backend(Protocol):
    """Where a run's papermill executes. ``papermill`` leaves the executed notebook and the run's files
    in ``work`` and returns (exit code, stderr), raising :class:`attnbook.runner_procs.Interrupted` when
    the batch stops; ``delete_checkpoints`` removes a run's training checkpoints (whether there were any)."""

    def papermill(self, spec: RunSpec, work: Path, timeout: float | None, log_output: bool) -> tuple[int, str]:
        """Execute ``spec``'s notebook with ``work``'s parameters into ``work``."""

    def delete_checkpoints(self, spec: RunSpec) -> bool:
        """Remove ``spec``'s training checkpoints."""


class LocalBackend:
    """papermill in a subprocess of this host (its own process group, killed with the batch)."""

    def papermill(self, spec: RunSpec, work: Path, timeout: float | None, log_output: bool) -> tuple[int, str]:
        """Execute in a subprocess, retrying kernel start-up races."""
        cmd = papermill_command(spec.notebook, work, log_output=log_output)
        return with_kernel_retries(lambda: _papermill(cmd, _kernel_env(spec.threads), timeout),
                                   work / runs.NOTEBOOK_FILE)

    def delete_checkpoints(self, spec: RunSpec) -> bool:
        """Remove ``results/<notebook>/.checkpoints/<run-id>``."""
        return store.delete_checkpoints(spec.checkpoint_dir)


LOCAL = LocalBackend()


def _skipped(spec: RunSpec, note: str) -> Outcome:
    try:
        metrics = runs.read_record(spec.run_dir)["metrics"]
    except runs.ResultsError:
        metrics = {}
    return Outcome(spec, "skipped", spec.run_dir, metrics=metrics, note=note)


def _not_started(spec: RunSpec, err: OSError) -> Outcome:
    where = err.filename or spec.run_dir
    return Outcome(spec, "failed", spec.run_dir, error=f"cannot create the run folder {where}: "
                                                       f"{err.strerror or err}; fix its permissions or --results")


def execute(spec: RunSpec, *, timeout: float | None = None, log_output: bool = False, fresh: bool = False,
            keep_stale: bool = False, keep_checkpoints: bool = False, backend: Backend | None = None) -> Outcome:
    """Execute one run in a fresh kernel; the executed notebook and results land in ``spec.run_dir``.

    Holds the run's lock throughout (held elsewhere → ``skipped``, "already running") and decides again
    under it whether to run (:func:`decide`). ``fresh`` (``--force``) deletes the run's training
    checkpoints first; a completed run's checkpoints are deleted unless ``keep_checkpoints``; a run that
    failed on a corrupt checkpoint, or one of another configuration or code version, has its checkpoints
    deleted, so the next attempt retrains instead of failing again.
    A run whose folder cannot be created fails alone. ``backend``: where papermill runs (default :data:`LOCAL`)."""
    backend = backend or LOCAL
    lock = store.RunLock(spec.run_dir)
    try:
        spec.run_dir.parent.mkdir(parents=True, exist_ok=True)
        if not lock.acquire():
            return _skipped(spec, f"already running (lock {lock.path})")
    except OSError as err:
        return _not_started(spec, err)
    with lock:
        store.clean_leftovers(spec.run_dir)
        go, note = decide(spec, force=fresh, keep_stale=keep_stale)
        if not go:
            return _skipped(spec, note or "completed meanwhile")
        if fresh:
            backend.delete_checkpoints(spec)
        work = store.work_dir(spec.run_dir)
        try:
            work.mkdir()
            atomic_write_json(work / runs.PARAMS_FILE, dict(spec.params))
            atomic_write_json(work / PAPERMILL_PARAMS, {**spec.params, "run_dir": str(work.resolve())})
        except OSError as err:
            shutil.rmtree(work, ignore_errors=True)
            return _not_started(spec, err)
        outcome = _execute_in(spec, work, timeout=timeout, log_output=log_output, backend=backend)
        outcome.note = outcome.note or note
        if outcome.status == "complete" and not keep_checkpoints:
            backend.delete_checkpoints(spec)
        return outcome


def _execute_in(spec: RunSpec, work: Path, *, timeout: float | None, log_output: bool,
                backend: Backend = LOCAL) -> Outcome:
    t0 = time.perf_counter()
    try:
        code, stderr = backend.papermill(spec, work, timeout, log_output)
    except procs.Interrupted:
        code, stderr = -1, ""
    seconds = time.perf_counter() - t0
    if procs.stopping():  # the batch is being killed: leave no half-written run behind
        shutil.rmtree(work, ignore_errors=True)
        return Outcome(spec, "failed", spec.run_dir, seconds, "interrupted")
    (work / PAPERMILL_PARAMS).unlink(missing_ok=True)
    error, metrics, version = "", {}, code_version()
    if code == 0:
        try:
            record = runs.read_record(work)
            metrics, version = record["metrics"], record.get("code_version", version)
        except runs.ResultsError as err:
            code, error = 1, f"notebook finished but its results are unusable: {err}"
        else:
            if record["run_id"] != spec.run_id:
                code, error = 1, (f"the notebook recorded run id {record['run_id']} for run {spec.run_id}: "
                                  "its runs.start(params=…) must pass every parameter of its parameters cell")
    else:
        error = _last_error(stderr, spec.notebook)
        refused = any(name in stderr for name in ("CheckpointCorruptError", "CheckpointMismatchError"))
        if refused and backend.delete_checkpoints(spec):  # it can never be resumed: don't fail forever
            error += " [the runner deleted it: run again to retrain from scratch]"
    status = {"status": "complete" if code == 0 else "failed", "returncode": code, "seconds": round(seconds, 2),
              "error": error, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "run_id": spec.run_id,
              "code_version": version, "threads": spec.threads}
    if code != 0:
        atomic_write_text(work / STDERR_FILE, stderr)
    final = store.finalize(spec.run_dir, work, status)
    return Outcome(spec, status["status"], final, seconds, error, metrics)


def _execute_safely(spec: RunSpec, **options: Any) -> Outcome:
    """:func:`execute`, with any unexpected error turned into that run's failure (the batch goes on)."""
    try:
        return execute(spec, **options)
    except Exception as err:  # a full disk, a bug: it fails this run, not the batch
        return Outcome(spec, "failed", spec.run_dir, error=f"{type(err).__name__}: {err}")


def distinct_specs(specs: Sequence[RunSpec]) -> list[RunSpec]:
    """One spec per run folder, first occurrence kept: duplicate grid points collapse, while the same
    parameters in two notebooks (every chapter's book run) stay two runs."""
    distinct: dict[str, RunSpec] = {}
    for spec in specs:
        distinct.setdefault(str(spec.run_dir), spec)
    return list(distinct.values())


def run_batch(specs: Sequence[RunSpec], *, jobs: int = 1, force: bool = False, keep_stale: bool = False,
              keep_checkpoints: bool = False, timeout: float | None = None, progress: bool = True,
              backend: Backend | None = None) -> list[Outcome]:
    """Execute specs ``jobs`` at a time (one outcome per distinct run, in order). Complete runs are
    skipped unless ``force``; stale ones rerun unless ``keep_stale``; each run gets ``spec.threads``
    CPU threads whatever ``jobs`` is. Interrupting the batch (Ctrl-C, SIGTERM) kills every run.
    ``backend`` (default: this host) executes the notebooks; a cluster's own scheduler then decides how
    many run at once, and ``jobs`` only bounds how many runs this process hands out at a time."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from tqdm.auto import tqdm

    unique = distinct_specs(specs)
    for notebook_dir in {s.run_dir.parent for s in unique}:
        store.sweep_leftovers(notebook_dir)
    outcomes: list[Outcome] = []
    todo: list[tuple[RunSpec, str]] = []
    for spec in unique:
        go, note = decide(spec, force=force, keep_stale=keep_stale)
        if go:
            todo.append((spec, note))
        else:
            outcomes.append(_skipped(spec, note))
    bar = tqdm(total=len(unique), initial=len(outcomes), desc="runs", unit="run", disable=not progress)
    options = {"timeout": timeout, "fresh": force, "keep_stale": keep_stale, "keep_checkpoints": keep_checkpoints,
               "backend": backend}
    with procs.killed_on_exit():
        pool = ThreadPoolExecutor(max_workers=max(1, jobs))
        try:
            futures = {pool.submit(_execute_safely, spec, **options): note for spec, note in todo}
            for future in as_completed(futures):
                outcome = future.result()
                outcome.note = outcome.note or futures[future]
                outcomes.append(outcome)
                bar.update(1)
                bar.set_postfix(last=outcome.status, refresh=False)
        except BaseException:
            procs.terminate_all()  # before waiting on the workers: their papermill children must die first
            if hasattr(backend, "stop"):
                backend.stop()  # a cluster's runs: cancelled, their papermill killed on the workers
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()
    bar.close()
    order = {str(s.run_dir): i for i, s in enumerate(unique)}
    return sorted(outcomes, key=lambda o: order[str(o.spec.run_dir)])


def summary_rows(outcomes: Iterable[Outcome], max_metrics: int = 4) -> list[dict[str, Any]]:
    """One table row per outcome: run id, status (with its note), seconds, the first ``max_metrics``
    metrics, any error."""
    rows = []
    for o in outcomes:
        status = f"{o.status} ({o.note})" if o.note else o.status
        row: dict[str, Any] = {"run": o.spec.run_id, "status": status,
                               "seconds": round(o.seconds, 1) if o.seconds else ""}
        row.update({k: round(v, 4) for k, v in list(o.metrics.items())[:max_metrics]})
        if o.error:
            row["error"] = o.error[:120]
        rows.append(row)
    return rows
