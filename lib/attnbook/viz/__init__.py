"""Figures and widgets: overlays, sample grids, and kernel-free ipywidgets explorers."""
