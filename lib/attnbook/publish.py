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
    """A file set taken from a pinned npm package, checked against the registry's published sha1."""

    package: str
    version: str
    sha1: str
    files: Mapping[str, str]  # path inside the tarball → path under _vendor/widgets/

    @property
    def tarball(self) -> str:
        return f"{self.package.lstrip('@').replace('/', '-')}-{self.version}.tgz"


_FONTS = ("1551f4f60c37af51121f.woff2", "7a3337626410ca2f4071.woff2", "d878b0a6a1144760244f.woff2",
          "2285773e6b4b172f07d9.woff", "bb58e57c48a3e911f15f.woff", "eeccf4f66002c6f2ba24.woff",
          "491974d108fe4002b2aa.ttf", "527940b104eb2ea366c8.ttf", "be9ee23c0c6390141475.ttf",
          "23f19bb08961f37aaf69.eot", "77206a6bb316fa0aded5.eot", "9bbb245e67a133f6e486.eot",
          "2f517e09eb2ca6650ff5.svg", "4689f52cc96215721344.svg", "7a8b4f130182d19a2d7c.svg")
WIDGET_ASSETS = (
    NpmAsset("requirejs", "2.3.8", "bca0614b618ab2122462597e44878db7558bbba3",
             {"package/require.js": "require.js"}),
    NpmAsset("@jupyter-widgets/html-manager", "1.0.15", "3d82fba512edcab82512e679be25c917f1b83fd1",
             {"package/dist/embed-amd.js": "embed-amd.js", "package/dist/embed.js.LICENSE.txt": "embed.LICENSE.txt",
              **{f"package/dist/{f}": f for f in _FONTS}}),
)
# Tells the html-manager where its fonts are (next to this script) instead of relative to the page.
ASSETS_PATH_JS = "window.__jupyter_widgets_assets_path__ = new URL('.', document.currentScript.src).href;\n"


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


def vendor_widget_js(dest: Path, cache: Path) -> Path:
    """Unpack RequireJS and the ipywidgets html-manager into ``dest/widgets`` (idempotent)."""
    out = dest / "widgets"
    out.mkdir(parents=True, exist_ok=True)
    for asset in WIDGET_ASSETS:
        if all((out / name).is_file() for name in asset.files.values()):
            continue
        with tarfile.open(fetch_npm_asset(asset, cache)) as tar:
            for member, name in asset.files.items():
                data = tar.extractfile(member)
                if data is None:
                    raise PublishError(f"{asset.tarball} has no {member}")
                (out / name).write_bytes(data.read())
    (out / "assets-path.js").write_text(ASSETS_PATH_JS)
    return out


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
    vendor_widget_js(staging / VENDOR_DIR, cache or root / ".cache" / "npm")
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
    cmd = [sys.executable, "-m", "jupyter_book.cli.main", "build", str(staging), "--path-output", str(out),
           "--builder", "html", "--keep-going"]
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
    """``python -m attnbook.publish vendor``: fetch the widget JavaScript into ``.cache/npm`` (setup step)."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m attnbook.publish")
    parser.add_argument("action", choices=["vendor"])
    args = parser.parse_args(argv)
    if args.action == "vendor":
        with tempfile.TemporaryDirectory() as tmp:
            vendor_widget_js(Path(tmp), runs.repo_root() / ".cache" / "npm")
        print(f"widget JavaScript cached in {runs.repo_root() / '.cache' / 'npm'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
