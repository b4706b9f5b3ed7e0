"""Run records: where a notebook run writes its results, and the schema-checked ``metrics.json``.

A *run* is one notebook executed with one parameter set. It lives in
``results/<notebook>/<run-id>/`` with the executed notebook, ``params.json``, ``metrics.json`` and
``figures/``. ``metrics.json`` records the recipe beside the numbers (parameters, git commit,
package versions, seed, device, wall time) and is validated on write and on read.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import platform
import re
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Iterator, Mapping

import jsonschema

SCHEMA_VERSION = 1
METRICS_FILE = "metrics.json"
PARAMS_FILE = "params.json"
STATUS_FILE = "status.json"
NOTEBOOK_FILE = "notebook.ipynb"
FIGURES_DIR = "figures"
CLAIM_STATUSES = ("reproduced", "not reproduced", "inconclusive", "not run")
PROVENANCE_PACKAGES = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "papermill", "attnbook")


class ResultsError(RuntimeError):
    """A results file that is missing, unreadable or breaks the schema."""


def repo_root() -> Path:
    """The checkout this package runs from (``lib/attnbook`` → two levels up)."""
    return Path(__file__).resolve().parents[2]


def results_root() -> Path:
    """``$ATTNBOOK_RESULTS`` or ``<repo>/results``."""
    return Path(os.environ.get("ATTNBOOK_RESULTS", repo_root() / "results"))


def run_id(params: Mapping[str, Any]) -> str:
    """A stable, readable id for a parameter set: ``key=value`` pairs plus a short hash.

    Same parameters (in any order) → same id, so reruns are idempotent; ``None`` values (a notebook
    parameter left at "profile default") and ``run_dir`` do not count.
    """
    items = {k: v for k, v in sorted(params.items()) if k != "run_dir" and v is not None}
    canonical = json.dumps(items, sort_keys=True, default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:8]
    slug = "_".join(f"{k}={v}" for k, v in items.items())
    slug = re.sub(r"[^A-Za-z0-9=.,+-]+", "-", slug)[:80].strip("-_")
    return f"{slug}__{digest}" if slug else digest


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def _schema() -> dict:
    return json.loads(resources.files("attnbook.schemas").joinpath("metrics.schema.json").read_text())


def validate_record(record: Mapping[str, Any], source: str = "metrics record") -> None:
    """Raise :class:`ResultsError` naming the first schema violation."""
    try:
        jsonschema.validate(record, _schema(), format_checker=jsonschema.FormatChecker())
    except jsonschema.ValidationError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "<root>"
        raise ResultsError(f"{source}: invalid at {where}: {err.message}") from None


def read_record(run_dir: Path) -> dict[str, Any]:
    """Load and validate ``run_dir/metrics.json``."""
    path = Path(run_dir) / METRICS_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsError(f"{path} does not exist: the run did not finish (rerun it with `attnbook run`)") from None
    except json.JSONDecodeError as err:
        raise ResultsError(f"{path} is not valid JSON ({err}); delete the run folder and rerun it") from None
    validate_record(record, str(path))
    return record


def git_state(root: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout, or (None, None) outside git."""
    root = root or repo_root()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, check=True, timeout=10).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return None, None


def package_versions(names: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def device_name(device: str) -> str:
    """A readable device description, e.g. ``cpu (2 threads)`` or ``cuda:NVIDIA H100``."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return f"cpu ({torch.get_num_threads()} threads)"


def _plain(value: Any) -> Any:
    if is_dataclass(value):
        return _plain(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN: an undefined table cell is null
    return value


@dataclass
class Claim:
    """One row of the claims ledger: the paper's number beside ours, and a verdict computed from data."""

    id: str
    paper: str
    claim: str
    paper_value: str | float
    ours: str | float | None
    setting: str
    status: str
    note: str = ""

    def __post_init__(self) -> None:
        if self.status not in CLAIM_STATUSES:
            raise ValueError(f"claim {self.id!r}: status {self.status!r} is not one of {CLAIM_STATUSES}")
        if self.status == "not run" and not self.note:
            raise ValueError(f"claim {self.id!r}: a claim that was not run must say why (note=...)")


@dataclass
class RunRecorder:
    """Collects a run's metrics, tables, figures and claims and writes ``metrics.json`` atomically.

    Created by :func:`start` in a notebook's first cells; :meth:`finish` is its last call.
    """

    notebook: str
    run_dir: Path
    params: dict[str, Any]
    profile: str
    seed: int
    device: str = "cpu"
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    started_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    _t0: float = field(default_factory=time.perf_counter, repr=False)

    @property
    def checkpoint_dir(self) -> Path:
        """Where this run's training checkpoints live (see :func:`checkpoint_dir`)."""
        return checkpoint_dir(self.run_dir.parent, run_id(self.params))

    def log(self, name: str, value: float) -> float:
        """Record one finite metric (``NaN``/``inf`` are refused: they are bugs, not results)."""
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"metric {name!r} is {value}; record only finite numbers (fix the computation)")
        self.metrics[name] = value
        return value

    def log_many(self, values: Mapping[str, float], prefix: str = "") -> None:
        for name, value in values.items():
            self.log(f"{prefix}{name}", value)

    def table(self, name: str, rows: Any) -> list[dict[str, Any]]:
        """Record a table (list of dicts or a pandas DataFrame)."""
        if hasattr(rows, "to_dict"):
            rows = rows.to_dict(orient="records")
        rows = [_plain(dict(r)) for r in rows]
        self.tables[name] = rows
        return rows

    def claim(self, **kwargs: Any) -> Claim:
        item = Claim(**kwargs)
        self.claims.append(item)
        return item

    def claims_frame(self) -> Any:
        """The claims recorded so far as a pandas DataFrame (the chapter's ledger table)."""
        import pandas as pd

        return pd.DataFrame([asdict(c) for c in self.claims]).drop(columns=["id"], errors="ignore")

    def save_figure(self, fig: Any, name: str, dpi: int = 110) -> Path:
        """Save a matplotlib figure as ``figures/<name>.png`` in the run folder."""
        path = self.run_dir / FIGURES_DIR / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        if path.name not in self.figures:
            self.figures.append(path.name)
        return path

    def record(self) -> dict[str, Any]:
        commit, dirty = git_state()
        return _plain({
            "schema_version": SCHEMA_VERSION,
            "notebook": self.notebook,
            "run_id": run_id(self.params),
            "profile": self.profile,
            "seed": self.seed,
            "params": self.params,
            "config": self.config,
            "git_commit": commit,
            "git_dirty": dirty,
            "packages": package_versions(),
            "device": device_name(self.device),
            "started_at": self.started_at,
            "wall_time_s": round(time.perf_counter() - self._t0, 3),
            "metrics": self.metrics,
            "tables": self.tables,
            "figures": self.figures,
            "claims": [asdict(c) for c in self.claims],
        })

    def finish(self) -> Path:
        """Validate and write ``metrics.json``; returns its path."""
        record = self.record()
        validate_record(record, f"{self.notebook} run record")
        path = self.run_dir / METRICS_FILE
        atomic_write_json(path, record)
        return path


def checkpoint_dir(notebook_results: Path, rid: str) -> Path:
    """Training checkpoints of run ``rid``: beside the run folders (``results/<notebook>/.checkpoints/<rid>``),
    so an interrupted run resumes when executed again; ``attnbook run --force`` deletes them."""
    return notebook_results / ".checkpoints" / rid


def default_run_dir(notebook: str, params: Mapping[str, Any]) -> Path:
    return results_root() / notebook / run_id(params)


def start(notebook: str, *, run_dir: str | os.PathLike | None, profile: str, seed: int,
          params: Mapping[str, Any], config: Any = None, device: str = "cpu") -> RunRecorder:
    """Begin recording a run. ``run_dir`` comes from ``attnbook run``; empty means an interactive run,
    which writes to ``results/<notebook>/<run-id>/`` like a batch run with the same parameters."""
    all_params = {"profile": profile, "seed": seed, **{k: v for k, v in params.items() if v is not None}}
    target = Path(run_dir) if run_dir else default_run_dir(notebook, all_params)
    target.mkdir(parents=True, exist_ok=True)
    return RunRecorder(notebook=notebook, run_dir=target, params=_plain(all_params), profile=profile, seed=seed,
                       device=device, config=_plain(config) if config is not None else {})


def iter_runs(notebook: str, root: Path | None = None) -> Iterator[Path]:
    """Run folders of a notebook (complete or not), sorted by name."""
    base = (root or results_root()) / notebook
    if base.is_dir():
        yield from sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
