"""Model outputs on in-domain counterfactuals, rendered on demand and cached per (image, variant).

Every FunnyBirds quantity asks the model about the same image with some parts removed (PC, DC, D, SD,
TS) or its background changed (D, BI). The answers depend on the model only, not on the explainer, so
one :class:`VariantLogits` per (model, images) serves every explainer: each variant is rendered by
:func:`attnbook.data.interventions.rerender` and classified once, the first time it is asked for.
Part subsets are bit masks of the *kept* parts (bit k: ``spec.parts[k]`` drawn); ``full`` keeps all.
:meth:`VariantLogits.hybrids` renders and classifies the hybrid birds of the target-sensitivity check once.
"""
from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor, nn

from attnbook.data.interventions import HybridDesign, keep_from_bits, rerender
from attnbook.data.spec import BenchmarkSpec

__all__ = ["VariantLogits", "bits_of"]


def bits_of(parts: Tensor) -> Tensor:
    """``[..., P]`` bool → ``[...]`` long bit masks (bit k set where ``parts[..., k]``)."""
    return (parts.long() << torch.arange(parts.shape[-1], device=parts.device)).sum(dim=-1)


class VariantLogits:
    """Cached logits ``[K]`` of ``model`` on re-rendered variants of images ``indices`` of ``split``."""

    def __init__(self, model: nn.Module, spec: BenchmarkSpec, split: str, indices: Tensor, original_logits: Tensor,
                 *, batch_size: int = 256, device: torch.device | str | None = None,
                 render_chunk: int = 2048, render_cache: dict[tuple, Any] | None = None
                 ) -> None:
        self.model, self.spec, self.split = model, spec, split
        # rendered images by (kind, split, image index, variant), shareable between models of the same spec
        self.render_cache = render_cache if render_cache is not None else {}
        self.indices = torch.as_tensor(indices, dtype=torch.long)
        self.num_parts = len(spec.parts)
        self.full = (1 << self.num_parts) - 1
        self.batch_size, self.render_chunk = batch_size, render_chunk
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        n, k = len(self.indices), original_logits.shape[1]
        self._parts = torch.full((n, self.full + 1, k), float("nan"))
        self._parts_done = torch.zeros(n, self.full + 1, dtype=torch.bool)
        self._parts[:, self.full] = original_logits.detach().float().cpu()  # the unchanged image
        self._parts_done[:, self.full] = True
        self._habitat = torch.full((n, spec.num_habitats, k), float("nan"))
        self._habitat_done = torch.zeros(n, spec.num_habitats, dtype=torch.bool)
        self._hybrids: tuple[Tensor, dict[str, Tensor], Tensor] | None = None
        self.rendered = 0  # variants rendered and classified so far
        self.seconds = 0.0  # time spent rendering and classifying them

    def _classify(self, images: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.cat([self.model(images[i:i + self.batch_size].to(self.device)).float().cpu()
                              for i in range(0, len(images), self.batch_size)])

    def _fill(self, table: Tensor, done: Tensor, rows: Tensor, cols: Tensor, render: str) -> Tensor:
        rows, cols = rows.flatten().long().cpu(), cols.flatten().long().cpu()
        need = ~done[rows, cols]
        if need.any():
            start = time.perf_counter()
            pairs = torch.stack([rows[need], cols[need]], dim=1).unique(dim=0)
            for lo in range(0, len(pairs), self.render_chunk):
                r, c = pairs[lo:lo + self.render_chunk].unbind(1)
                table[r, c] = self._classify(self._images(render, self.indices[r], c))
                done[r, c] = True
                self.rendered += len(r)
            self.seconds += time.perf_counter() - start
        return table[rows, cols]

    def _images(self, render: str, index: Tensor, variant: Tensor) -> Tensor:
        """Images of ``index`` [M] under ``variant`` [M] (kept-part bits or habitat), from the render cache where
        another model of the same spec already asked for them; the rest rendered in one batch and cached."""
        keys = [(render, self.split, int(i), int(v)) for i, v in zip(index.tolist(), variant.tolist())]
        missing = [j for j, key in enumerate(keys) if key not in self.render_cache]
        if missing:
            at = torch.tensor(missing)
            if render == "parts":
                fresh = rerender(self.spec, self.split, index[at], remove=~keep_from_bits(variant[at],
                                                                                        self.num_parts))["image"]
            else:
                fresh = rerender(self.spec, self.split, index[at], habitat=variant[at])["image"]
            for j, image in zip(missing, fresh):
                self.render_cache[keys[j]] = image
        return torch.stack([self.render_cache[key] for key in keys])

    def parts(self, rows: Tensor, kept: Tensor) -> Tensor:
        """Logits ``[M, K]`` of images ``rows`` [M] (positions in ``indices``) drawn with the parts of bit
        masks ``kept`` [M] only."""
        return self._fill(self._parts, self._parts_done, rows, kept, "parts")

    def habitats(self, rows: Tensor, habitat: Tensor) -> Tensor:
        """Logits ``[M, K]`` of images ``rows`` [M] in front of habitats ``habitat`` [M]."""
        return self._fill(self._habitat, self._habitat_done, rows, habitat, "habitat")

    def single_deletions(self) -> Tensor:
        """Logits ``[N, P, K]`` with each part removed alone."""
        n = len(self.indices)
        rows = torch.arange(n).repeat_interleave(self.num_parts)
        kept = (self.full ^ (1 << torch.arange(self.num_parts))).repeat(n)
        return self.parts(rows, kept).view(n, self.num_parts, -1)

    def hybrids(self, design: HybridDesign, labels: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The hybrid of every image (:func:`attnbook.data.interventions.hybrid_design`: its own class's parts
        ``own``, the partner's version of ``donated``): its sample tensors (image, masks, …) and the model's
        logits ``[3, N, K]`` on the hybrid, on it without its own parts (O1) and without the donated ones (O2).
        Rendered and classified on the first call, cached (``labels`` must be the images' labels)."""
        if self._hybrids is not None and torch.equal(self._hybrids[0], labels):
            return self._hybrids[1], self._hybrids[2]
        start = time.perf_counter()
        n = len(self.indices)
        key = ("hybrids", self.split, tuple(self.indices.tolist()), tuple(labels.tolist()))
        if key not in self.render_cache:
            donor = design.donors(labels)
            index = self.indices.repeat(3)
            remove = torch.cat([torch.zeros_like(design.own[labels]), design.own[labels], design.donated[labels]])
            self.render_cache[key] = rerender(self.spec, self.split, index, donor=donor.repeat(3, 1), remove=remove)
        rendered = self.render_cache[key]
        logits = self._classify(rendered["image"]).view(3, n, -1)
        data = {k: v[:n] for k, v in rendered.items()}
        self._hybrids = (labels.clone(), data, logits)
        self.rendered += 3 * n
        self.seconds += time.perf_counter() - start
        return data, logits
