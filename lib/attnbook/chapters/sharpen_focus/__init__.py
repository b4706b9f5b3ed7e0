"""Chapter 2 — Sharpen Focus (``nbs/02_sharpen_focus.ipynb``): config, pipeline, evaluation, figures, claims."""
