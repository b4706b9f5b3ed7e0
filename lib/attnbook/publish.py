"""Publish the book: execute each chapter's book run, stage the executed notebooks, assemble the
claims ledger from ``results/``, vendor the widget JavaScript, and build Jupyter Book 1 offline.

Jupyter Book never executes anything (``execute_notebooks: off``): pages show what papermill ran.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from attnbook import runs

BOOK_SOURCES = ("_config.yml", "_toc.yml", "book")
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
        return f"{self.package.lstrip('@').replace('/', '-')}-{self.version}.tgz"


ASSETS = (
    NpmAsset("requirejs", "2.3.8", "bca0614b618ab2122462597e44878db7558bbba3", "widgets",
             {"package/require.js": "require.js"}),
    # ipywidgets 8's embed manager, with the fonts it loads (its `dist/` minus the non-AMD bundles)
    NpmAsset("@jupyter-widgets/html-manager", "1.0.15", "3d82fba512edcab82512e679be25c917f1b83fd1", "widgets",
             {"package/dist/embed-amd.js": "embed-amd.js", "package/dist/embed.js.LICENSE.txt": "embed.LICENSE.txt",
              **{f"package/dist/{f}": f for f in (
                  "1551f4f60c37af51121f.woff2", "7a3337626410ca2f4071.woff2", "d878b0a6a1144760244f.woff2",
                  "2285773e6b4b172f07d9.woff", "bb58e57c48a3e911f15f.woff", "eeccf4f66002c6f2ba24.woff",
                  "491974d108fe4002b2aa.ttf", "527940b104eb2ea366c8.ttf", "be9ee23c0c6390141475.ttf",
                  "23f19bb08961f37aaf69.eot", "77206a6bb316fa0aded5.eot", "9bbb245e67a133f6e486.eot",
                  "2f517e09eb2ca6650ff5.svg", "4689f52cc96215721344.svg", "7a8b4f130182d19a2d7c.svg")}}),
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
    return dest


def book_run_params(profile: str) -> dict[str, object]:
    """Parameters of the run a chapter page shows: the profile's defaults, seed 0."""
    return {"profile": profile, "seed": 0}


def chapter_run_dir(notebook: str, profile: str, results: Path) -> Path | None:
    """The book run of a chapter: the complete run, else its failed run (pages then show the error)."""
    base = results / notebook / runs.run_id(book_run_params(profile))
    for candidate in (base, base.with_name(base.name + ".failed")):
        if (candidate / runs.NOTEBOOK_FILE).is_file():
            return candidate
    return None


def _md_cell(value: object) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = "—" if value is None or value == "" else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def claims_markdown(records: Iterable[Mapping], profile: str, missing: Iterable[str] = ()) -> str:
    """The claims-ledger page: every claim of every chapter's book run, from its ``metrics.json``."""
    lines = ["# Claims ledger", "",
             "Every published claim beside the number this book measured, the setting it was measured in, and a "
             "verdict computed by the chapter's code. *not run* rows say why. Assembled from the "
             f"`metrics.json` files of the `{profile}` book runs in `results/`; nothing here is typed by hand.", ""]
    statuses: dict[str, int] = {}
    rows = []
    for record in records:
        for c in record["claims"]:
            statuses[c["status"]] = statuses.get(c["status"], 0) + 1
            rows.append([c["paper"], c["claim"], c["paper_value"], c["ours"], c["setting"], f"**{c['status']}**",
                         c.get("note", ""), f"[{record['notebook']}](../nbs/{record['notebook']}.ipynb)"])
    if statuses:
        lines += ["Totals: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + ".", ""]
    lines += ["| paper | claim | paper | ours | setting | status | note | chapter |",
              "|---|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in rows]
    for name in missing:
        lines += ["", f"- `{name}`: no complete `{profile}` run — its claims are missing from this table "
                      f"(run `attnbook run nbs/{name}.ipynb --profile {profile}`)."]
    return "\n".join(lines) + "\n"


def stage(staging: Path, *, profile: str, results: Path, notebooks: Iterable[str], root: Path | None = None,
          cache: Path | None = None) -> list[str]:
    """Lay out the book sources with the executed notebooks; returns chapters without a complete run."""
    root = root or runs.repo_root()
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
    records, incomplete = [], []
    for notebook in notebooks:
        run_dir = chapter_run_dir(notebook, profile, results)
        if run_dir is None:
            raise PublishError(f"{notebook} has no {profile} run to publish; run `attnbook book --profile {profile}`")
        shutil.copy2(run_dir / runs.NOTEBOOK_FILE, staging / "nbs" / f"{notebook}.ipynb")
        try:
            records.append(runs.read_record(run_dir))
        except runs.ResultsError:
            incomplete.append(notebook)
    (staging / "book" / "claims.md").write_text(claims_markdown(records, profile, incomplete))
    return incomplete


def build(staging: Path, out: Path) -> Path:
    """Run Jupyter Book 1 on the staged sources; returns the index page."""
    script = Path(sys.executable).with_name("jupyter-book")  # the package has no `python -m` entry point
    cmd = [str(script), "build", str(staging), "--path-output", str(out), "--builder", "html", "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    index = out / "_build" / "html" / "index.html"
    if proc.returncode != 0 or not index.is_file():
        raise PublishError(f"jupyter-book build failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    (out / "_build" / "build.log").write_text(proc.stdout + proc.stderr)
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
