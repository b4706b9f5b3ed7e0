"""Chapter 3 — Region Grouping (``nbs/03_region_grouping.ipynb``): config, pipeline, evaluation, figures, claims."""
