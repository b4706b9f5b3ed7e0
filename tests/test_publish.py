"""Book publishing pieces that need no notebook execution: the claims ledger and widget assets."""
from pathlib import Path

import pytest

from attnbook import files, publish, runs


def _record(tmp_path: Path, notebook: str, claims: list[dict]) -> dict:
    rec = runs.start(notebook, run_dir=tmp_path / notebook, profile="smoke", seed=0, params={})
    for claim in claims:
        rec.claim(**claim)
    return runs.read_record(rec.finish().parent)


def test_chapter_run_dir_prefers_the_complete_run(tmp_path):
    base = tmp_path / "00_testbed" / runs.run_id(publish.book_run_params("cpu"))
    assert publish.chapter_run_dir("00_testbed", "cpu", tmp_path) is None
    failed = base.with_name(base.name + ".failed")
    failed.mkdir(parents=True)
    (failed / runs.NOTEBOOK_FILE).write_text("{}")
    assert publish.chapter_run_dir("00_testbed", "cpu", tmp_path) == failed
    base.mkdir()
    (base / runs.NOTEBOOK_FILE).write_text("{}")
    assert publish.chapter_run_dir("00_testbed", "cpu", tmp_path) == failed  # stale/unfinished: not current
    rec = runs.start("00_testbed", run_dir=base, profile="cpu", seed=0, params={})
    rec.finish()
    files.atomic_write_json(base / runs.STATUS_FILE, {"status": "complete"})
    assert publish.chapter_run_dir("00_testbed", "cpu", tmp_path) == base


def test_assets_come_from_the_verified_cache(tmp_path):
    cache = runs.repo_root() / ".cache" / "npm"
    if not all((cache / a.tarball).is_file() for a in publish.ASSETS):
        pytest.fail("JavaScript not cached: run `make setup` (python -m attnbook.publish vendor)")
    out = publish.vendor_assets(tmp_path, cache)
    assert {"require.js", "embed-amd.js", "assets-path.js"} <= {p.name for p in (out / "widgets").iterdir()}
    assert "__jupyter_widgets_assets_path__" in (out / "widgets" / "assets-path.js").read_text()
    assert (out / "mathjax" / "tex-chtml.js").is_file()
    assert len(list((out / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").iterdir())) > 10


def test_a_tampered_tarball_is_deleted(tmp_path):
    asset = publish.ASSETS[0]
    (tmp_path / asset.tarball).write_bytes(b"not the package")
    with pytest.raises(publish.PublishError, match="sha1 differs"):
        publish.fetch_npm_asset(asset, tmp_path)
    assert not (tmp_path / asset.tarball).exists()


def test_toc_lists_every_chapter():
    import yaml

    from attnbook.chapters import notebook_names

    toc = yaml.safe_load((runs.repo_root() / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert [f for f in files if f.startswith("nbs/")] == [f"nbs/{n}" for n in notebook_names()]
    assert "book/claims" in files


def test_intro_table_of_chapters_comes_from_the_registry(tmp_path):
    from attnbook.chapters import contents_markdown, get_chapter, notebook_names

    assert publish.CONTENTS_MARKER in (runs.repo_root() / "book" / "intro.md").read_text()
    table = contents_markdown()
    for name in notebook_names():
        chapter = get_chapter(name)
        assert chapter.summary, f"{name}: CHAPTER.summary (the intro's one-line claim) is empty"
        assert f"(../nbs/{name}.ipynb)" in table and chapter.summary in table


def test_a_planned_chapter_is_listed_without_a_link(monkeypatch):
    from attnbook import chapters

    monkeypatch.setattr(chapters, "PLANNED", (chapters.PlannedChapter("07_next", "Next", "Someone et al.", "a claim"),))
    table = chapters.contents_markdown()
    assert "| 7. Next | Someone et al. | a claim |" in table and "07_next.ipynb" not in table


# --- what staging does to a chapter page (attnbook.book_pages) ------------------------------------------

def _nb(*cells: dict) -> dict:
    return {"cells": list(cells), "metadata": {"widgets": {"state": {}}, "papermill": {}}, "nbformat": 4,
            "nbformat_minor": 5}


def _code(source: str, outputs: list | None = None, tags: list | None = None) -> dict:
    return {"cell_type": "code", "metadata": {"tags": tags or []}, "source": source, "outputs": outputs or [],
            "execution_count": 1}


def _md(source: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": source}


def _stderr(text: str) -> dict:
    return {"output_type": "stream", "name": "stderr", "text": text}


def test_clean_notebook_hides_parameters_and_drops_noise():
    from attnbook import book_pages

    bar = "\rtrain:  50%|█████     | 1/2 [00:00<00:00,  1.24batch/s]\rtrain: 100%|██████████| 2/2 [00:01<00:00]\n"
    warning = "UserWarning: something worth reading\n"
    path = {"output_type": "execute_result", "data": {"text/plain": "PosixPath('/tmp/x/.run.partial-1')"}}
    table = {"output_type": "execute_result", "data": {
        "text/html": '<table class="dataframe"><tr><td>NaN</td><td>None</td><td>0.5</td></tr></table>',
        "text/plain": "x"}}
    nb = book_pages.clean_notebook(_nb(
        _code('profile = "cpu"', tags=["parameters"]), _code('run_dir = "/tmp/work"', tags=["injected-parameters"]),
        _code("fit()", [_stderr(bar), _stderr(warning)]), _code("recorder.finish()", [path]), _code("df", [table])))
    assert all(book_pages.REMOVE in c["metadata"]["tags"] for c in nb["cells"][:2])
    assert book_pages.REMOVE not in nb["cells"][2]["metadata"]["tags"]
    assert [o["text"] for o in nb["cells"][2]["outputs"]] == [warning]
    assert nb["cells"][3]["outputs"] == []
    html = nb["cells"][4]["outputs"][0]["data"]["text/html"]
    assert "NaN" not in html and "None" not in html and html.count("<td>—</td>") == 2 and "0.5" in html


def test_chapter_boxes_go_under_the_title_and_at_the_end():
    from attnbook import book_pages

    nb = book_pages.add_chapter_boxes(_nb(_md("# 4. A title\n\nThe intro text."), _code("x = 1")), "VERDICT", "FOOT")
    sources = [c["source"] for c in nb["cells"]]
    assert sources[:3] == ["# 4. A title", "VERDICT", "The intro text."] and sources[-1] == "FOOT"
    assert len({c["id"] for c in nb["cells"]}) == len(nb["cells"])  # nbformat 4.5: unique ids
    copy = book_pages.download_copy(nb)
    assert [c["source"] for c in copy["cells"]] == ["# 4. A title", "The intro text.", "x = 1"]
    assert copy["cells"][2]["outputs"] == [] and copy["cells"][2]["execution_count"] is None
    assert "widgets" not in copy["metadata"] and "papermill" not in copy["metadata"]


def test_verdict_counts_claims_links_the_paper_and_says_a_failed_run_failed(tmp_path):
    import dataclasses

    from attnbook import book_pages
    from attnbook.chapters import get_chapter
    from attnbook.ledger import badge

    record = _record(tmp_path, "04_bla", [
        dict(id="a", paper="BLA", claim="c1", paper_value=1.0, ours=1.0, setting="s", status="reproduced"),
        dict(id="b", paper="BLA", claim="c2", paper_value=1.0, ours=None, setting="s", status="not run", note="why"),
        dict(id="c", paper="BLA", claim="c3", paper_value=1.0, ours=None, setting="s", status="not run", note="why")])
    chapter = dataclasses.replace(get_chapter("04_bla"), paper_url="https://arxiv.org/abs/0000.00000",
                                  code_url="https://github.com/someone/code")
    box = book_pages.verdict_markdown(chapter, record, {"status": "complete"}, "smoke", record["code_version"])
    assert "**3 claims** about BLA" in box and f"{badge('reproduced')}&nbsp;<b>1</b>" in box
    assert f"{badge('not run')}&nbsp;<b>2</b>" in box and badge("inconclusive") not in box
    assert "(https://arxiv.org/abs/0000.00000)" in box and "[someone/code](https://github.com/someone/code)" in box
    assert "not evidence" in box and "earlier code version" not in box
    stale = book_pages.verdict_markdown(chapter, record, None, "smoke", "another")
    assert "earlier code version" in stale
    failed = book_pages.verdict_markdown(chapter, None, {"status": "failed", "error": "ValueError: boom"}, "cpu")
    assert "failed" in failed and "ValueError: boom" in failed


def test_provenance_footer_and_rerun_command(tmp_path):
    from attnbook import book_pages

    record = _record(tmp_path, "04_bla", [])
    foot = book_pages.provenance_markdown("04_bla", record["run_id"], record, {"status": "complete"},
                                          record["params"], record["code_version"])
    for text in ("git commit", "code version", "(the current code)", "device", "torch threads", "wall time",
                 "packages", "torch ", "```bash\nattnbook run nbs/04_bla.ipynb --profile smoke\n```",
                 f"({book_pages.provenance_label('04_bla')})="):
        assert text in foot, text
    assert book_pages.rerun_command("00_testbed", {"profile": "cpu", "seed": 3, "threads": 4, "epochs": 2}) == \
        "attnbook run nbs/00_testbed.ipynb --profile cpu --threads 4 -p seed=3 -p epochs=2"


def test_all_runs_page_lists_complete_stale_failed_and_interactive_runs(tmp_path):
    from attnbook import book_pages

    results = tmp_path / "results"
    done = results / "04_bla" / "profile=smoke-seed=0__x"
    rec = runs.start("04_bla", run_dir=done, profile="smoke", seed=0, params={})
    rec.claim(id="a", paper="BLA", claim="c", paper_value=1, ours=1, setting="s", status="inconclusive")
    rec.finish()
    files.atomic_write_json(done / runs.STATUS_FILE, {"status": "complete"})
    failed = results / "04_bla" / "profile=cpu-seed=1__y.failed"
    failed.mkdir(parents=True)
    files.atomic_write_json(failed / runs.STATUS_FILE, {"status": "failed", "error": "RuntimeError: out of | memory"})
    mine = results / "04_bla" / runs.INTERACTIVE_DIR / "profile=cpu-seed=0__z"
    runs.start("04_bla", run_dir=mine, profile="cpu", seed=0, params={}).finish()
    page = book_pages.runs_markdown(["00_testbed", "04_bla"], results, {"04_bla": "4. BLA"},
                                    {done.resolve(): "../nbs/04_bla.ipynb"}, current_code="other")
    assert "## 4. BLA" in page and "3 runs of `nbs/04_bla.ipynb`" in page and "No runs of `00_testbed`" in page
    assert "[this book's page](../nbs/04_bla.ipynb)" in page and "stale" in page
    assert "failed<br><small>RuntimeError: out of \\| memory</small>" in page
    assert "(interactive)" in page and "`results/04_bla/interactive/profile=cpu-seed=0__z/notebook.ipynb`" in page


# --- the Sphinx extension and the site pruning --------------------------------------------------------------

def test_page_assets_drop_thebe_and_move_widget_state_behind_the_loader(tmp_path):
    import base64
    import io
    import json

    from PIL import Image
    from sphinx.builders.html._assets import _CascadingStyleSheet, _JavaScript

    from attnbook import book_sphinx

    png = io.BytesIO()
    Image.effect_noise((64, 64), 40).convert("RGB").save(png, format="PNG")
    state = json.dumps({"version_major": 2, "state": {"m1": {"model_name": "ImageModel", "state": {}, "buffers": [
        {"encoding": "base64", "path": ["value"], "data": base64.b64encode(png.getvalue()).decode()}]}}})
    thebe = 'const THEBE_JS_URL = "https://unpkg.com/thebe"; const thebe_selector = ".thebe"'
    scripts = [_JavaScript("_static/doctools.js"), _JavaScript(None, body=thebe), _JavaScript(None, body=thebe),
               _JavaScript("_static/sphinx-thebe.js", **{"async": "async"}),
               _JavaScript(None, body="var x = 1;"), _JavaScript(None, body="var x = 1;", priority=501),
               _JavaScript(None, type=book_sphinx.WIDGET_STATE, body=state),
               _JavaScript("_static/widgets/require.js"), _JavaScript("_static/widgets/embed-amd.js")]
    context = {"script_files": scripts, "css_files": [_CascadingStyleSheet("_static/sphinx-thebe.css"),
                                                      _CascadingStyleSheet("_static/attnbook.css")]}

    class App:
        builder = type("B", (), {"outdir": str(tmp_path)})()

        def add_js_file(self, filename, **kwargs):
            scripts.append(_JavaScript("_static/" + filename, **kwargs))

    book_sphinx.page_assets(App(), "nbs/00_testbed", "page.html", context, None)
    names = [str(js.filename) for js in scripts]
    assert names == ["_static/doctools.js", "None", "_static/widgets/loader.js"]
    assert scripts[-1].attributes == {"defer": "defer", "data-state": "00_testbed.widgets.js"}
    assert [str(c.filename) for c in context["css_files"]] == ["_static/attnbook.css"]
    written = (tmp_path / "nbs" / "00_testbed.widgets.js").read_text()
    assert written.startswith(f"window.{book_sphinx.STATE_GLOBAL} = ")
    inner = json.loads(json.loads(written.split(" = ", 1)[1].rstrip(";\n")))
    buffer = inner["state"]["m1"]["buffers"][0]["data"]
    assert base64.b64decode(buffer).startswith(b"\x89PNG")


def test_prune_site_drops_what_a_reader_never_needs(tmp_path):
    import json

    html, staging = tmp_path / "html", tmp_path / "src"
    (html / "_static" / "scripts").mkdir(parents=True)
    (html / "_static" / "locales" / "de").mkdir(parents=True)
    (html / "_static" / "locales" / "de" / "booktheme.mo").write_bytes(b"x" * 10)
    (html / "_static" / "scripts" / "a.js").write_text("var a=1;\n//# sourceMappingURL=a.js.map\n")
    (html / "_static" / "scripts" / "a.js.map").write_text("{}")
    (html / "_static" / "scripts" / "fontawesome.js").write_text("/* kit */")
    fonts = html / "_static" / "vendor" / "webfonts"
    fonts.mkdir(parents=True)
    for suffix in (".woff2", ".ttf"):
        (fonts / f"fa-solid-900{suffix}").write_bytes(b"f")
    (html / "index.html").write_text('<head>\n  <!-- So that users can add custom icons -->\n  <script defer '
                                     'src="_static/scripts/fontawesome.js?digest=1"></script>\n</head>')
    (html / "_sources" / "nbs").mkdir(parents=True)
    (staging / "nbs").mkdir(parents=True)
    executed = _nb(_md("# T"), _code("x", [{"output_type": "stream", "name": "stdout", "text": "1\n"}]))
    for folder in (html / "_sources" / "nbs", staging / "nbs"):
        (folder / "00_testbed.ipynb").write_text(json.dumps(executed))
    (html / "_images").mkdir()
    saved = publish.prune_site(html, staging)
    assert saved["source maps"] == 2 and saved["locales"] == 10 and saved["legacy fonts"] == 1
    assert not (html / "_static" / "scripts" / "a.js.map").exists()
    assert (html / "_static" / "scripts" / "a.js").read_text() == "var a=1;\n"
    assert not (html / "_static" / "locales").exists() and (fonts / "fa-solid-900.woff2").exists()
    assert "fontawesome" not in (html / "index.html").read_text()
    download = json.loads((html / "_sources" / "nbs" / "00_testbed.ipynb").read_text())
    assert download["cells"][1]["outputs"] == [] and "widgets" not in download["metadata"]
    assert (html / "favicon.ico").read_bytes()[:4] == b"\x00\x00\x01\x00"


def test_config_loads_the_book_extension_and_the_toc_the_runs_page():
    import yaml

    config = yaml.safe_load((runs.repo_root() / "_config.yml").read_text())
    assert "attnbook.book_sphinx" in config["sphinx"]["extra_extensions"]
    assert (runs.repo_root() / config["html"]["favicon"]).is_file()
    toc = yaml.safe_load((runs.repo_root() / "_toc.yml").read_text())
    assert "book/runs" in [c["file"] for part in toc["parts"] for c in part["chapters"]]


def test_ledger_links_each_chapters_paper(tmp_path):
    from attnbook.ledger import ledger_markdown

    record = _record(tmp_path, "04_bla", [dict(id="a", paper="BLA", claim="c", paper_value=1.0, ours=1.0,
                                               setting="s", status="reproduced")])
    page = ledger_markdown([record], "smoke", titles={"04_bla": "4. BLA"},
                           citations={"04_bla": "**Paper:** [BLA](https://arxiv.org/abs/2105.14824)"})
    assert "## 4. BLA\n\n**Paper:** [BLA](https://arxiv.org/abs/2105.14824)\n\nFrom [04_bla]" in page
