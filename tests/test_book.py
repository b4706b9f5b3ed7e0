"""The published book: built from the smoke runs, then opened in headless Chromium as a reader meets it.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). Outside CI the
browser tests skip with a message when they are missing; in CI (``CI`` set) they fail instead.
Screenshots of each chapter's top and of the ledger (1,400 px and 400 px wide), of each chapter's figures
and of its explorer land in ``book/_build/screens/``.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading

import pytest

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-quic", "--window-size=1400,2000")
SITE_LIMIT = 20e6  # bytes: the whole site, for the current three chapters
PAGE_LIMIT = 400e3  # bytes: one chapter's HTML (its widget state is a separate file, loaded after the text)
WIDTHS = {"desktop": 1400, "phone": 400}
MAX_SHRINK = 1.5  # a figure PNG may be shown at most this many times smaller than drawn (9 pt text → ≥ 6 pt)
MIN_EXPLORER_WIDTH = 300  # px: an explorer view (input beside the map, colour bar)


def _chapters():
    from attnbook.chapters import notebook_names

    return notebook_names()


def _declared_figures(name):
    """The figures chapter ``name`` declares in its notebook's cell metadata (attnbook.book_pages.figure_specs)."""
    from attnbook.book_pages import figure_specs
    from attnbook.runs import repo_root

    nb = json.loads((repo_root() / "nbs" / f"{name}.ipynb").read_text())
    return [spec for cell in nb["cells"] if cell["cell_type"] == "code" for spec in figure_specs(cell)]


def test_pages_exist_and_need_no_cdn(built_book):
    pages = ["index.html", "book/claims.html", "book/runs.html"] + [f"nbs/{n}.html" for n in _chapters()]
    for page in pages:
        assert (built_book / page).is_file(), f"{page} missing from the book"
    external = re.compile(r'<(?:script[^>]*\ssrc|link[^>]*\shref)="(https?:)?//', re.I)
    for page in pages:
        html = (built_book / page).read_text()
        assert not external.search(html), f"{page} loads {external.search(html).group(0)}…"
        assert "THEBE_JS_URL" not in html and "thebe" not in html.split("</head>")[0], f"{page}: thebe is loaded"
    log = (built_book.parent / "build.log").read_text()
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    assert not warnings, f"the book build warned: {warnings[:3]}"
    claims = (built_book / "book/claims.html").read_text()
    assert claims.count("<tr") >= 2
    assert any(status in claims for status in ("reproduced", "inconclusive", "not run"))


def test_chapter_pages_are_light_and_load_widgets_after_the_text(built_book):
    for name in _chapters():
        html = (built_book / f"nbs/{name}.html").read_text()
        head = html.split("</head>")[0]
        assert "application/vnd.jupyter.widget-state+json" not in html, f"{name}: widget state inline"
        assert "embed-amd.js" not in head and "require.js" not in head, f"{name}: widget bundle in <head>"
        assert re.search(r'<script[^>]*defer[^>]*widgets/loader\.js', head), f"{name}: no deferred widget loader"
        assert (built_book / f"nbs/{name}.widgets.js").is_file()
        assert len(html.encode()) < PAGE_LIMIT, f"{name}.html is {len(html.encode()) / 1e3:.0f} kB"
        assert re.search(r'class="[^"]*\battnbook-verdict\b', html), f"{name}: no verdict box"
        assert re.search(r'class="[^"]*\battnbook-provenance\b', html), f"{name}: no provenance footer"
        text = re.sub(r"<[^>]+>", "", html)  # code blocks are highlighted token by token
        assert f"attnbook run nbs/{name}.ipynb --profile smoke" in text, f"{name}: no rerun command"
        assert "injected-parameters" not in html and ".partial-" not in html, f"{name}: papermill's run_dir shows"
        assert "%|" not in html, f"{name}: a progress bar is on the page"


def test_the_site_ships_nothing_a_reader_does_not_need(built_book):
    files = [p for p in built_book.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    assert total < SITE_LIMIT, f"the site is {total / 1e6:.1f} MB"
    assert not [p for p in files if p.suffix == ".map"], "source maps shipped"
    assert not [p for p in files if p.suffix in (".eot", ".ttf")], "legacy font formats shipped"
    assert not (built_book / "_static" / "locales").exists()
    assert (built_book / "favicon.ico").is_file() and (built_book / "_static" / "favicon.svg").is_file()
    for name in _chapters():
        download = json.loads((built_book / "_sources" / "nbs" / f"{name}.ipynb").read_text())
        assert all(not c.get("outputs") for c in download["cells"]), f"{name}: the download keeps its outputs"
        assert "widgets" not in download["metadata"]


def test_all_runs_page_lists_every_run(built_book, smoke_results):
    results, _ = smoke_results
    page = (built_book / "book/runs.html").read_text()
    for name in _chapters():
        n = sum(1 for d in (results / name).iterdir() if d.is_dir() and not d.name.startswith("."))
        assert f"{n} run{'s' * (n != 1)} of" in page, f"{name}: not every run is listed"
        assert f'href="../nbs/{name}.html"' in page, f"{name}: its book run is not linked to its page"


@pytest.fixture(scope="module")
def server(built_book):
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    class QuietServer(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):  # a browser closing sockets early is fine
            pass

    httpd = QuietServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(built_book)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        message = ("headless Chromium needs Debian's chromium + chromium-driver "
                   "(apt-get install chromium chromium-driver)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver), options=options)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def screens():
    from attnbook.runs import repo_root

    folder = repo_root() / "book" / "_build" / "screens"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


VISIBLE_WIDGET_IMAGES = """
return [...document.querySelectorAll('img.widget-image')]
  .filter(e => e.offsetParent !== null && e.naturalWidth > 0).map(e => e.src.slice(-64));
"""
VISIBLE_WIDGET_WIDTHS = """
return [...document.querySelectorAll('img.widget-image')]
  .filter(e => e.offsetParent !== null && e.naturalWidth > 0).map(e => [e.naturalWidth, e.clientWidth]);
"""
FIGURES = """
const figures = [...document.querySelectorAll('main figure, .bd-article figure')];
return {
  loose: [...document.querySelectorAll('.cell_output img:not(.widget-image)')]
    .filter(i => !i.closest('figure')).map(i => i.getAttribute('src')),
  figures: [...new Set(figures)].map(f => {
    const img = f.querySelector('img');
    const cap = f.querySelector('figcaption');
    const number = cap && cap.querySelector('.caption-number');
    return {id: f.id, alt: img ? img.getAttribute('alt') : null, natural: img ? img.naturalWidth : 0,
            shown: img ? img.getBoundingClientRect().width : 0,
            number: number ? number.innerText : '', caption: cap ? cap.innerText : ''};
  }),
};
"""
PAGE_TEXT = "return document.querySelector('main, .bd-article, body').innerText"


def _wait(browser, script, timeout=30, message=""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(lambda d: d.execute_script(script), message)


def _open(browser, url):
    """Load ``url`` with the console log emptied first; returns nothing (read it with :func:`_errors`)."""
    browser.get_log("browser")
    browser.get(url)


def _errors(browser):
    """Every SEVERE console entry since :func:`_open` (JS errors, failed requests — favicon included)."""
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def _shoot(browser, screens, stem):
    """Screenshots of the page's top at each of :data:`WIDTHS` (device emulation, so phones get their layout)."""
    for label, width in WIDTHS.items():
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": 900 if label == "desktop" else 860, "deviceScaleFactor": 1,
            "mobile": label == "phone"})
        browser.execute_script("window.scrollTo(0, 0)")
        browser.execute_script("return new Promise(r => requestAnimationFrame(() => setTimeout(r, 300)))")
        browser.save_screenshot(str(screens / f"{stem}-{label}.png"))
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _check_text(name, text):
    assert "NaN" not in text, f"{name}: NaN on the page: …{text[max(0, text.find('NaN') - 80):text.find('NaN') + 20]}…"
    assert "{glue:" not in text, f"{name}: raw glue markup on the page"
    assert "%|" not in text and "batch/s" not in text, f"{name}: a progress bar on the page"
    assert "PosixPath(" not in text, f"{name}: a stray path repr on the page"


@pytest.mark.browser
def test_chapter_pages_as_a_reader_meets_them(browser, server, screens):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    for name in _chapters():
        _open(browser, f"{server}/nbs/{name}.html")
        _wait(browser, "return [...document.querySelectorAll('.cell_output img')]"
                       ".filter(i => i.complete && i.naturalWidth > 0).length >= 2 || null",
              message=f"{name}: fewer than 2 rendered figures")
        assert browser.find_elements(By.CSS_SELECTOR, ".attnbook-verdict .claim-status") or \
            browser.find_elements(By.CSS_SELECTOR, ".attnbook-verdict.error"), f"{name}: no verdict box with badges"
        footer = browser.find_element(By.CSS_SELECTOR, ".attnbook-provenance").text
        for field in ("git commit", "code version", "device", "wall time", "packages", "attnbook run"):
            assert field in footer, f"{name}: the provenance footer lacks {field!r}"
        _check_text(name, browser.execute_script(PAGE_TEXT))
        _shoot(browser, screens, name)

        _wait(browser,
              "return document.querySelectorAll('.widget-slider, .jupyter-widgets .widget-hslider').length > 0")
        before = _wait(browser, VISIBLE_WIDGET_IMAGES)
        assert len(before) == 1, f"{name}: expected one visible explorer image, saw {len(before)}"
        (natural, shown), = browser.execute_script(VISIBLE_WIDGET_WIDTHS)
        assert min(natural, shown) >= MIN_EXPLORER_WIDTH, f"{name}: the explorer image is {natural} px ({shown} shown)"
        explorer = browser.execute_script(  # the outermost box around the visible explorer image
            "let e = [...document.querySelectorAll('img.widget-image')].find(i => i.offsetParent !== null);"
            "for (let p = e; p; p = p.parentElement) { if (p.classList.contains('widget-vbox')) e = p; } return e;")
        browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", explorer)
        explorer.screenshot(str(screens / f"{name}-explorer.png"))
        handle = browser.find_element(By.CSS_SELECTOR, ".noUi-handle")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", handle)
        handle.click()
        handle.send_keys(Keys.ARROW_RIGHT)
        after_slider = _wait(browser, VISIBLE_WIDGET_IMAGES)
        assert after_slider != before, f"{name}: moving the image slider did not change the view"
        buttons = browser.find_elements(By.CSS_SELECTOR, ".widget-toggle-buttons button")
        assert len(buttons) >= 2
        buttons[1].click()
        after_button = _wait(browser, VISIBLE_WIDGET_IMAGES)
        assert after_button != after_slider, f"{name}: choosing another method did not change the view"

        errors = _errors(browser)
        assert not errors, f"{name}: console errors: {errors[:3]}"
        origins = browser.execute_script(
            "return performance.getEntriesByType('resource').map(r => new URL(r.name).origin)")
        assert set(origins) <= {server}, f"{name}: requests left the book: {set(origins) - {server}}"


@pytest.mark.browser
def test_chapter_figures_are_numbered_captioned_described_and_readable(browser, server, screens):
    """Every figure of a chapter: in a <figure> with a numbered caption ("Figure N", numbered through the book
    in chapter order), alt text that says what it shows (not the file path), drawn no more than
    :data:`MAX_SHRINK` times wider than it is shown."""
    from selenium.webdriver.common.by import By

    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": WIDTHS["desktop"], "height": 900, "deviceScaleFactor": 1, "mobile": False})
    number, undeclared = 0, []
    try:
        for name in _chapters():
            declared = _declared_figures(name)
            _open(browser, f"{server}/nbs/{name}.html")
            _wait(browser, "return [...document.querySelectorAll('figure img')].every(i => i.complete) || null")
            found = browser.execute_script(FIGURES)
            if not declared:  # a chapter still being written: checked below, after the others
                undeclared.append(name)
                number += sum(1 for fig in found["figures"] if fig["number"])
                continue
            assert not found["loose"], f"{name}: figures without caption or alt text: {found['loose'][:3]}"
            figures = found["figures"]
            assert [f["id"] for f in figures] == [d["name"] for d in declared], f"{name}: figures on the page"
            for fig in figures:
                number += 1
                where = f"{name} {fig['id']}"
                assert fig["number"].strip().rstrip(":.") == f"Figure {number}", f"{where}: numbered {fig['number']!r}"
                assert len(fig["caption"]) > len(fig["number"]) + 20, f"{where}: caption {fig['caption']!r}"
                assert f"attnbook run nbs/{name}.ipynb" in fig["caption"], f"{where}: the caption has no recipe"
                alt = (fig["alt"] or "").strip()
                assert alt and "/" not in alt and not alt.endswith(".png"), f"{where}: alt text {alt!r}"
                assert fig["natural"] > 0 and fig["shown"] > 0, f"{where}: the picture did not load"
                assert fig["natural"] / fig["shown"] <= MAX_SHRINK, (
                    f"{where}: drawn {fig['natural']} px wide, shown at {fig['shown']:.0f} px: its text is unreadable")
            for k, element in enumerate(browser.find_elements(By.CSS_SELECTOR, "figure"), start=1):
                browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", element)
                element.screenshot(str(screens / f"{name}-figure{k}.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    if undeclared:
        pytest.xfail(f"{', '.join(undeclared)}: no figure captions or alt texts declared yet (cell metadata "
                     "attnbook.figures, see attnbook.book_pages.split_figures)")


@pytest.mark.browser
def test_book_pages_log_no_errors(browser, server, screens):
    from selenium.webdriver.common.by import By

    for page in ("book/intro.html", "book/claims.html", "book/runs.html", "search.html", "genindex.html"):
        _open(browser, f"{server}/{page}")
        browser.execute_script("return new Promise(r => setTimeout(r, 300))")
        assert not _errors(browser), f"{page}: console errors: {_errors(browser)[:3]}"
        origins = browser.execute_script(
            "return performance.getEntriesByType('resource').map(r => new URL(r.name).origin)")
        assert set(origins) <= {server}, f"{page}: requests left the book: {set(origins) - {server}}"
        _check_text(page, browser.execute_script(PAGE_TEXT))
    _open(browser, f"{server}/book/claims.html")
    assert browser.find_elements(By.CSS_SELECTOR, "table tbody tr"), "the claims ledger has no rows"
    assert browser.find_elements(By.CSS_SELECTOR, ".claim-status")
    _shoot(browser, screens, "claims")
    _open(browser, f"{server}/book/runs.html")
    _shoot(browser, screens, "runs")
