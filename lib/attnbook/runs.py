"""Run records: where a notebook run writes its results, and the schema-checked ``metrics.json``.

A *run* is one notebook executed with one parameter set. It lives in
``results/<notebook>/<run-id>/`` with the executed notebook, ``params.json``, ``metrics.json`` and
``figures/``. ``metrics.json`` records the recipe beside the numbers (parameters, code version, git
commit, package versions, seed, device, threads, wall time) and is validated on write and on read. A
run not made by ``attnbook run`` writes to ``results/<notebook>/interactive/``; a finished run is never
rewritten in place.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
import math
import numbers
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from attnbook.files import atomic_write_json, atomic_write_text  # noqa: F401 (re-exported)
from attnbook.provenance import (  # noqa: F401 (re-exported)
    PROVENANCE_PACKAGES,
    code_version,
    git_state,
    package_versions,
)

SCHEMA_VERSION = 1
METRICS_FILE = "metrics.json"
PARAMS_FILE = "params.json"
STATUS_FILE = "status.json"
NOTEBOOK_FILE = "notebook.ipynb"
FIGURES_DIR = "figures"
INTERACTIVE_DIR = "interactive"  # results/<notebook>/interactive/: runs not made by `attnbook run`
CLAIM_STATUSES = ("reproduced", "not reproduced", "inconclusive", "not run")
THREADS_ENV = "ATTNBOOK_THREADS"  # CPU threads of a run, set by the runner (independent of --jobs)
DEFAULT_THREADS = 2  # the reference machine of the cpu profile; another count joins the run id


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


def _schema() -> dict:
    return json.loads(resources.files("attnbook.schemas").joinpath("metrics.schema.json").read_text())


def validate_record(record: Mapping[str, Any], source: str = "metrics record") -> None:
    """Raise :class:`ResultsError` naming the first schema violation."""
    import jsonschema  # two seconds to import: only when a record is checked

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


def managed_threads() -> int | None:
    """The CPU thread count the runner fixed for this run (``$ATTNBOOK_THREADS``), ``None`` if unset."""
    value = os.environ.get(THREADS_ENV, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def identity(params: Mapping[str, Any], threads: int | None) -> dict[str, Any]:
    """The parameters a run id is made of: ``params`` plus ``threads`` when it is set and not
    :data:`DEFAULT_THREADS` (another thread count can change the numbers, so it is another run)."""
    extra = {"threads": threads} if threads is not None and threads != DEFAULT_THREADS else {}
    return {**params, **extra}


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
    expect: str | None = None  # "increase" | "decrease" | "equivalent" (attnbook.ledger)
    test: str | None = None  # the test behind the verdict
    n: int | None = None  # units of replication (seeds, paired images …)
    effect: float | None = None  # ours − reference, in ``unit``
    ci: tuple[float, float] | None = None  # 95 % confidence interval of the effect
    p_value: float | None = None  # two-sided test of no difference
    p_equivalence: float | None = None  # TOST, for an "equivalent" claim
    margin: float | None = None  # equivalence margin of a "no difference" claim
    unit: str = ""

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
    texts: dict[str, str] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    started_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    _t0: float = field(default_factory=time.perf_counter, repr=False)
    _written: bool = field(default=False, repr=False)

    @property
    def checkpoint_dir(self) -> Path:
        """Where this run's training checkpoints live (see :func:`checkpoint_dir`)."""
        return checkpoint_dir(self.run_dir.parent, run_id(self.params))

    @property
    def checkpoint_context(self) -> dict[str, Any]:
        """What this run's checkpoints must match besides the training config and model: pass it to
        :func:`attnbook.train.fit` as ``context=`` — the notebook, the resolved chapter config and the
        code version, so a checkpoint of another configuration or code is refused, not resumed."""
        return {"notebook": self.notebook, "config": self.config, "code_version": code_version()}

    def log(self, name: str, value: float) -> float:
        """Record one finite metric (``NaN``/``inf`` are refused: they are bugs, not results)."""
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"metric {name!r} is {value}; record only finite numbers (fix the computation)")
        self.metrics[name] = value
        return value

    def log_many(self, values: Mapping[str, float], prefix: str = "") -> None:
        """:meth:`log` every value, its name prefixed with ``prefix``."""
        for name, value in values.items():
            self.log(f"{prefix}{name}", value)

    # --- the one route from a computed value to the page: record it and glue it under one name ---------

    def number(self, name: str, value: float) -> float:
        """Record a finite number in ``metrics.json`` *and* glue it for the text (``{glue:text}`name```).

        The single route for every number the prose quotes: one name, one value, written once (a
        second call with the same name is an error, so no number is computed twice under two names).
        """
        self._claim_name(name)
        logged = self.log(name, value)
        whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        _glue(name, int(value) if whole else logged)  # counts read "800", not "800.0"
        return logged

    def numbers(self, values: Mapping[str, float], prefix: str = "") -> None:
        """:meth:`number` for each ``prefix + name``."""
        for name, value in values.items():
            self.number(f"{prefix}{name}", value)

    def text(self, name: str, value: Any) -> str:
        """Record a short text (a label, a list of names) in ``metrics.json`` and glue it for the prose."""
        self._claim_name(name)
        self.texts[name] = str(value)
        _glue(name, self.texts[name])
        return self.texts[name]

    def _claim_name(self, name: str) -> None:
        if name in self.metrics or name in self.texts:
            raise ValueError(f"{name!r} is recorded twice in this run; give each number one name and one route")

    def table(self, name: str, rows: Any) -> list[dict[str, Any]]:
        """Record a table (list of dicts or a pandas DataFrame)."""
        if hasattr(rows, "to_dict"):
            rows = rows.to_dict(orient="records")
        rows = [_plain(dict(r)) for r in rows]
        self.tables[name] = rows
        return rows

    def claim(self, **kwargs: Any) -> Claim:
        """Add a row to the claims ledger (keywords: the fields of :class:`Claim`); returns it."""
        item = Claim(**kwargs)
        self.claims.append(item)
        return item

    def claims_frame(self) -> Any:
        """The claims recorded so far as a pandas DataFrame (the chapter's ledger table)."""
        import pandas as pd

        return pd.DataFrame([asdict(c) for c in self.claims]).drop(columns=["id"], errors="ignore")

    def claims_view(self) -> Any:
        """The claims recorded so far as the chapter page shows them (:func:`attnbook.ledger.chapter_html`):
        claim, paper, ours with effect and CI, test, n and a status badge — an ``IPython.display.HTML``."""
        from IPython.display import HTML

        from attnbook.ledger import chapter_html

        return HTML(chapter_html([asdict(c) for c in self.claims]))

    def save_figure(self, fig: Any, name: str, dpi: int = 110) -> Path:
        """Save a matplotlib figure as ``figures/<name>.png`` in the run folder."""
        path = self.run_dir / FIGURES_DIR / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        if path.name not in self.figures:
            self.figures.append(path.name)
        return path

    def record(self) -> dict[str, Any]:
        """The run record so far, as ``metrics.json`` holds it: provenance, metrics, tables, figures, claims."""
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
            "code_version": code_version(),
            "packages": package_versions(),
            "device": device_name(self.device),
            "threads": _torch_threads(),
            "started_at": self.started_at,
            "wall_time_s": round(time.perf_counter() - self._t0, 3),
            "metrics": self.metrics,
            "texts": self.texts,
            "tables": self.tables,
            "figures": self.figures,
            "claims": [asdict(c) for c in self.claims],
        })

    def finish(self) -> Path:
        """Validate and write ``metrics.json``; returns its path. A ``metrics.json`` this recorder did not
        write (another run's) is never overwritten: :class:`ResultsError`."""
        record = self.record()
        validate_record(record, f"{self.notebook} run record")
        path = self.run_dir / METRICS_FILE
        if path.exists() and not self._written:
            raise ResultsError(_finished_here(self.run_dir))
        atomic_write_json(path, record)
        self._written = True
        return path


def _finished_here(run_dir: Path) -> str:
    return (f"{run_dir} already holds a finished run ({METRICS_FILE}), which is never rewritten in place; "
            "leave run_dir empty (a run of your own gets its own folder) or rerun it with `attnbook run … --force`")


def _torch_threads() -> int | None:
    """torch's intra-op CPU threads in this process (``None`` without torch)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return torch.get_num_threads()


def _glue(name: str, value: Any) -> None:
    """Glue for myst-nb when running inside a kernel (papermill, Jupyter); a no-op elsewhere (tests)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with every kernel
        return
    if get_ipython() is None:
        return
    from myst_nb import glue

    glue(name, value, display=False)


def checkpoint_dir(notebook_results: Path, rid: str) -> Path:
    """Training checkpoints of run ``rid``: beside the run folders (``results/<notebook>/.checkpoints/<rid>``),
    so an interrupted run resumes when executed again; ``attnbook run --force`` deletes them."""
    return notebook_results / ".checkpoints" / rid


def default_run_dir(notebook: str, params: Mapping[str, Any]) -> Path:
    """``results/<notebook>/<run-id>/``: where ``attnbook run`` puts a run with these parameters."""
    return results_root() / notebook / run_id(params)


def interactive_run_dir(notebook: str, params: Mapping[str, Any]) -> Path:
    """A run not made by ``attnbook run`` (Jupyter, plain papermill): its own folder,
    ``results/<notebook>/interactive/<run-id>`` (``…~2``, ``~3`` … when that one holds a finished run),
    never a batch run's folder."""
    base = results_root() / notebook / INTERACTIVE_DIR
    rid = run_id(params)
    for n in itertools.count(1):
        candidate = base / (rid if n == 1 else f"{rid}~{n}")
        if not (candidate / METRICS_FILE).exists():
            return candidate
    raise AssertionError("unreachable")  # pragma: no cover


def start(notebook: str, *, run_dir: str | os.PathLike | None, profile: str, seed: int,
          params: Mapping[str, Any], config: Any = None, device: str = "cpu") -> RunRecorder:
    """Begin recording a run. ``run_dir`` comes from ``attnbook run``; empty means a run of your own
    (Jupyter, plain papermill), which gets its own folder (:func:`interactive_run_dir`). A folder that
    already holds a finished run is refused (:class:`ResultsError`).

    Values are taken from the resolved ``config`` where it has the field (so ``"03"`` is recorded, and
    identified, as 3); ``None`` values mean "profile default" and are left out; the run's fixed thread
    count joins the parameters when it is not the default (:func:`identity`)."""
    given = {k: v for k, v in params.items() if v is not None}
    if config is not None:
        given = {k: getattr(config, k, v) for k, v in given.items()}
        seed = getattr(config, "seed", seed)
    threads = managed_threads()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    all_params = _plain(identity({"profile": profile, "seed": seed, **given}, threads))
    target = Path(run_dir) if run_dir else interactive_run_dir(notebook, all_params)
    if (target / METRICS_FILE).exists():
        raise ResultsError(_finished_here(target))
    target.mkdir(parents=True, exist_ok=True)
    return RunRecorder(notebook=notebook, run_dir=target, params=all_params, profile=profile, seed=seed,
                       device=device, config=_plain(config) if config is not None else {})


def iter_runs(notebook: str, root: Path | None = None) -> Iterator[Path]:
    """Run folders of a notebook (complete or not), sorted by name."""
    base = (root or results_root()) / notebook
    if base.is_dir():
        yield from sorted(p for p in base.iterdir()
                          if p.is_dir() and not p.name.startswith(".") and p.name != INTERACTIVE_DIR)
