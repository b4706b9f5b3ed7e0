"""Loaders of the papers' real datasets, one module per family; each yields the records of
:mod:`attnbook.data.records` and exposes ``.info``.

``attnbook.data.catalog`` maps names to loaders (``load_dataset("cub", split="train")``) and layouts;
``attnbook data status | verify | prepare`` (:mod:`attnbook.data.commands`) puts the files in place.
:mod:`~attnbook.data.real.integrity` (file hashes, content manifests) and :mod:`~attnbook.data.real.pickles`
(data-only unpickling) serve the loaders and the command. The modules are not imported here, so that
importing the catalog stays cheap and free of cycles.
"""
