"""Tables of runs from ``results/``: one row per run, and aggregates over seeds with statistics."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from attnbook import runs
from attnbook.provenance import code_version

UNKNOWN = "unknown"  # runs recorded before code versions were (or outside git, for the commit)


def runs_frame(notebook: str, root: Path | None = None, skipped: list[str] | None = None) -> pd.DataFrame:
    """One row per complete run of ``notebook``: run id, code version (``code``), git ``commit``,
    parameters (``p.<name>``) and metrics.

    Incomplete or invalid run folders are left out; their names are appended to ``skipped``.
    """
    rows = []
    for run_dir in runs.iter_runs(notebook, root):
        try:
            record = runs.read_record(run_dir)
        except runs.ResultsError:
            if skipped is not None:
                skipped.append(run_dir.name)
            continue
        row = {"run_id": record["run_id"], "profile": record["profile"], "seed": record["seed"],
               "code": record.get("code_version") or UNKNOWN, "commit": _commit(record),
               "wall_time_s": record["wall_time_s"]}
        row.update({f"p.{k}": v for k, v in record["params"].items() if k not in ("profile", "seed")})
        row.update(record["metrics"])
        rows.append(row)
    return pd.DataFrame(rows)


def _commit(record: dict) -> str:
    """The record's git commit, short, ``+dirty`` when the checkout had uncommitted changes."""
    commit = record.get("git_commit")
    if not commit:
        return UNKNOWN
    return commit[:10] + ("+dirty" if record.get("git_dirty") else "")


def code_versions(frame: pd.DataFrame) -> list[str]:
    """The distinct code versions of the runs in ``frame``, most runs first."""
    if frame.empty or "code" not in frame:
        return []
    return list(frame["code"].value_counts().index)


def mixed_versions_line(versions: Sequence[str], aggregated: bool) -> str:
    """One line saying that the runs come from several code versions (and which one is current)."""
    current = code_version()
    shown = ", ".join(f"{v} (current)" if v == current else v for v in versions)
    what = "aggregated separately per code version (column code)" if aggregated else "listed together"
    return (f"note: these runs come from {len(versions)} code versions: {shown}; {what} — "
            "`attnbook run` reruns the stale ones with the current code")


def aggregate(frame: pd.DataFrame, by: Sequence[str], metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean, standard error of the mean and count of each metric per group (e.g. per method over seeds).

    Runs of different code versions are never pooled: when ``frame`` holds several, ``code`` joins the
    grouping (the CLI says so in one line, :func:`mixed_versions_line`)."""
    if frame.empty:
        return frame
    by = list(by)
    if len(code_versions(frame)) > 1 and "code" not in by:
        by = ["code", *by]
    metrics = list(metrics) if metrics else [c for c in frame.columns if c not in set(by) | {"run_id", "seed"}
                                              and not c.startswith("p.") and c not in ("profile", "code", "commit")
                                              and pd.api.types.is_numeric_dtype(frame[c])]
    grouped = frame.groupby(list(by), dropna=False)[metrics]
    mean, sem, count = grouped.mean(), grouped.sem(ddof=1), grouped.count()
    out = pd.concat({"mean": mean, "sem": sem, "n": count}, axis=1).swaplevel(axis=1).sort_index(axis=1)
    return out


