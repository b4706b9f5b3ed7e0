"""Tables of runs from ``results/``: one row per run, and aggregates over seeds with statistics."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from attnbook import runs


def runs_frame(notebook: str, root: Path | None = None, skipped: list[str] | None = None) -> pd.DataFrame:
    """One row per complete run of ``notebook``: run id, parameters (``p.<name>``) and metrics.

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
               "wall_time_s": record["wall_time_s"]}
        row.update({f"p.{k}": v for k, v in record["params"].items() if k not in ("profile", "seed")})
        row.update(record["metrics"])
        rows.append(row)
    return pd.DataFrame(rows)


def aggregate(frame: pd.DataFrame, by: Sequence[str], metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean, standard error of the mean and count of each metric per group (e.g. per method over seeds)."""
    if frame.empty:
        return frame
    metrics = list(metrics) if metrics else [c for c in frame.columns if c not in set(by) | {"run_id", "seed"}
                                              and not c.startswith("p.") and c != "profile"
                                              and pd.api.types.is_numeric_dtype(frame[c])]
    grouped = frame.groupby(list(by), dropna=False)[metrics]
    mean, sem, count = grouped.mean(), grouped.sem(ddof=1), grouped.count()
    out = pd.concat({"mean": mean, "sem": sem, "n": count}, axis=1).swaplevel(axis=1).sort_index(axis=1)
    return out


