"""Chapter 4 — Bounded logit attention (Baumhauer et al. 2021), ``nbs/04_bla.ipynb``.

Every experiment of the paper that can run here, plus what it could not measure (explanations against
ground truth). The method lives in :mod:`attnbook.methods.bla` (BLA, BLA-T, BLA-PH) and
:mod:`attnbook.methods.l2x` (L2X-F); this package holds the chapter:

* :mod:`.config` — ``BLAConfig``, ``PROFILES``, ``CHAPTER``, the run plan and the paper's numbers
  (torch-free: ``attnbook list`` stays instant).
* :mod:`.digits` — §4.1: the small CNN on 3 vs 8, baseline vs BLA-T over independent runs (Mann-Whitney U
  and an equivalence test).
* :mod:`.tasks` — §4.2 data: the frozen backbone F and datasets A, B, C (analogs calibrated so that BL is
  neither at a ceiling nor near chance) as cached features.
* :mod:`.heads` — §4.2 heads (BL, L2X-F, BLA, BLA-T, BLA-PH), their hard explanations against ground
  truth, and the paired Wilcoxon tests of Table 1.
* :mod:`.faithfulness` — §4.3, Table 2: LIME vs BLA-T's soft map and vs CAM.
* :mod:`.figures` — figures 2 and 3, Tables 1 and 2, the code-vs-paper ablation, the explorer widget.
* :mod:`.claims` — the numbers the prose quotes (one route: ``recorder.number``) and the claims ledger
  (every row through :func:`attnbook.ledger.record_claim`).

This file imports nothing: importing the package must not pull in torch.
"""
