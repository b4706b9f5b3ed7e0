"""How tables look on the book's pages: whole cell texts, no column or row elision, "—" for a missing value.

A notebook's first code cell calls :func:`book_tables` once::

    from attnbook.viz.display import book_tables; book_tables()

The library's table-producing functions return plain DataFrames (also recorded in ``metrics.json``);
only their HTML rendering changes here: pandas' defaults cut cell texts at 50 characters ("…"), elide
columns and rows, and print ``NaN`` / ``None`` for rows a run did not fill (a claim *not run* has no
effect or p-value) — noise for a reader. Outside a kernel (tests, scripts) only the pandas options apply.
"""
from __future__ import annotations

from typing import Any

NA_REP = "—"  # what an undefined cell shows (the claims ledger page uses the same dash)
MAX_ROWS = 200  # longer tables are cut by pandas with a row count, as usual
OPTIONS = {
    "display.max_colwidth": None,  # never "…" inside a cell
    "display.max_columns": None,
    "display.max_rows": MAX_ROWS,
    "styler.format.na_rep": NA_REP,
}


def table_html(frame: Any) -> str:
    """A DataFrame as the book shows it: the pandas HTML table, whole texts, :data:`NA_REP` for NaN/None."""
    import pandas as pd

    with pd.option_context("display.max_colwidth", None):  # the notebook flavour would cut texts at 50
        return frame.to_html(na_rep=NA_REP, max_rows=MAX_ROWS, max_cols=None, notebook=True, border=0,
                             show_dimensions=len(frame) > MAX_ROWS)


def book_tables() -> None:
    """Set the pandas display options of :data:`OPTIONS` and, inside IPython, render every DataFrame
    through :func:`table_html`. Idempotent."""
    import pandas as pd

    for name, value in OPTIONS.items():
        pd.set_option(name, value)
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with every kernel
        return
    shell = get_ipython()
    if shell is None:
        return
    shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, table_html)
