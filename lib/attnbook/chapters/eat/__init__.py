"""Chapter 1 — EAT (``nbs/01_eat.ipynb``): config, pipeline, evaluation, figures, claims."""
