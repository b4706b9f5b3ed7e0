"""The published book: built from the smoke runs, then opened in headless Chromium.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). Outside CI the
browser tests skip with a message when they are missing; in CI (``CI`` set) they fail instead.
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading

import pytest

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-quic", "--window-size=1400,2000")


def test_pages_exist_and_need_no_cdn(built_book):
    from attnbook.chapters import notebook_names

    pages = ["index.html", "book/claims.html"] + [f"nbs/{n}.html" for n in notebook_names()]
    for page in pages:
        assert (built_book / page).is_file(), f"{page} missing from the book"
    external = re.compile(r'<(?:script[^>]*\ssrc|link[^>]*\shref)="(https?:)?//', re.I)
    for page in pages:
        html = (built_book / page).read_text()
        assert not external.search(html), f"{page} loads {external.search(html).group(0)}…"
    chapter = (built_book / f"nbs/{notebook_names()[0]}.html").read_text()
    assert "application/vnd.jupyter.widget-state+json" in chapter and "_static/widgets/embed-amd.js" in chapter
    log = (built_book.parent / "build.log").read_text()
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    assert not warnings, f"the book build warned: {warnings[:3]}"
    claims = (built_book / "book/claims.html").read_text()
    assert claims.count("<tr") >= 2
    assert any(status in claims for status in ("reproduced", "inconclusive", "not run"))


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
        message = "headless Chromium needs Debian's chromium + chromium-driver (apt-get install chromium chromium-driver)"
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


VISIBLE_WIDGET_IMAGES = """
return [...document.querySelectorAll('img.widget-image')]
  .filter(e => e.offsetParent !== null && e.naturalWidth > 0).map(e => e.src.slice(-64));
"""


def _wait(browser, script, timeout=30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(lambda d: d.execute_script(script))


@pytest.mark.browser
def test_chapter_figures_and_widgets_render_and_respond(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from attnbook.chapters import notebook_names

    for name in notebook_names():
        browser.get(f"{server}/nbs/{name}.html")
        figures = browser.execute_script(
            "return [...document.querySelectorAll('.cell_output img')].filter(i => i.naturalWidth > 0).length")
        assert figures >= 2, f"{name}: only {figures} rendered figures"
        _wait(browser, "return document.querySelectorAll('.widget-slider, .jupyter-widgets .widget-hslider').length > 0")
        before = _wait(browser, VISIBLE_WIDGET_IMAGES)
        assert len(before) == 1, f"{name}: expected one visible explorer image, saw {len(before)}"

        handle = browser.find_element(By.CSS_SELECTOR, ".noUi-handle")
        handle.click()
        handle.send_keys(Keys.ARROW_RIGHT)
        after_slider = _wait(browser, VISIBLE_WIDGET_IMAGES)
        assert after_slider != before, f"{name}: moving the image slider did not change the view"

        buttons = browser.find_elements(By.CSS_SELECTOR, ".widget-toggle-buttons button")
        assert len(buttons) >= 2
        buttons[1].click()
        after_button = _wait(browser, VISIBLE_WIDGET_IMAGES)
        assert after_button != after_slider, f"{name}: choosing another method did not change the view"

        failed = [e["message"] for e in browser.get_log("browser")  # the browser's own favicon probe aside
                  if e["level"] == "SEVERE" and ("Failed to load" in e["message"] or "net::" in e["message"])
                  and "favicon.ico" not in e["message"]]
        assert not failed, f"{name}: failed requests: {failed[:3]}"
        origins = browser.execute_script(
            "return performance.getEntriesByType('resource').map(r => new URL(r.name).origin)")
        assert set(origins) <= {server}, f"{name}: requests left the book: {set(origins) - {server}}"


@pytest.mark.browser
def test_claims_ledger_page_shows_a_table(browser, server):
    from selenium.webdriver.common.by import By

    browser.get(f"{server}/book/claims.html")
    rows = browser.find_elements(By.CSS_SELECTOR, "table tbody tr")
    assert rows, "the claims ledger has no rows"
    assert any(s in browser.page_source for s in ("reproduced", "inconclusive", "not run"))
