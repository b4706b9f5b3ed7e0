"""Execute notebooks headless through papermill: one run or a parametrized batch.

``attnbook run nbs/04_bla.ipynb --profile cpu --grid seed=0..9 --grid method=bl,bla -p epochs=3 --jobs 2``
plans one run per grid point, validates every name and value *before* anything executes, skips
runs that already completed, executes the rest in parallel subprocesses, and keeps a failing
run's executed notebook (with the error) while the batch goes on.
"""
from __future__ import annotations

import ast
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from attnbook import runs
from attnbook.chapters import Chapter, get_chapter
from attnbook.config import ConfigError, RequirementError


class UsageError(ValueError):
    """Bad input to the runner: exit code 2, one line naming the fix, nothing written."""


def parse_value(text: str) -> Any:
    """``3`` → 3, ``0.5`` → 0.5, ``true`` → True, ``none`` → None, anything else → the string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()
    return value if isinstance(value, (int, float, str)) else text.strip()


def parse_assignment(text: str, flag: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise UsageError(f"{flag} {text!r}: expected NAME=VALUE (e.g. {flag} seed=0..9)")
    return name.strip(), value.strip()


def parse_grid_values(name: str, text: str) -> list[Any]:
    """``0..9`` (inclusive integer range) or a comma list ``bl,bla,bla_t``."""
    if ".." in text:
        lo, _, hi = text.partition("..")
        if not (lo.strip().lstrip("-").isdigit() and hi.strip().lstrip("-").isdigit()):
            raise UsageError(f"--grid {name}={text}: a range needs integers, e.g. {name}=0..9")
        start, stop = int(lo), int(hi)
        if stop < start:
            raise UsageError(f"--grid {name}={text}: empty range (write {name}={stop}..{start})")
        return list(range(start, stop + 1))
    values = [parse_value(v) for v in text.split(",") if v.strip()]
    if not values:
        raise UsageError(f"--grid {name}={text}: no values (write {name}=a,b,c or {name}=0..9)")
    return values


@dataclass(frozen=True)
class RunSpec:
    """One planned run: a notebook and the parameters injected into its ``parameters`` cell."""

    notebook: Path
    params: Mapping[str, Any]
    results: Path

    @property
    def stem(self) -> str:
        return self.notebook.stem

    @property
    def run_id(self) -> str:
        return runs.run_id(self.params)

    @property
    def run_dir(self) -> Path:
        return self.results / self.stem / self.run_id


@dataclass
class Outcome:
    spec: RunSpec
    status: str  # complete | failed | skipped
    run_dir: Path
    seconds: float = 0.0
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


def notebook_parameters(path: Path) -> tuple[str, ...]:
    """Names declared in the notebook's papermill ``parameters`` cell."""
    import papermill

    return tuple(papermill.inspect_notebook(str(path)).keys())


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
         results: Path | None = None) -> list[RunSpec]:
    """Validate a batch request and expand its grid into run specs (nothing is written)."""
    path = Path(notebook)
    if path.suffix != ".ipynb" or not path.is_file():
        raise UsageError(f"notebook {notebook} not found; pass a path such as nbs/00_testbed.ipynb")
    try:
        chapter = get_chapter(path.stem)
    except ConfigError as err:
        raise UsageError(str(err)) from None
    fixed: dict[str, Any] = {}
    for item in params:
        name, value = parse_assignment(item, "-p")
        fixed[name] = parse_value(value)
    axes: dict[str, list[Any]] = {}
    for item in grid:
        name, value = parse_assignment(item, "--grid")
        if name in axes or name in fixed:
            raise UsageError(f"parameter {name!r} is given twice; use either -p or one --grid for it")
        axes[name] = parse_grid_values(name, value)
    _check_names(chapter, path, {**fixed, **axes})
    root = Path(results) if results else runs.results_root()
    specs = []
    for combo in itertools.product(*axes.values()) if axes else [()]:
        values = {"profile": profile, "seed": 0, **fixed, **dict(zip(axes, combo))}
        _check_values(chapter, values)
        specs.append(RunSpec(notebook=path, params=values, results=root))
    _check_results_writable(root)
    return specs


def _check_names(chapter: Chapter, path: Path, given: Mapping[str, Any]) -> None:
    declared = set(notebook_parameters(path))
    valid = [p for p in chapter.notebook_parameters if p not in ("profile", "run_dir")]
    for name in given:
        if name == "profile":
            raise UsageError("set the profile with --profile, not -p/--grid")
        if name not in valid or name not in declared:
            raise UsageError(f"unknown parameter {name!r} for {path.name}; valid parameters: {', '.join(valid)}")


def _check_values(chapter: Chapter, values: Mapping[str, Any]) -> None:
    overrides = {k: v for k, v in values.items() if k not in ("profile", "seed")}
    try:
        chapter.configure(values["profile"], values["seed"], **overrides)
    except (ConfigError, RequirementError) as err:
        raise UsageError(str(err)) from None


def is_complete(run_dir: Path) -> bool:
    status = run_dir / runs.STATUS_FILE
    if not status.is_file():
        return False
    try:
        ok = json.loads(status.read_text()).get("status") == "complete"
        return ok and bool(runs.read_record(run_dir))
    except (json.JSONDecodeError, runs.ResultsError):
        return False


def _kernel_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # an inherited Agg backend makes plt.show() draw nothing in notebooks
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATTNBOOK_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads starve parallel runs on a busy machine
    env["PYTHONHASHSEED"] = "0"
    return env


def _last_error(stderr: str, notebook: Path) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line.strip()[:300]
    return (lines[-1].strip()[:300] if lines else f"papermill failed on {notebook}")


def _finalize(spec: RunSpec, work: Path, status: dict[str, Any]) -> Path:
    """Move the finished work folder into place without losing a previous complete run."""
    runs.atomic_write_json(work / runs.STATUS_FILE, status)
    final = spec.run_dir
    if status["status"] != "complete" and is_complete(final):
        final = final.with_name(final.name + ".failed")
    if final.exists():
        trash = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(trash)
        work.rename(final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        work.rename(final)
    return final


def execute(spec: RunSpec, *, threads: int = 1, timeout: float | None = None, log_output: bool = False,
            fresh: bool = False) -> Outcome:
    """Execute one run in a fresh kernel; the executed notebook and results land in ``spec.run_dir``.

    ``fresh`` deletes the run's training checkpoints first (``--force``: retrain, don't reload)."""
    spec.run_dir.parent.mkdir(parents=True, exist_ok=True)
    if fresh:
        shutil.rmtree(runs.checkpoint_dir(spec.run_dir.parent, spec.run_id), ignore_errors=True)
    work = spec.run_dir.with_name(f".{spec.run_id}.partial-{os.getpid()}-{time.time_ns()}")
    work.mkdir()
    runs.atomic_write_json(work / runs.PARAMS_FILE, dict(spec.params))
    injected = {**spec.params, "run_dir": str(work.resolve())}
    params_file = work / ".papermill-params.json"
    params_file.write_text(json.dumps(injected))
    cmd = [sys.executable, "-m", "papermill", str(spec.notebook), str(work / runs.NOTEBOOK_FILE),
           "-f", str(params_file), "--cwd", str(spec.notebook.parent), "--kernel", "python3",
           "--no-progress-bar"]
    if log_output:
        cmd.append("--log-output")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=_kernel_env(threads), capture_output=True, text=True, timeout=timeout)
        code, stderr = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as err:
        code, stderr = -1, f"TimeoutError: run exceeded {timeout} s\n{err.stderr or ''}"
    seconds = time.perf_counter() - t0
    params_file.unlink(missing_ok=True)
    error, metrics = "", {}
    if code == 0:
        try:
            metrics = runs.read_record(work)["metrics"]
        except runs.ResultsError as err:
            code, error = 1, f"notebook finished but its results are unusable: {err}"
    else:
        error = _last_error(stderr, spec.notebook)
    status = {"status": "complete" if code == 0 else "failed", "returncode": code, "seconds": round(seconds, 2),
              "error": error, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if code != 0:
        (work / "papermill.stderr.txt").write_text(stderr)
    final = _finalize(spec, work, status)
    return Outcome(spec, status["status"], final, seconds, error, metrics)


def run_batch(specs: Sequence[RunSpec], *, jobs: int = 1, force: bool = False, timeout: float | None = None,
              progress: bool = True) -> list[Outcome]:
    """Execute specs ``jobs`` at a time; completed runs are skipped unless ``force``."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from tqdm.auto import tqdm

    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    outcomes: list[Outcome] = []
    todo = []
    for spec in specs:
        if not force and is_complete(spec.run_dir):
            outcomes.append(Outcome(spec, "skipped", spec.run_dir, metrics=runs.read_record(spec.run_dir)["metrics"]))
        else:
            todo.append(spec)
    bar = tqdm(total=len(specs), initial=len(outcomes), desc="runs", unit="run", disable=not progress)
    counts = {"done": 0, "failed": 0, "skipped": len(outcomes)}

    def _update(outcome: Outcome) -> None:
        counts["done" if outcome.status == "complete" else "failed"] += 1
        bar.set_postfix(done=counts["done"], failed=counts["failed"], skipped=counts["skipped"],
                        remaining=len(specs) - sum(counts.values()), refresh=False)
        bar.update(1)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(execute, s, threads=threads, timeout=timeout, fresh=force) for s in todo]
        for future in as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            _update(outcome)
    bar.close()
    order = {id(s): i for i, s in enumerate(specs)}
    return sorted(outcomes, key=lambda o: order[id(o.spec)])


def summary_rows(outcomes: Iterable[Outcome], max_metrics: int = 4) -> list[dict[str, Any]]:
    rows = []
    for o in outcomes:
        row: dict[str, Any] = {"run": o.spec.run_id, "status": o.status,
                               "seconds": round(o.seconds, 1) if o.seconds else ""}
        row.update({k: round(v, 4) for k, v in list(o.metrics.items())[:max_metrics]})
        if o.error:
            row["error"] = o.error[:120]
        rows.append(row)
    return rows
