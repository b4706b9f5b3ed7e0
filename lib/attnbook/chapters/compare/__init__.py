"""Chapter 6 — Where do they look? (``nbs/06_compare.ipynb``): config, pipeline, evaluation, figures, claims."""
