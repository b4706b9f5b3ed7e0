"""The ledger's rules: rows from evidence, the rule check every smoke run's rows must pass, and the page."""
from pathlib import Path

import numpy as np

from attnbook import ledger, runs, stats


def _recorder(tmp_path: Path, notebook: str = "04_bla") -> runs.RunRecorder:
    return runs.start(notebook, run_dir=tmp_path / notebook, profile="smoke", seed=0, params={})


def test_equivalence_row_needs_tost(tmp_path):
    rec = _recorder(tmp_path)
    rng = np.random.default_rng(0)
    a = rng.normal(0.9, 0.01, 12)
    close = stats.paired(a, a + rng.normal(0, 0.001, 12), margin=0.01)
    noisy = stats.paired(a[:3], a[:3] + rng.normal(0, 0.05, 3), margin=0.01)
    row_ok = ledger.record_claim(rec, id="eq", paper="BLA", claim="no cost", paper_value=0.99, ours=0.9,
                                 setting="s", expect="equivalent", evidence=close)
    row_weak = ledger.record_claim(rec, id="weak", paper="BLA", claim="no cost", paper_value=0.99, ours=0.9,
                                   setting="s", expect="equivalent", evidence=noisy)
    assert row_ok.status == "reproduced" and row_ok.p_equivalence < 0.05 and row_ok.margin == 0.01
    assert row_weak.status != "reproduced" and "n = 3" in row_weak.note
    record = runs.read_record(rec.finish().parent)
    assert all(ledger.check_row(row) is None for row in record["claims"])


def test_check_row_flags_reproduced_on_non_significance():
    row = {"id": "x", "status": "reproduced", "expect": "equivalent", "test": "Wilcoxon", "p_value": 0.4,
           "p_equivalence": None}
    assert "TOST" in ledger.check_row(row)
    assert "without a named test" in ledger.check_row({"id": "y", "status": "reproduced"})
    assert ledger.check_row({"id": "z", "status": "inconclusive"}) is None


def test_page_has_rules_summary_badges_and_settings_legend(tmp_path):
    rec = _recorder(tmp_path)
    ev = stats.paired([0.5, 0.6, 0.55, 0.52, 0.58, 0.61], [0.6, 0.7, 0.66, 0.61, 0.69, 0.7])
    ledger.record_claim(rec, id="up", paper="BLA", claim="accuracy | hard", paper_value=0.99, ours=0.66,
                        setting="synthetic A", expect="increase", evidence=ev)
    ledger.record_not_run(rec, id="u", paper="BLA", claim="user study", paper_value="71%", why="human study")
    record = runs.read_record(rec.finish().parent)
    page = ledger.ledger_markdown([record], "smoke", missing=["05_brnpa"], titles={"04_bla": "4. BLA"})
    assert "How to read a status" in page and "## 4. BLA" in page
    assert "accuracy \\| hard" in page and "paired t" in page and "6 seeds" not in page
    assert ledger.badge("not run") in page and "**S1** synthetic A" in page
    assert "| BLA | 1 | 0 | 0 | 1 |" in page and "`05_brnpa`: no complete `smoke` run" in page


def test_chapter_html_shows_the_ledger_page_columns_with_badges_and_escaped_words():
    from attnbook.ledger import chapter_html

    rows = [{"claim": "A <b> beats | B", "paper_value": 0.5, "ours": "0.7 → 0.9", "status": "reproduced",
             "test": "paired t", "p_value": 0.01, "n": 10, "unit": "seeds", "effect": 0.2, "ci": (0.1, 0.3)},
            {"claim": "C", "paper_value": "1.0", "ours": None, "status": "not run", "note": "needs CUB"}]
    html = chapter_html(rows)
    assert html.count("<tr>") == 3 and "<th>status</th>" in html
    assert "A &lt;b&gt; beats | B" in html  # the claim's words escaped, the markdown escape of | undone
    assert "Δ +0.2 [+0.1, +0.3]" in html and "paired t<br>p = 0.01" in html and "10 seeds" in html
    assert 'class="claim-status claim-reproduced"' in html and "<small>needs CUB</small>" in html
