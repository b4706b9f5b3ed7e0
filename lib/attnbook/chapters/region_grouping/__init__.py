"""Chapter 3 — Region Grouping (``nbs/03_region_grouping.ipynb``): config, pipeline, real (the paper profile's
data sets), evaluation, figures, claims."""
