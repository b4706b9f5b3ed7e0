"""Every chapter notebook, executed by papermill with the ``smoke`` profile, writes a valid metrics file."""
import math

import nbformat
import pytest

from attnbook import ledger, runs
from attnbook.chapters import get_chapter, notebook_names
from test_glue_route import glue_references

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", notebook_names())
def test_notebook_declares_exactly_the_chapter_parameters(name):
    from attnbook.runner import notebook_parameters

    nb_path = runs.repo_root() / "nbs" / f"{name}.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "papermill needs exactly one cell tagged 'parameters'"
    assert set(notebook_parameters(nb_path)) == set(get_chapter(name).notebook_parameters)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"


@pytest.mark.parametrize("name", notebook_names())
def test_smoke_run_writes_finite_metrics_in_range(name, smoke_results):
    _, outcomes = smoke_results
    outcome = outcomes[name]
    assert outcome.status == "complete", f"{name} failed: {outcome.error} (see {outcome.run_dir})"
    record = runs.read_record(outcome.run_dir)
    assert record["profile"] == "smoke" and record["notebook"] == name
    expected = get_chapter(name).metrics
    missing = set(expected) - set(record["metrics"])
    assert not missing, f"metrics missing from {name}: {sorted(missing)}"
    for key, (low, high) in expected.items():
        value = record["metrics"][key]
        assert math.isfinite(value) and low <= value <= high, f"{key} = {value} outside [{low}, {high}]"
    assert record["claims"], "every chapter contributes rows to the claims ledger"
    broken = [why for row in record["claims"] if (why := ledger.check_row(row))]
    assert not broken, f"{name}: ledger rows break the verdict rules: {broken}"
    quoted = glue_references(name)
    unrecorded = quoted - set(record["metrics"]) - set(record.get("texts", {}))
    assert not unrecorded, f"{name}'s prose quotes {sorted(unrecorded)}, which the smoke run did not record"
    assert outcome.seconds <= 60, f"smoke run took {outcome.seconds:.0f} s (budget 60 s)"
