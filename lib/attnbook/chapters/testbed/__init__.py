"""Chapter 0 — the testbed (``nbs/00_testbed.ipynb``): config, pipeline, figures, claims."""
