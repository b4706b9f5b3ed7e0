"""From a comparison to a claims-ledger row, by the book's rules (one place, every chapter).

The rules (also printed at the top of the book's ledger page):

* A claim is one of "increase" (ours b > reference a), "decrease" (b < a) or "equivalent"
  (|b − a| < a margin the row states). :func:`attnbook.stats.decide` turns the evidence into a status.
* **No difference is shown only by an equivalence test** (TOST) with the margin in the row; a
  non-significant difference test makes a row *inconclusive* ("underpowered: n = …, would need ≈ …").
* **The test follows the design**: paired data get paired tests; for a claim about training the unit of
  replication is the seed (per-seed aggregates, :func:`attnbook.stats.seed_level`), never images pooled
  across seeds.
* Every row records its test, n and unit, the effect and its 95 % CI, the p-value(s) and the margin.
* A claim that was not run says why.
"""
from __future__ import annotations

from typing import Any

from attnbook import stats
from attnbook.runs import Claim, RunRecorder

ALPHA = 0.05


def record_claim(recorder: RunRecorder, *, id: str, paper: str, claim: str, paper_value: str | float,
                 ours: str | float | None, setting: str, expect: str, evidence: stats.Evidence | None,
                 note: str = "", alpha: float = ALPHA) -> Claim:
    """Decide ``expect`` ("increase" / "decrease" / "equivalent") on ``evidence`` and add the ledger row.

    ``ours`` is what the row shows beside the paper's number (same unit); the evidence's effect, CI, test,
    n, p-values and margin go into the row's own columns, and the verdict's reason into its note.
    """
    verdict = stats.decide(evidence, expect, alpha=alpha)
    fields: dict[str, Any] = {"expect": expect}
    if evidence is not None:
        fields.update(test=evidence.test, n=evidence.n, effect=evidence.effect, ci=evidence.ci,
                      p_value=evidence.p_value, p_equivalence=evidence.p_equivalence, margin=evidence.margin,
                      unit=evidence.unit)
    reason = verdict.reason if evidence is not None else "no measurement"
    return recorder.claim(id=id, paper=paper, claim=claim, paper_value=paper_value, ours=ours, setting=setting,
                          status=verdict.status, note="; ".join(filter(None, (note, reason))), **fields)


def record_not_run(recorder: RunRecorder, *, id: str, paper: str, claim: str, paper_value: str | float,
                   why: str, setting: str = "—") -> Claim:
    """A ledger row for a claim this run could not test, with the reason."""
    return recorder.claim(id=id, paper=paper, claim=claim, paper_value=paper_value, ours=None, setting=setting,
                          status="not run", note=why)


def check_row(row: dict[str, Any], alpha: float = ALPHA) -> str | None:
    """Why a ledger row breaks the rules (``None`` if it keeps them): a *reproduced* row needs a test whose
    p-value is below α — the TOST p for an equivalence claim, the difference p otherwise."""
    if row["status"] != "reproduced":
        return None
    if not row.get("test"):
        return f"{row['id']}: reproduced without a named test"
    p = row.get("p_equivalence") if row.get("expect") == "equivalent" else row.get("p_value")
    if p is None or not p < alpha:
        kind = "equivalence (TOST)" if row.get("expect") == "equivalent" else "difference"
        return f"{row['id']}: reproduced with {kind} p = {p} (needs < {alpha})"
    return None


# --- the book's ledger page --------------------------------------------------------------------------

RULES = f"""\
**How to read a status.** *reproduced*: the test named in the row supports the paper's claim at α = {ALPHA}
(for a claim of *no difference*: an equivalence test — TOST — shows the difference lies within the row's
margin). *not reproduced*: the test shows the opposite (a difference where the paper claims none, or a
change the other way). *inconclusive*: the data cannot decide — a non-significant test is never taken as
"no difference"; the note says how many units (seeds, paired images) a decision would need. *not run*:
the note says why (usually: the paper's dataset or a human study is not available here).

**Units.** The unit of replication of a training claim is the seed: such claims are tested over per-seed
values; paired data get paired tests. *ours* is in the paper's unit; *effect* is ours − reference with its
95 % confidence interval.
"""

_BADGE = '<span class="claim-status claim-{slug}">{status}</span>'
CSS = """\
.claim-status { display: inline-block; padding: 0 0.45em; border-radius: 0.6em; font-size: 0.85em;
  font-weight: 600; white-space: nowrap; }
.claim-reproduced { background: #d7f0dd; color: #1b5e20; }
.claim-not-reproduced { background: #f9d6d5; color: #8e1b16; }
.claim-inconclusive { background: #fff0c2; color: #6b4e00; }
.claim-not-run { background: #e6e6e6; color: #424242; }
.bd-article table { font-size: 0.9em; }
.bd-article td { vertical-align: top; }
/* the chapter pages' verdict box (under the title) and provenance footer (attnbook.book_pages) */
.admonition.attnbook-verdict, .admonition.attnbook-provenance { font-size: 0.95em; }
.admonition.attnbook-verdict .claim-status { font-size: 0.9em; }
.admonition.attnbook-provenance ul { margin-bottom: 0.4em; }
.admonition.attnbook-provenance li { overflow-wrap: anywhere; }
.claim-count { white-space: nowrap; margin-right: 0.5em; }
.attnbook-ledger { font-size: 0.85em; }
.attnbook-ledger td:first-child { min-width: 20em; }
.attnbook-ledger small { font-size: 0.85em; color: #5f6368; }
.attnbook-ledger td { border-bottom: 1px solid #e0e0e0; }
.bd-article code.literal { overflow-wrap: anywhere; }  /* long run ids and commands wrap on phones */
@media (max-width: 600px) { .bd-article h1 { font-size: 1.9rem; } .bd-article h2 { font-size: 1.5rem; } }
/* wide tables scroll inside the page instead of widening it (phones) */
.bd-article .cell_output .dataframe, .bd-article .cell_output table { display: block; overflow-x: auto;
  max-width: 100%; }
"""


def badge(status: str) -> str:
    """An inline coloured label for a status (styled by :data:`CSS`)."""
    return _BADGE.format(slug=status.replace(" ", "-"), status=status)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        value = f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _ours(row: dict[str, Any]) -> str:
    text = _cell(row.get("ours"))
    ci, effect = row.get("ci"), row.get("effect")
    if effect is not None:
        interval = ""
        if ci and all(v is not None for v in ci):
            interval = f" [{ci[0]:+.3g}, {ci[1]:+.3g}]"
        text += f"<br>Δ {effect:+.3g}{interval}"
    return text


def _test(row: dict[str, Any]) -> str:
    if not row.get("test"):
        return "—"
    parts = [str(row["test"])]
    if row.get("margin") is not None:
        parts.append(f"margin ±{row['margin']:.3g}")
    p = row.get("p_equivalence") if row.get("expect") == "equivalent" else row.get("p_value")
    if p is not None:
        parts.append(f"p = {p:.2g}")
    return "<br>".join(parts)


def _n(row: dict[str, Any]) -> str:
    return "—" if row.get("n") is None else f"{row['n']} {row.get('unit') or ''}".strip()


def ledger_markdown(records: list[dict[str, Any]], profile: str, missing: list[str] = (),
                    titles: dict[str, str] | None = None, citations: dict[str, str] | None = None) -> str:
    """The claims-ledger page: a per-paper summary with badges, the rules, then one table per chapter with
    columns *claim · paper · ours (effect, CI) · test · n · status* and the settings as a legend.
    ``citations`` (notebook → markdown) links each chapter's paper and its authors' code."""
    titles, citations = titles or {}, citations or {}
    lines = ["# Claims ledger", "",
             "Every published claim beside the number this book measured and a verdict computed by the chapter's "
             f"code, assembled from the `metrics.json` files of the `{profile}` book runs in `results/`; nothing "
             "here is typed by hand.", "", "## Summary", "", "| paper | " + " | ".join(
                 badge(s) for s in stats.STATUSES) + " |", "|---|" + "---:|" * len(stats.STATUSES)]
    counts: dict[str, dict[str, int]] = {}
    for record in records:
        for row in record["claims"]:
            by = counts.setdefault(row["paper"], dict.fromkeys(stats.STATUSES, 0))
            by[row["status"]] += 1
    lines += [f"| {paper} | " + " | ".join(str(by[s]) for s in stats.STATUSES) + " |" for paper, by in counts.items()]
    # the rules, folded under the summary (a click opens them; they print unfolded)
    lines += ["", "```{admonition} How to read a status, units and effects", ":class: note dropdown", "",
              RULES.replace("**How to read a status.** ", ""), "```"]
    for record in records:
        notebook = record["notebook"]
        settings: list[str] = []
        lines += ["", f"## {titles.get(notebook, notebook)}", ""]
        if citations.get(notebook):
            lines += [citations[notebook], ""]
        lines += [f"From [{notebook}](../nbs/{notebook}.ipynb), run `{record['run_id']}` "
                  f"(commit `{(record.get('git_commit') or 'unknown')[:10]}`).", "",
                  "| claim | paper | ours (effect, 95 % CI) | test | n | status |", "|---|---|---|---|---|---|"]
        for row in record["claims"]:
            if row["setting"] not in settings:
                settings.append(row["setting"])
            mark = f"S{settings.index(row['setting']) + 1}"
            note = f"<br><small>{_cell(row.get('note'))}</small>" if row.get("note") else ""
            lines.append(f"| {_cell(row['claim'])} <small>[{mark}]</small>{note} | {_cell(row['paper_value'])} | "
                         f"{_ours(row)} | {_test(row)} | {_n(row)} | {badge(row['status'])} |")
        lines += ["", "Settings: " + "; ".join(f"**S{i + 1}** {s}" for i, s in enumerate(settings)) + "."]
    for name in missing:
        lines += ["", f"- `{name}`: no complete `{profile}` run — its claims are missing from this page "
                      f"(run `attnbook run nbs/{name}.ipynb --profile {profile}`)."]
    return "\n".join(lines) + "\n"


def chapter_html(claims: list[dict[str, Any]]) -> str:
    """A chapter's own ledger as the page shows it under its last cell: the columns of the Claims ledger page
    (claim with the reason a claim was not run · paper · ours (effect, CI) · test · n · status badge) instead of
    every field of :class:`~attnbook.runs.Claim` (``claims_frame``), which squeezes into tall, unreadable rows."""
    from html import escape

    def text(value: str) -> str:  # the cells' own markup (<br>, badges) stays; the claim's words are escaped
        return escape(value.replace("\\|", "|"), quote=False).replace("&lt;br&gt;", "<br>")

    head = "".join(f"<th>{h}</th>" for h in ("claim", "paper", "ours (effect, 95 % CI)", "test", "n", "status"))
    body = []
    for row in claims:
        note = f"<br><small>{text(_cell(row.get('note')))}</small>" if row.get("note") else ""
        cells = [text(_cell(row["claim"])) + note, text(_cell(row["paper_value"])), text(_ours(row)),
                 text(_test(row)), text(_n(row)), badge(row["status"])]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (f'<table class="attnbook-ledger"><thead><tr>{head}</tr></thead><tbody>' + "".join(body)
            + "</tbody></table>")
