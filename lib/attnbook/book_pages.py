"""What the book adds around the executed notebooks when it stages them (:func:`attnbook.publish.stage`).

Per chapter, on the *staged copy* of the executed notebook (``results/`` and ``nbs/`` stay untouched):

* figures: each figure a chapter declares in a code cell's metadata (``"attnbook": {"figures": [{"name",
  "caption", "alt"}, …]}``, one entry per figure the cell shows, in order) becomes a numbered figure with
  its caption and alt text (:func:`split_figures`);
* noise out: the ``parameters`` cell and papermill's ``injected-parameters`` cell (a temporary
  ``run_dir``) get the ``remove-cell`` tag; progress bars on stderr and stray reprs of paths are dropped;
* a **verdict box** under the title: the run's claims counted by status, with the ledger's badges,
  the paper and its authors' code linked;
* a **provenance footer**: commit, code version, profile, seed, device, threads, wall time, package
  versions (all from ``metrics.json``) and the command that makes the run again.

Book pages: :func:`runs_markdown` (every run of every chapter in ``results/``) and :func:`download_copy`
(the notebook behind a page's download button, without outputs).
"""
from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from attnbook import runs
from attnbook.viz.display import NA_REP

REMOVE = "remove-cell"  # Jupyter Book drops such cells from the page
HIDDEN_TAGS = ("parameters", "injected-parameters")  # papermill's cells: a temporary run_dir, profile defaults
INJECTED = "attnbook-staged"  # cell metadata key marking a cell the book added (not in the executed notebook)
BAR = re.compile(r"^\s*[^\n|]*?\d{1,3}%\|.*\|")  # a tqdm line: "train:  50%|█████     | 1/2 [...]"
MISSING_CELL = re.compile(r"<td>(?:NaN|nan|None|&lt;NA&gt;|NaT)</td>")  # pandas' HTML for an undefined value
PATH_REPR = re.compile(r"^(Posix|Windows|Pure\w*)?Path\(['\"].*['\"]\)$", re.S)
FAILED_SUFFIX = ".failed"


# --- cleaning an executed notebook ---------------------------------------------------------------------

def _text(value: str | list[str]) -> str:
    return "".join(value) if isinstance(value, list) else value


def is_progress_output(output: Mapping[str, Any]) -> bool:
    """Whether an output is only progress-bar noise: a stderr stream whose every line is a tqdm bar."""
    if output.get("output_type") != "stream" or output.get("name") != "stderr":
        return False
    pieces = [p for p in re.split(r"[\r\n]", _text(output.get("text", ""))) if p.strip()]
    return all(BAR.match(p) for p in pieces)


def is_path_repr(output: Mapping[str, Any]) -> bool:
    """Whether an output is the bare repr of a path (``recorder.finish()`` as a cell's last line)."""
    if output.get("output_type") != "execute_result":
        return False
    data = output.get("data", {})
    return set(data) == {"text/plain"} and bool(PATH_REPR.match(_text(data["text/plain"]).strip()))


def dash_missing(output: dict[str, Any]) -> None:
    """In a pandas HTML table output, show an undefined cell (``NaN``, ``None``) as "—", in place. Tables of
    notebooks that call :func:`attnbook.viz.display.book_tables` already do; this covers the others."""
    data = output.get("data", {})
    html = data.get("text/html")
    if html is not None and 'class="dataframe' in _text(html):
        data["text/html"] = MISSING_CELL.sub(f"<td>{NA_REP}</td>", _text(html))


FIGURES_KEY = "attnbook"  # cell metadata: {"figures": [{"name": "fig-…", "caption": "…", "alt": "…"}, …]}
FIGURE_ROLE = "figure"
FIGURE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")


def is_figure_output(output: Mapping[str, Any]) -> bool:
    """Whether an output is a picture (a matplotlib figure shown by ``plt.show()``)."""
    return output.get("output_type") in ("display_data", "execute_result") and any(
        t in output.get("data", {}) for t in FIGURE_TYPES)


def figure_specs(cell: Mapping[str, Any]) -> list[dict[str, str]]:
    """The figures a code cell declares (see the module docstring); [] for none."""
    return list(cell.get("metadata", {}).get(FIGURES_KEY, {}).get("figures", []))


def _output_cell(outputs: list[dict[str, Any]], role: str, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    meta = {INJECTED: role, "tags": ["remove-input"], **(metadata or {})}
    # a source is needed (myst-nb skips blank cells); "remove-input" keeps it off the page
    return {"cell_type": "code", "metadata": meta, "source": "# the outputs of the cell above", "outputs": outputs,
            "execution_count": None}


def split_figures(nb: dict[str, Any], recipe: str = "") -> dict[str, Any]:
    """Give every declared figure its own cell holding only its picture, with myst-nb's figure options
    (``mystnb.figure``: caption and name → a numbered figure with a ``figcaption``; ``mystnb.image.alt``);
    the cell's other outputs (tables, text) stay around it in order, in output-only cells. myst-nb wraps
    *every* output of a cell that carries figure options in the figure, hence the split. ``recipe`` (the
    ``attnbook run`` command that made the run) ends every caption. In place."""
    cells: list[dict[str, Any]] = []
    for cell in nb["cells"]:
        specs = figure_specs(cell) if cell["cell_type"] == "code" else []
        if not specs:
            cells.append(cell)
            continue
        outputs, cell["outputs"] = cell.get("outputs", []), []
        cells.append(cell)
        figures = iter(specs)
        for output in outputs:
            spec = next(figures, None) if is_figure_output(output) else None
            if spec is None:
                if cells[-1] is not cell and FIGURE_ROLE == cells[-1]["metadata"][INJECTED]:
                    cells.append(_output_cell([], "outputs"))  # what follows a figure: its own cell
                cells[-1]["outputs"].append(output)
                continue
            caption = f"{spec['caption']} Made by `{recipe}`." if recipe else spec["caption"]
            figure = {"caption": caption, "name": spec["name"]}
            cells.append(_output_cell([output], FIGURE_ROLE, {"mystnb": {"figure": figure,
                                                                          "image": {"alt": spec["alt"]}}}))
    nb["cells"] = cells
    return nb


def clean_notebook(nb: dict[str, Any], recipe: str = "") -> dict[str, Any]:
    """Hide papermill's parameter cells, drop progress bars and path reprs, dash undefined table cells,
    give declared figures their captions and alt texts (:func:`split_figures`); in place, returns ``nb``."""
    for cell in nb["cells"]:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if any(t in tags for t in HIDDEN_TAGS) and REMOVE not in tags:
            tags.append(REMOVE)
        if cell["cell_type"] == "code":
            cell["outputs"] = [o for o in cell.get("outputs", []) if not (is_progress_output(o) or is_path_repr(o))]
            for output in cell["outputs"]:
                dash_missing(output)
    return split_figures(nb, recipe)


# --- what the book says about a run --------------------------------------------------------------------

def rerun_command(notebook: str, params: Mapping[str, Any]) -> str:
    """The ``attnbook run`` command line that makes a run with ``params`` again."""
    parts = [f"attnbook run nbs/{notebook}.ipynb --profile {params.get('profile', 'cpu')}"]
    if "threads" in params:
        parts.append(f"--threads {params['threads']}")
    for name, value in params.items():
        if name in ("profile", "threads", "run_dir") or value is None or (name == "seed" and value == 0):
            continue
        parts.append(f"-p {name}={value}")
    return " ".join(parts)


def claim_counts(claims: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many claims have each status, in the ledger's order."""
    counts = dict.fromkeys(runs.CLAIM_STATUSES, 0)
    for claim in claims:
        counts[claim["status"]] = counts.get(claim["status"], 0) + 1
    return counts


def counts_html(counts: Mapping[str, int]) -> str:
    """``[reproduced] 3 · [inconclusive] 1`` with the ledger's badges (statuses with no claim left out)."""
    from attnbook.ledger import badge  # (ledger imports scipy: not at import time)

    shown = [f'<span class="claim-count">{badge(status)}&nbsp;<b>{n}</b></span>' for status, n in counts.items() if n]
    return " &nbsp; ".join(shown) if shown else "no claims recorded"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min"


def _when(stamp: str | None) -> str:
    return (stamp or "—").replace("T", " ").replace("+00:00", " UTC")


def citation_markdown(chapter: Any) -> str:
    """``Paper: [title](url) · authors' code: [repo](url)`` for a chapter (empty without a paper link)."""
    parts = []
    if getattr(chapter, "paper_url", ""):
        parts.append(f"**Paper:** [{chapter.paper}]({chapter.paper_url})")
    if getattr(chapter, "code_url", ""):
        repo = re.sub(r"^https?://(www\.)?github\.com/", "", chapter.code_url).strip("/")
        parts.append(f"**authors' code:** [{repo}]({chapter.code_url})")
    return " · ".join(parts)


def verdict_markdown(chapter: Any, record: Mapping[str, Any] | None, status: Mapping[str, Any] | None,
                     profile: str, current_code: str | None = None) -> str:
    """The verdict box shown under a chapter's title (a MyST admonition of class ``attnbook-verdict``)."""
    lines = []
    failed = record is None or (status is not None and status.get("status") not in (None, "complete"))
    if failed:
        error = ((status or {}).get("error") or "the run did not finish").replace("`", "'")
        lines += ["```{admonition} This chapter's run failed", ":class: attnbook-verdict error", "",
                  f"The `{profile}` run stopped with: `{error[:300]}`. The page shows the notebook up to the "
                  "failing cell; its claims are missing from the [claims ledger](../book/claims.md).", "```"]
        return "\n".join(lines)
    counts = claim_counts(record.get("claims", []))
    total = sum(counts.values())
    papers = sorted({c["paper"] for c in record.get("claims", [])})
    about = f" about {', '.join(papers)}" if papers else ""
    lines += ["```{admonition} Verdict of this run", ":class: attnbook-verdict", "",
              f"**{total} claim{'s' * (total != 1)}**{about}: {counts_html(counts)}", ""]
    cite = citation_markdown(chapter)
    if cite:
        lines += [cite, ""]
    note = f"Profile **{record['profile']}**, seed {record['seed']}"
    if record["profile"] == "smoke":
        note += " — a seconds-long check that the code runs: its numbers are not evidence"
    note += "."
    if current_code and record.get("code_version") not in (None, current_code):
        note += f" Recorded by an earlier code version (`{record.get('code_version')}`)."
    lines += [note + " Every claim with its test, effect and n: the [claims ledger](../book/claims.md); how this "
              f"page was made: {{ref}}`provenance <{provenance_label(chapter.notebook)}>`.", "```"]
    return "\n".join(lines)


def provenance_label(notebook: str) -> str:
    """The MyST target of a chapter's provenance footer."""
    return f"attnbook-provenance-{notebook}"


def chapter_heading(chapter: Any) -> str:
    """``4. Bounded logit attention (Baumhauer et al. 2021)``: a chapter in the ledger's and runs page's headings."""
    heading = f"{int(chapter.notebook[:2])}. {chapter.title}"
    return heading if chapter.paper.startswith("—") else f"{heading} ({chapter.paper})"


def provenance_markdown(notebook: str, run_name: str, record: Mapping[str, Any] | None,
                        status: Mapping[str, Any] | None, params: Mapping[str, Any],
                        current_code: str | None = None) -> str:
    """The provenance footer of a chapter page (a MyST admonition of class ``attnbook-provenance``);
    ``params`` are the run's (``params.json``), used when the run left no ``metrics.json``."""
    rec = dict(record or {})
    params = rec.get("params") or params
    commit = rec.get("git_commit")
    commit_text = f"`{commit[:12]}`" + (" with uncommitted changes" if rec.get("git_dirty") else "") if commit \
        else "unknown (not run from a git checkout)"
    code = rec.get("code_version") or (status or {}).get("code_version")
    code_text = f"`{code}`" if code else "unknown"
    if code and current_code:
        code_text += " (the current code)" if code == current_code else f" (the code is now `{current_code}`)"
    packages = rec.get("packages") or {}
    state = (status or {}).get("status") or ("complete" if record else "unknown")
    items = [
        ("run", f"`results/{notebook}/{run_name}` — {state}"),
        ("parameters", ", ".join(f"{k} = {v}" for k, v in params.items()) or "—"),
        ("git commit", commit_text),
        ("code version", code_text),
        ("device", f"{rec.get('device', '—')}, {rec.get('threads', '—')} torch threads"),
        ("started", _when(rec.get("started_at"))),
        ("wall time", _duration(rec.get("wall_time_s", (status or {}).get("seconds")))),
        ("packages", " · ".join(f"{name} {version}" for name, version in packages.items()) or "—"),
    ]
    lines = [f"({provenance_label(notebook)})=", "````{admonition} Provenance of this page",
             ":class: attnbook-provenance", "",
             "This page is the notebook as papermill executed it; everything below comes from the run's "
             "`metrics.json`.", ""]
    lines += [f"- **{name}:** {value}" for name, value in items]
    lines += ["", "Make this run again (it lands in `results/`, then `attnbook book` rebuilds the page):", "",
              "```bash", rerun_command(notebook, params), "```", "````"]
    return "\n".join(lines)


def _markdown_cell(source: str, role: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {INJECTED: role}, "source": source}


def add_chapter_boxes(nb: dict[str, Any], verdict: str, footer: str) -> dict[str, Any]:
    """Put ``verdict`` right under the notebook's title (the first ``# `` heading, split from the text that
    follows it) and ``footer`` after the last cell; in place, returns ``nb``."""
    cells = nb["cells"]
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        source = _text(cell["source"])
        match = re.match(r"\s*(# [^\n]*)\n?(.*)", source, re.S)
        if not match:
            continue
        title, rest = match.groups()
        cell["source"] = title
        extra = [_markdown_cell(verdict, "verdict")]
        if rest.strip():
            extra.append({**copy.deepcopy(cell), "source": rest.lstrip("\n")})
            extra[-1].pop("id", None)
        cells[index + 1:index + 1] = extra
        break
    else:
        cells.insert(0, _markdown_cell(verdict, "verdict"))
    cells.append(_markdown_cell(footer, "provenance"))
    for k, cell in enumerate(cells):  # nbformat ≥ 4.5 wants a unique id on every cell
        if "id" in cell or nb.get("nbformat_minor", 0) >= 5:
            cell["id"] = cell.get("id") or f"attnbook-{k}"
    return nb


def download_copy(nb: dict[str, Any]) -> dict[str, Any]:
    """The notebook a reader downloads from a page: the cells as they ran (papermill's injected cell and
    the book's boxes removed), no outputs, no widget state — open it in Jupyter and run it."""
    out = copy.deepcopy(nb)
    out["cells"] = [c for c in out["cells"] if INJECTED not in c.get("metadata", {})
                    and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    for cell in out["cells"]:
        meta = cell.get("metadata", {})
        meta.pop("papermill", None)
        meta.pop("execution", None)
        if "tags" in meta:
            meta["tags"] = [t for t in meta["tags"] if t != REMOVE]
            if not meta["tags"]:
                del meta["tags"]
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    for key in ("widgets", "papermill"):
        out["metadata"].pop(key, None)
    return out


# --- the "All runs" page -------------------------------------------------------------------------------

def _run_dirs(notebook: str, results: Path) -> list[Path]:
    dirs = list(runs.iter_runs(notebook, results))
    interactive = results / notebook / runs.INTERACTIVE_DIR
    if interactive.is_dir():
        dirs += sorted(p for p in interactive.iterdir() if p.is_dir() and not p.name.startswith("."))
    return dirs


def _run_row(run_dir: Path, results: Path, shipped: Mapping[Path, str], current_code: str | None) -> str:
    from attnbook.runner_store import read_status

    status = read_status(run_dir) or {}
    try:
        record: dict[str, Any] | None = runs.read_record(run_dir)
    except runs.ResultsError:
        record = None
    if record is not None and status.get("status", "complete") == "complete":
        code = record.get("code_version")
        state = "complete" if not current_code or code == current_code else "stale"
    elif status.get("status") == "failed" or run_dir.name.endswith(FAILED_SUFFIX):
        state = "failed"
    else:
        state = "incomplete"
    if run_dir.parent.name == runs.INTERACTIVE_DIR:
        state += " (interactive)"
    params = (record or {}).get("params") or {}
    param_text = ", ".join(f"{k}={v}" for k, v in params.items()) or run_dir.name.removesuffix(FAILED_SUFFIX)
    claims = counts_html(claim_counts(record["claims"])) if record else "—"
    error = status.get("error") or ""
    if state == "failed" and error:
        state += f"<br><small>{_escape(error[:160])}</small>"
    code = (record or {}).get("code_version") or status.get("code_version") or "—"
    where = shipped.get(run_dir.resolve())
    rel = run_dir.relative_to(results).as_posix()
    page = f"[this book's page]({where})" if where else f"`results/{rel}/{runs.NOTEBOOK_FILE}`"
    wall = _duration((record or {}).get("wall_time_s", status.get("seconds")))
    started = _when((record or {}).get("started_at") or status.get("finished_at"))[:16]
    return f"| `{_escape(param_text)}` | {state} | {claims} | `{code}` | {started} | {wall} | {page} |"


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("`", "'")


def runs_markdown(notebooks: Iterable[str], results: Path, titles: Mapping[str, str],
                  shipped: Mapping[Path, str], current_code: str | None = None) -> str:
    """The *All runs* page: every run folder of every chapter under ``results`` — parameters, status,
    claims by status, code version, start, wall time, and where its executed notebook is.
    ``shipped`` maps a run folder to the book page that shows it."""
    lines = ["# All runs", "",
             "Every run of every chapter found in `results/` when this book was built: *complete*, *stale* "
             "(made by another code version — `attnbook run` reruns it), *failed* or unfinished. The chapter pages "
             "show one run each (default parameters, seed 0); `attnbook results <notebook>` tabulates and "
             "aggregates the others. Each run folder holds the executed notebook, `params.json` and "
             "`metrics.json`. To make a row again:", "",
             "```bash", "attnbook run nbs/<notebook>.ipynb --profile <profile> -p <name>=<value>", "```"]
    for notebook in notebooks:
        dirs = _run_dirs(notebook, results)
        lines += ["", f"## {titles.get(notebook, notebook)}", ""]
        if not dirs:
            lines.append(f"No runs of `{notebook}` in `results/`.")
            continue
        lines += [f"{len(dirs)} run{'s' * (len(dirs) != 1)} of `nbs/{notebook}.ipynb`.", "",
                  "| parameters | status | claims | code version | started | wall time | executed notebook |",
                  "|---|---|---|---|---|---:|---|"]
        lines += [_run_row(d, results, shipped, current_code) for d in dirs]
    return "\n".join(lines) + "\n"


def title_of(nb: Mapping[str, Any], default: str) -> str:
    """The text of the notebook's first ``# `` heading (the page title), else ``default``."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            match = re.match(r"\s*# ([^\n]+)", _text(cell["source"]))
            if match:
                return match.group(1).strip()
    return default
