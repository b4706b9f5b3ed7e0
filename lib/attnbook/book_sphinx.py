"""Sphinx extension of the book (``_config.yml`` → ``sphinx.extra_extensions``): pages that paint their
text first and log no errors.

* **Widgets after the text.** myst-nb puts a page's whole widget state (megabytes of base64 PNG) in its
  ``<head>`` and loads the 3.6 MB widget bundle there synchronously: a blank page until all of it has
  arrived. Here the state goes to ``<page>.widgets.js`` beside the page (its PNGs re-encoded by
  :func:`attnbook.viz.plots.compact_png`) and one deferred ``_static/widgets/loader.js`` loads it, then
  RequireJS and the bundle, once the page has loaded. Script files (not ``fetch``) so that a book opened
  from disk (``file://``) keeps its widgets.
* **No thebe.** The book has no kernel: sphinx-thebe's snippet (which Jupyter Book 1 adds twice →
  ``Identifier 'THEBE_JS_URL' has already been declared``), script, stylesheet and per-page config go.
  Other scripts added twice are kept once.
* The loader gives MathJax 3 the one MathJax 2 call the widget manager makes (``MathJax.Hub.Queue``).
"""
from __future__ import annotations

import base64
import json
import posixpath
from pathlib import Path
from typing import Any

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGETS = "widgets/"  # the vendored widget JavaScript under _static/ (attnbook.publish.ASSETS)
LOADER = "widgets/loader.js"
STATE_SUFFIX = ".widgets.js"
STATE_GLOBAL = "attnbookWidgetState"

LOADER_JS = """\
/* attnbook: load a page's ipywidgets after its text (attnbook.book_sphinx). */
(function () {
  var me = document.currentScript;
  var folder = new URL('.', me.src).href;
  var state = new URL(me.getAttribute('data-state'), document.baseURI).href;
  function load(src) {
    return new Promise(function (resolve, reject) {
      var s = document.createElement('script');
      s.src = src;
      s.onload = resolve;
      s.onerror = function () { reject(new Error('attnbook: cannot load ' + src)); };
      document.head.appendChild(s);
    });
  }
  function mathjax2Api() {
    // The widget manager typesets labels with MathJax 2 (MathJax.Hub.Queue); the book ships MathJax 3.
    var mj = window.MathJax;
    if (!mj || mj.Hub) { return; }
    mj.Hub = {Queue: function (job) {
      var node = Array.isArray(job) ? job[2] : undefined;
      var m = window.MathJax;
      var ready = m.startup && m.startup.promise ? m.startup.promise : Promise.resolve();
      ready.then(function () {
        if (m.typesetPromise) { return m.typesetPromise(node ? [node] : undefined); }
      }).catch(function () {});
    }};
  }
  function start() {  // after the text and the figures: the state and RequireJS at once, then the bundle
    Promise.all([load(state), load(folder + 'require.js')]).then(function () {
      var tag = document.createElement('script');
      tag.type = '@STATE_TYPE@';
      tag.textContent = window.@STATE_GLOBAL@;
      document.body.appendChild(tag);
      mathjax2Api();
      return load(folder + 'assets-path.js');
    }).then(function () {
      return load(folder + 'embed-amd.js');
    }).catch(function (err) { console.warn(err.message); });
  }
  if (document.readyState === 'complete') { start(); } else { window.addEventListener('load', start); }
})();
""".replace("@STATE_TYPE@", WIDGET_STATE).replace("@STATE_GLOBAL@", STATE_GLOBAL)


def compact_state(state_text: str) -> str:
    """The widget state with every PNG buffer re-encoded by :func:`attnbook.viz.plots.compact_png`."""
    from attnbook.viz.plots import compact_png

    state = json.loads(state_text)
    for model in state.get("state", {}).values():
        for buffer in model.get("buffers", []):
            if buffer.get("encoding") != "base64":
                continue
            raw = base64.b64decode(buffer["data"])
            if raw.startswith(b"\x89PNG"):
                buffer["data"] = base64.b64encode(compact_png(raw)).decode()
    return json.dumps(state, separators=(",", ":"))


def state_script(state_text: str) -> str:
    """The ``<page>.widgets.js`` file: the state JSON as one JavaScript string."""
    return f"window.{STATE_GLOBAL} = {json.dumps(compact_state(state_text))};\n"


def _has_math(doctree: Any) -> bool:
    from docutils import nodes

    return any(True for _ in doctree.findall(lambda n: isinstance(n, (nodes.math, nodes.math_block))))


def _is_thebe(filename: str, body: str) -> bool:
    return "thebe" in filename or "THEBE_JS_URL" in body


def page_assets(app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """``html-page-context``: drop thebe and duplicates; move the widget state and scripts behind the loader."""
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    kept, seen, state = [], set(), None
    for js in scripts:
        filename = str(js.filename or "")
        body = js.attributes.get("body", "")
        if _is_thebe(filename, body):
            continue
        if js.attributes.get("type") == WIDGET_STATE:
            state = body
            continue
        if filename.startswith("_static/" + WIDGETS):
            continue  # the loader brings them
        key = (filename, body, js.attributes.get("type"))
        if key in seen:
            continue
        seen.add(key)
        kept.append(js)
    scripts[:] = kept
    if doctree is not None and not _has_math(doctree):  # Sphinx gives the root page MathJax for its children's math
        scripts[:] = [js for js in scripts if "mathjax" not in str(js.filename or "").lower()
                      and "window.MathJax" not in js.attributes.get("body", "")]
    css = context.get("css_files")
    if isinstance(css, list):
        css[:] = [c for c in css if "thebe" not in str(c.filename)]
    if state is not None:
        target = Path(app.builder.outdir) / (pagename + STATE_SUFFIX)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(state_script(state))
        app.add_js_file(LOADER, defer="defer", priority=900,
                        **{"data-state": posixpath.basename(pagename) + STATE_SUFFIX})


def drop_thebe_config(app: Any, doctree: Any, docname: str) -> None:
    """``doctree-resolved`` (after sphinx-thebe): remove the per-page thebe config it appends."""
    from docutils import nodes

    for node in list(doctree.findall(nodes.raw)):
        text = node.astext()
        if "text/x-thebe-config" in text or text.strip().startswith("<script>kernelName"):
            node.parent.remove(node)


def setup(app: Any) -> dict[str, Any]:
    """Register the handlers (the loader itself is vendored with the widget JavaScript by
    :func:`attnbook.publish.vendor_assets`)."""
    app.connect("doctree-resolved", drop_thebe_config, priority=900)
    app.connect("html-page-context", page_assets, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
