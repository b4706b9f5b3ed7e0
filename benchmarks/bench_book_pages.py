"""Page weight and first paint of the built book, as a reader on a 10 Mbit/s line meets it.

For every page of a built site (``book/_build/html`` by default; ``attnbook book`` makes it):

* **weight** — bytes of the page's HTML, of everything the browser fetched for it (scripts, styles,
  fonts, figures, widget state: ``performance`` resource entries' ``encodedBodySize``), and the site total;
* **first paint** — headless Chromium opens the page served over HTTP from this machine, throttled with
  CDP ``Network.emulateNetworkConditions`` to 10 Mbit/s down, 20 ms latency, cache disabled; reported:
  first contentful paint, ``DOMContentLoaded``, ``load`` and, on chapter pages, the moment the first
  widget (the explorer's slider) is on screen.

``--compare OTHER`` measures a second build (e.g. one made before a change) the same way and prints
both side by side, so a change shows as before → after::

    python benchmarks/bench_book_pages.py                              # the current build
    python benchmarks/bench_book_pages.py --compare /tmp/old/_build/html --mbit 10
    python benchmarks/bench_book_pages.py --no-browser                 # weight only (no Chromium needed)

Needs Debian's ``chromium`` and ``chromium-driver`` for the timings. Timings vary by a few percent
from run to run on a shared machine; ``--repeat`` takes the median.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import shutil
import statistics
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from attnbook.runs import repo_root

PAGES = ("book/intro.html", "nbs/00_testbed.html", "nbs/04_bla.html", "nbs/05_brnpa.html", "book/claims.html",
         "book/runs.html")
TIMING_JS = """
const nav = performance.getEntriesByType('navigation')[0];
const fcp = performance.getEntriesByName('first-contentful-paint')[0];
const resources = performance.getEntriesByType('resource');
return {fcp: fcp ? fcp.startTime : null, dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
        html: nav.encodedBodySize, fetched: nav.encodedBodySize + resources.reduce((s, r) => s + r.encodedBodySize, 0),
        requests: resources.length + 1, widget: window.__benchWidget || null};
"""
WIDGET_WATCH = """
(function watch() {
  const t0 = performance.timeOrigin;
  const seen = () => document.querySelector('.widget-slider, .jupyter-widgets .widget-hslider');
  const obs = new MutationObserver(() => { if (seen() && !window.__benchWidget) {
    window.__benchWidget = performance.now(); obs.disconnect(); } });
  obs.observe(document, {childList: true, subtree: true});
})();
"""


def site_weight(html: Path) -> dict[str, float]:
    """Bytes of the whole site and of its largest parts."""
    files = [p for p in html.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)

    def part(pred) -> int:
        return sum(p.stat().st_size for p in files if pred(p))

    return {"total": total,
            "_sources (download copies)": part(lambda p: "_sources" in p.parts),
            "source maps": part(lambda p: p.suffix == ".map"),
            "legacy fonts (eot/ttf/svg/woff)": part(lambda p: p.suffix in (".eot", ".ttf", ".woff")
                                                    or (p.suffix == ".svg" and "widgets" in p.parts)),
            "theme locales": part(lambda p: "locales" in p.parts),
            "figures (_images)": part(lambda p: "_images" in p.parts),
            "pages (*.html)": part(lambda p: p.suffix == ".html"),
            "widget state (*.widgets.js)": part(lambda p: p.name.endswith(".widgets.js"))}


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass

    httpd = Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        sys.exit("the timings need Debian's chromium and chromium-driver (or pass --no-browser)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1000"):
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        drv = webdriver.Chrome(service=Service(driver), options=options)
        drv.set_page_load_timeout(300)
        try:
            yield drv
        finally:
            drv.quit()


def time_page(drv, url: str, mbit: float, latency_ms: float, widget_wait_s: float) -> dict[str, float]:
    """One throttled, uncached load of ``url``; milliseconds and bytes."""
    import time

    drv.execute_cdp_cmd("Network.enable", {})
    drv.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
    drv.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": False, "latency": latency_ms, "downloadThroughput": mbit * 1e6 / 8,
        "uploadThroughput": mbit * 1e6 / 8})
    drv.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WIDGET_WATCH})
    drv.get("about:blank")
    drv.get(url)
    deadline = time.monotonic() + widget_wait_s
    loaded = ("const n = performance.getEntriesByType('navigation')[0];"
              "return location.href === arguments[0] && !!n && n.loadEventEnd > 0")
    while time.monotonic() < deadline and not drv.execute_script(loaded, url):  # get() can return early
        time.sleep(0.1)
    if "/nbs/" in url:
        while time.monotonic() < deadline and not drv.execute_script("return window.__benchWidget || null"):
            time.sleep(0.1)
    return drv.execute_script(TIMING_JS)


def measure(html: Path, pages: tuple[str, ...], mbit: float, latency_ms: float, repeat: int,
            browser: bool) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    for page in pages:
        if (html / page).is_file():
            rows[page] = {"html": (html / page).stat().st_size}
    if not browser:
        return rows
    with serve(html) as base, chromium() as drv:
        for page in rows:
            runs = [time_page(drv, f"{base}/{page}", mbit, latency_ms, widget_wait_s=120) for _ in range(repeat)]
            for key in ("fcp", "dcl", "load", "widget", "fetched", "requests"):
                values = [r[key] for r in runs if r.get(key) is not None]
                rows[page][key] = statistics.median(values) if values else None
    return rows


def _fmt(key: str, value: float | None) -> str:
    if value is None:
        return "—"
    if key in ("html", "fetched"):
        return f"{value / 1e3:,.0f} kB" if value < 1e6 else f"{value / 1e6:.2f} MB"
    if key == "requests":
        return f"{value:.0f}"
    return f"{value / 1e3:.2f} s"


COLUMNS = {"html": "page HTML", "fetched": "all fetched", "requests": "requests", "fcp": "first paint",
           "dcl": "DOM ready", "load": "load", "widget": "widget shown"}


def report(label: str, weight: dict[str, float], rows: dict[str, dict[str, float]],
           other: tuple[str, dict[str, float], dict[str, dict[str, float]]] | None) -> str:
    lines = [f"site: {label}"]
    if other:
        lines[0] += f"   (before: {other[0]})"
    width = max(len(k) for k in weight) + 2
    for key, value in weight.items():
        after = f"{value / 1e6:7.2f} MB"
        if other:
            lines.append(f"  {key:<{width}} {other[1].get(key, 0) / 1e6:7.2f} MB → {after}")
        else:
            lines.append(f"  {key:<{width}} {after}")
    keys = [k for k in COLUMNS if any(k in r for r in rows.values())]
    lines += ["", "page".ljust(22) + "".join(COLUMNS[k].rjust(24 if other else 14) for k in keys)]
    for page, row in rows.items():
        cells = []
        for key in keys:
            now = _fmt(key, row.get(key))
            if other and page in other[2]:
                cells.append(f"{_fmt(key, other[2][page].get(key))} → {now}".rjust(24))
            else:
                cells.append(now.rjust(24 if other else 14))
        lines.append(page.ljust(22) + "".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=repo_root() / "book" / "_build" / "html")
    parser.add_argument("--compare", type=Path, default=None, help="another build, shown as 'before'")
    parser.add_argument("--mbit", type=float, default=10.0, help="download and upload rate (Mbit/s)")
    parser.add_argument("--latency", type=float, default=20.0, help="round-trip latency added (ms)")
    parser.add_argument("--repeat", type=int, default=1, help="loads per page (median)")
    parser.add_argument("--no-browser", action="store_true", help="weights only")
    args = parser.parse_args(argv)
    if not (args.site / "index.html").is_file():
        sys.exit(f"no built book at {args.site}: run `attnbook book --profile smoke` first")
    browser = not args.no_browser
    other = None
    if args.compare is not None:
        other = (str(args.compare), site_weight(args.compare),
                 measure(args.compare, PAGES, args.mbit, args.latency, args.repeat, browser))
    rows = measure(args.site, PAGES, args.mbit, args.latency, args.repeat, browser)
    print(f"throttled to {args.mbit:g} Mbit/s, {args.latency:g} ms latency, cache off\n" if browser else "")
    print(report(str(args.site), site_weight(args.site), rows, other))
    return 0


if __name__ == "__main__":
    sys.exit(main())
