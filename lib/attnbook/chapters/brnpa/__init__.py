"""Chapter 5 — BR-NPA (Gomez et al.), ``nbs/05_brnpa.ipynb``: non-parametric ranked attention against B-CNN
and a plain CNN.

* :mod:`~attnbook.chapters.brnpa.config` — settings, profiles, ``CHAPTER`` and the paper's numbers (no torch);
* :mod:`~attnbook.chapters.brnpa.pipeline` — data, models, stage-A / stage-B training, distillation (§3.1, Eq. 1);
* :mod:`~attnbook.chapters.brnpa.evaluation` — accuracy, sparsity, anchors and ground-truth mass per test image;
* :mod:`~attnbook.chapters.brnpa.studies` — Tables 1/6 + Fig. 8, Tables 4/5, the code vs the paper, Fig. 9;
* :mod:`~attnbook.chapters.brnpa.explanations` — Figs. 1/3/5: RGB maps beside post-hoc explainers;
* :mod:`~attnbook.chapters.brnpa.figures` — tables, figures and the explorer widget;
* :mod:`~attnbook.chapters.brnpa.claims` — the numbers the text quotes and the claims ledger.
"""
