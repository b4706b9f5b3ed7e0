"""Book publishing pieces that need no notebook execution: the claims ledger and widget assets."""
from pathlib import Path

import pytest

from attnbook import publish, runs


def _record(tmp_path: Path, notebook: str, claims: list[dict]) -> dict:
    rec = runs.start(notebook, run_dir=tmp_path / notebook, profile="smoke", seed=0, params={})
    for claim in claims:
        rec.claim(**claim)
    return runs.read_record(rec.finish().parent)


def test_claims_page_lists_every_claim_with_its_status(tmp_path):
    rec = _record(tmp_path, "04_bla", [
        dict(id="t1", paper="BLA", claim="accuracy | hard", paper_value=0.99, ours=0.98123, setting="synthetic",
             status="reproduced"),
        dict(id="u", paper="BLA", claim="user study", paper_value="71%", ours=None, setting="—",
             status="not run", note="human study"),
    ])
    page = publish.claims_markdown([rec], "smoke", missing=["05_brnpa"])
    assert "| BLA | accuracy \\| hard | 0.99 | 0.9812 | synthetic | **reproduced** |" in page
    assert "**not run** | human study" in page
    assert "1 not run, 1 reproduced" in page and "`05_brnpa`: no complete `smoke` run" in page


def test_chapter_run_dir_prefers_the_complete_run(tmp_path):
    base = tmp_path / "00_testbed" / runs.run_id(publish.book_run_params("cpu"))
    assert publish.chapter_run_dir("00_testbed", "cpu", tmp_path) is None
    failed = base.with_name(base.name + ".failed")
    failed.mkdir(parents=True)
    (failed / runs.NOTEBOOK_FILE).write_text("{}")
    assert publish.chapter_run_dir("00_testbed", "cpu", tmp_path) == failed
    base.mkdir()
    (base / runs.NOTEBOOK_FILE).write_text("{}")
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
