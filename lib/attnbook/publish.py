"""Publish the book: execute each chapter's book run, stage the executed notebooks, assemble the
claims ledger from ``results/``, vendor the widget JavaScript, and build Jupyter Book 1 offline.

Jupyter Book never executes anything (``execute_notebooks: off``): pages show what papermill ran.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from attnbook import book_pages, runs
from attnbook.book_sphinx import LOADER_JS

BOOK_SOURCES = ("_config.yml", "_toc.yml", "book")
CONTENTS_MARKER = "<!-- chapters: generated from attnbook.chapters when the book is staged -->"
VENDOR_DIR = "_vendor"  # on html_static_path; not `_static`, which Jupyter Book would add to every page twice


@dataclass(frozen=True)
class NpmAsset:
    """Files taken from a pinned npm package, checked against the registry's published sha1."""

    package: str
    version: str
    sha1: str
    folder: str  # destination under _vendor/
    files: Mapping[str, str]  # tarball member (or folder ending in "/") → path under ``folder``

    @property
    def tarball(self) -> str:
        """The file name npm gives the package's tarball, e.g. ``requirejs-2.3.8.tgz``."""
        return f"{self.package.lstrip('@').replace('/', '-')}-{self.version}.tgz"


ASSETS = (
    NpmAsset("requirejs", "2.3.8", "bca0614b618ab2122462597e44878db7558bbba3", "widgets",
             {"package/require.js": "require.js"}),
    # ipywidgets 8's embed manager, with the icon fonts it loads: WOFF2 only (every browser that runs the
    # bundle reads it; the EOT/TTF/SVG/WOFF fallbacks of its @font-face rules are never requested)
    NpmAsset("@jupyter-widgets/html-manager", "1.0.15", "3d82fba512edcab82512e679be25c917f1b83fd1", "widgets",
             {"package/dist/embed-amd.js": "embed-amd.js", "package/dist/embed.js.LICENSE.txt": "embed.LICENSE.txt",
              **{f"package/dist/{f}": f for f in (
                  "1551f4f60c37af51121f.woff2", "7a3337626410ca2f4071.woff2", "d878b0a6a1144760244f.woff2")}}),
    # MathJax 3 for the equations (Sphinx would load it from a CDN); fonts resolve next to the script
    NpmAsset("mathjax", "3.2.2", "c754d7b46a679d7f3fa03543d6b8bf124ddf9f6b", "mathjax",
             {"package/es5/tex-chtml.js": "tex-chtml.js", "package/LICENSE": "LICENSE",
              "package/es5/output/chtml/fonts/woff-v2/": "output/chtml/fonts/woff-v2/"}),
)
# The html-manager's AMD modules resolve their assets (fonts) against their module URIs, which
# RequireJS derives from the *page* folder; map the module paths to the vendored folder instead.
ASSETS_PATH_JS = """(function () {
  var here = new URL('.', document.currentScript.src).href;
  window.__jupyter_widgets_assets_path__ = here;
  var folder = here.replace(/\\/$/, '');
  window.require.config({paths: {'@jupyter-widgets': folder, '@jupyter-widgets/html-manager/dist': folder}});
})();
"""
# What a reader never needs from the built site (attnbook.publish.prune_site)
DROPPED_STATIC = ("locales",)  # the theme's message catalogues (the book is in English; they are build inputs)
LEGACY_FONTS = (".ttf", ".eot", ".woff")  # beside every .woff2 of the theme's Font Awesome


class PublishError(RuntimeError):
    """The book could not be built; the message says why and what to do."""


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def fetch_npm_asset(asset: NpmAsset, cache: Path) -> Path:
    """The verified tarball of ``asset`` in ``cache``, fetched with ``npm pack`` when missing."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / asset.tarball
    if not path.is_file():
        if shutil.which("npm") is None:
            raise PublishError(f"{path.name} is not cached and npm is missing: install Node.js/npm, or copy "
                               f"`npm pack {asset.package}@{asset.version}` output into {cache}")
        proc = subprocess.run(["npm", "pack", f"{asset.package}@{asset.version}", "--pack-destination", str(cache),
                               "--silent"], capture_output=True, text=True)
        if proc.returncode != 0 or not path.is_file():
            raise PublishError(f"npm pack {asset.package}@{asset.version} failed: {proc.stderr.strip()[-300:]}")
    if _sha1(path) != asset.sha1:
        path.unlink()
        raise PublishError(f"{path.name}: sha1 differs from the registry's published {asset.sha1}; deleted, retry")
    return path


def _members(tar: tarfile.TarFile, asset: NpmAsset) -> list[tuple[tarfile.TarInfo, str]]:
    """(member, destination) pairs of ``asset``; a folder entry takes every file below it."""
    names = {m.name: m for m in tar.getmembers() if m.isfile()}
    pairs = []
    for source, target in asset.files.items():
        if source.endswith("/"):
            pairs += [(m, target + n[len(source):]) for n, m in names.items() if n.startswith(source)]
        elif source in names:
            pairs.append((names[source], target))
        else:
            raise PublishError(f"{asset.tarball} has no {source}")
    return pairs


def vendor_assets(dest: Path, cache: Path) -> Path:
    """Unpack the pinned JavaScript (widgets, MathJax) into ``dest`` (idempotent); returns ``dest``."""
    for asset in ASSETS:
        out = dest / asset.folder
        with tarfile.open(fetch_npm_asset(asset, cache)) as tar:
            for member, name in _members(tar, asset):
                target = out / name
                if not target.is_file():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(tar.extractfile(member).read())
    (dest / "widgets" / "assets-path.js").write_text(ASSETS_PATH_JS)
    (dest / "widgets" / "loader.js").write_text(LOADER_JS)
    return dest


def book_run_params(profile: str) -> dict[str, object]:
    """Parameters of the run a chapter page shows: the profile's defaults, seed 0."""
    return {"profile": profile, "seed": 0}


def chapter_run_dir(notebook: str, profile: str, results: Path) -> Path | None:
    """The book run of a chapter: the complete run of this code; else its failed run (pages then show the
    error: a stale run whose rerun failed is not published as current); else a stale complete run (kept
    with ``--keep-stale``)."""
    from attnbook.runner_store import is_complete

    base = results / notebook / runs.run_id(book_run_params(profile))
    failed = base.with_name(base.name + ".failed")
    if (base / runs.NOTEBOOK_FILE).is_file() and is_complete(base):
        return base
    for candidate in (failed, base):
        if (candidate / runs.NOTEBOOK_FILE).is_file():
            return candidate
    return None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def stage(staging: Path, *, profile: str, results: Path, notebooks: Iterable[str], root: Path | None = None,
          cache: Path | None = None) -> list[str]:
    """Lay out the book sources with the executed notebooks; returns chapters without a complete run.

    Each chapter's executed notebook is staged as the page shows it (:mod:`attnbook.book_pages`): papermill's
    parameter cells hidden, progress bars dropped, a verdict box under the title and a provenance footer;
    the claims ledger and the *All runs* page are written from ``results/``."""
    from attnbook.chapters import contents_markdown, get_chapter
    from attnbook.ledger import CSS, ledger_markdown
    from attnbook.provenance import code_version
    from attnbook.runner_store import read_status

    root = root or runs.repo_root()
    notebooks = list(notebooks)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for name in BOOK_SOURCES:
        src = root / name
        if src.is_dir():
            shutil.copytree(src, staging / name, ignore=shutil.ignore_patterns("_build", "__pycache__"))
        else:
            shutil.copy2(src, staging / name)
    vendor_assets(staging / VENDOR_DIR, cache or root / ".cache" / "npm")
    (staging / "nbs").mkdir()
    current = code_version()
    records, incomplete, shipped, titles, citations = [], [], {}, {}, {}
    for notebook in notebooks:
        run_dir = chapter_run_dir(notebook, profile, results)
        if run_dir is None:
            raise PublishError(f"{notebook} has no {profile} run to publish; run `attnbook book --profile {profile}`")
        chapter = get_chapter(notebook)
        titles[notebook] = book_pages.chapter_heading(chapter)
        citations[notebook] = book_pages.citation_markdown(chapter)
        try:
            record = runs.read_record(run_dir)
        except runs.ResultsError:
            record = None
            incomplete.append(notebook)
        else:
            records.append(record)
        status = read_status(run_dir)
        nb = json.loads((run_dir / runs.NOTEBOOK_FILE).read_text())
        params = _read_json(run_dir / runs.PARAMS_FILE) or book_run_params(profile)
        book_pages.clean_notebook(nb, book_pages.rerun_command(notebook, params))  # each caption ends in its recipe
        book_pages.add_chapter_boxes(
            nb, book_pages.verdict_markdown(chapter, record, status, profile, current),
            book_pages.provenance_markdown(notebook, run_dir.name, record, status, params, current))
        (staging / "nbs" / f"{notebook}.ipynb").write_text(json.dumps(nb, ensure_ascii=False))
        shipped[run_dir.resolve()] = f"../nbs/{notebook}.ipynb"

    intro = staging / "book" / "intro.md"
    intro.write_text(intro.read_text().replace(CONTENTS_MARKER, contents_markdown()))
    (staging / VENDOR_DIR / "attnbook.css").write_text(CSS)
    (staging / "book" / "claims.md").write_text(ledger_markdown(records, profile, incomplete, titles, citations))
    (staging / "book" / "runs.md").write_text(book_pages.runs_markdown(notebooks, results, titles, shipped, current))
    return incomplete


def favicon_ico() -> bytes:
    """``favicon.ico`` for the site root (browsers ask for it where a page names no icon): the book's
    icon — a spot of attention on a dark square — drawn at 16, 32 and 48 px."""
    from PIL import Image, ImageDraw

    big = 192
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, big - 1, big - 1), radius=36, fill="#1f3a5f")
    draw.ellipse((42, 42, 150, 150), outline="#9ecbff", width=15)
    draw.ellipse((72, 72, 120, 120), fill="#ffcc33")
    out = io.BytesIO()
    image.save(out, format="ICO", sizes=[(16, 16), (32, 32), (48, 48)])
    return out.getvalue()


# pydata-sphinx-theme's template loads Font Awesome's 1.5 MB SVG+JS kit on every page (blocking DOMContentLoaded)
# although its stylesheet draws the icons from the web fonts already: the tag and the file go
_ICON_SCRIPT = re.compile(r'[ \t]*(?:<!-- So that users can add custom icons -->\s*)?'
                          r'<script defer src="[^"]*_static/scripts/fontawesome\.js[^"]*"></script>\n?')
_SOURCE_MAP_COMMENT = re.compile(  # the last line of a minified file naming its (deleted) source map
    r"\n?(?://# sourceMappingURL=[^\s'\"]+\.map\s*|/\*# sourceMappingURL=[^*]+\.map \*/\s*)$")


def prune_site(html: Path, staging: Path) -> dict[str, int]:
    """What a reader never needs, out of the built site ``html``; returns bytes saved per kind.

    Source maps (and the comments naming them), the theme's message catalogues, legacy font formats and
    Font Awesome's JavaScript kit (the theme's CSS shows the icons);
    the notebooks behind the download buttons are re-written without outputs
    (:func:`attnbook.book_pages.download_copy`: 4 MB of base64 figures and widget state each, already
    on the page); figure PNGs re-encoded by :func:`attnbook.viz.plots.compact_png`."""
    from attnbook.viz.plots import compact_png

    saved = dict.fromkeys(("source maps", "locales", "legacy fonts", "icon script", "notebook downloads",
                           "figures"), 0)
    static = html / "_static"
    icons = static / "scripts" / "fontawesome.js"
    if icons.is_file():  # the theme's CSS draws the same icons from its Font Awesome web fonts
        for page in html.rglob("*.html"):
            text = page.read_text()
            lean = _ICON_SCRIPT.sub("", text)
            if lean != text:
                page.write_text(lean)
        saved["icon script"] += icons.stat().st_size
        icons.unlink()
    for path in sorted(static.rglob("*.map")):
        saved["source maps"] += path.stat().st_size
        path.unlink()
    for path in [*static.rglob("*.js"), *static.rglob("*.css")]:
        text = path.read_text(errors="surrogateescape")
        stripped = _SOURCE_MAP_COMMENT.sub("", text.rstrip()) + "\n"
        if stripped.rstrip() != text.rstrip():
            path.write_text(stripped, errors="surrogateescape")
    for name in DROPPED_STATIC:
        folder = static / name
        if folder.is_dir():
            saved["locales"] += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            shutil.rmtree(folder)
    for woff2 in sorted(static.rglob("*.woff2")):
        for suffix in LEGACY_FONTS:
            legacy = woff2.with_suffix(suffix)
            if legacy.is_file():
                saved["legacy fonts"] += legacy.stat().st_size
                legacy.unlink()
    for staged in sorted((staging / "nbs").glob("*.ipynb")):
        target = html / "_sources" / "nbs" / staged.name
        if target.is_file():
            before = target.stat().st_size
            target.write_text(json.dumps(book_pages.download_copy(json.loads(staged.read_text())), indent=1,
                                         ensure_ascii=False) + "\n")
            saved["notebook downloads"] += before - target.stat().st_size
    for png in sorted((html / "_images").glob("*.png")):
        data = png.read_bytes()
        small = compact_png(data)
        if len(small) < len(data):
            png.write_bytes(small)
            saved["figures"] += len(data) - len(small)
    (html / "favicon.ico").write_bytes(favicon_ico())
    return saved


def build(staging: Path, out: Path) -> Path:
    """Run Jupyter Book 1 on the staged sources, then :func:`prune_site`; returns the index page."""
    script = Path(sys.executable).with_name("jupyter-book")  # the package has no `python -m` entry point
    cmd = [str(script), "build", str(staging), "--path-output", str(out), "--builder", "html", "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    index = out / "_build" / "html" / "index.html"
    if proc.returncode != 0 or not index.is_file():
        raise PublishError(f"jupyter-book build failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    saved = prune_site(index.parent, staging)
    summary = ", ".join(f"{kind} {size / 1e6:.1f} MB" for kind, size in saved.items())
    (out / "_build" / "build.log").write_text(proc.stdout + proc.stderr + f"\nattnbook: pruned {summary}\n")
    return index


def execute_and_build(*, profile: str = "cpu", jobs: int = 1, force: bool = False, results: Path | None = None,
                      out: Path | None = None) -> tuple[Path, list[str]]:
    """``make book``: run every chapter's book run (skipping complete ones), then build the book."""
    from attnbook import runner
    from attnbook.chapters import notebook_names

    root = runs.repo_root()
    results = results or runs.results_root()
    out = out or root / "book"
    specs = [runner.RunSpec(notebook=root / "nbs" / f"{name}.ipynb", params=book_run_params(profile), results=results)
             for name in notebook_names()]
    for spec in specs:
        runner.plan(spec.notebook, profile=profile, results=results)  # validates before anything runs
    outcomes = runner.run_batch(specs, jobs=jobs, force=force)
    failed = [o.spec.stem for o in outcomes if o.status == "failed"]
    staging = out / "_build" / "src"
    stage(staging, profile=profile, results=results, notebooks=notebook_names(), root=root)
    return build(staging, out), failed


def main(argv: list[str] | None = None) -> int:
    """``python -m attnbook.publish vendor``: fetch the pinned JavaScript into ``.cache/npm`` (setup step)."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m attnbook.publish")
    parser.add_argument("action", choices=["vendor"])
    args = parser.parse_args(argv)
    if args.action == "vendor":
        with tempfile.TemporaryDirectory() as tmp:
            vendor_assets(Path(tmp), runs.repo_root() / ".cache" / "npm")
        print(f"widget and MathJax JavaScript cached in {runs.repo_root() / '.cache' / 'npm'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
