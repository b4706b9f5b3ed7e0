"""One route for numbers: every value a chapter's prose quotes goes through ``RunRecorder.number``/``text``.

Fast and static (no notebook runs): notebooks glue nothing themselves, and no literal name is recorded
twice. ``test_notebooks.py`` then checks, on each smoke run, that every ``{glue:text}`` key the prose
references was recorded by that run.
"""
import re

import nbformat
import pytest

from attnbook import runs
from attnbook.chapters import notebook_names

GLUE_ROLE = re.compile(r"\{glue:text\}`([^`]+)`")
RECORDED = re.compile(r"recorder\.(?:number|text)\(\s*f?[\"']([^\"']+)[\"']")


def glue_references(name: str) -> set[str]:
    """Keys the notebook's markdown quotes with ``{glue:text}`` (format spec and ``path::`` stripped)."""
    nb = nbformat.read(runs.repo_root() / "nbs" / f"{name}.ipynb", as_version=4)
    keys = set()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for ref in GLUE_ROLE.findall(cell.source):
                keys.add(ref.split("::", 1)[-1].split(":", 1)[0])  # path::key:format → key
    return keys


@pytest.mark.parametrize("name", notebook_names())
def test_notebooks_glue_only_through_the_recorder(name: str) -> None:
    nb = nbformat.read(runs.repo_root() / "nbs" / f"{name}.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "myst_nb" not in code and not re.search(r"(?<![\w.])glue\(", code), (
        f"{name} glues directly; record quoted numbers with recorder.number / recorder.text")
    literal = RECORDED.findall(code)
    repeated = sorted({k for k in literal if literal.count(k) > 1 and "{" not in k})
    assert not repeated, f"{name} records {repeated} more than once"


def test_glue_references_parse_format_specs() -> None:
    assert GLUE_ROLE.findall("a {glue:text}`accuracy/train:.1%` b {glue:text}`explain/best_pointer`") == [
        "accuracy/train:.1%", "explain/best_pointer"]


def glue_markup_errors(source: str) -> list[str]:
    """Glue roles a Markdown parser would not see: backticks paired left to right, as CommonMark pairs single-
    backtick code spans; a ``{glue…}`` must sit right before a span's opening backtick and never inside a span."""
    ticks = [m.start() for m in re.finditer("`", source)]
    spans = list(zip(ticks[::2], ticks[1::2]))
    openings = {start for start, _ in spans}
    errors = [source[a:b + 1] for a, b in spans if "{glue" in source[a:b + 1]]
    for m in re.finditer(r"\{glue(?::text)?\}", source):
        if m.end() not in openings:
            errors.append(source[m.start():m.end() + 40])
    if len(ticks) % 2:
        errors.append(source[ticks[-1]:ticks[-1] + 40])
    return errors


def test_glue_markup_errors_finds_a_stray_backtick() -> None:
    assert not glue_markup_errors("a {glue:text}`x:.2f`× and {glue:text}`y` `code`")
    assert glue_markup_errors("a ({glue:text}`x:.2f`×`),\n({glue:text}`y:.2f`×`)")
    assert glue_markup_errors("a {glue:text} `x`") and glue_markup_errors("an `open span")


@pytest.mark.parametrize("name", notebook_names())
def test_glue_roles_are_well_formed(name: str) -> None:
    """The prose's glue roles reach the page as numbers, not raw markup (the browser test finds that only after
    a full book build)."""
    nb = nbformat.read(runs.repo_root() / "nbs" / f"{name}.ipynb", as_version=4)
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "markdown"):
        errors = glue_markup_errors(cell.source)
        assert not errors, f"{name}, markdown cell {i}: glue markup a parser would not read: {errors}"
