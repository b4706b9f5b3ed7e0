"""Chapter 5's Figures 1, 3 and 5: BR-NPA's and B-CNN's RGB maps (§4.1) beside post-hoc explainers
(Grad-CAM, Grad-CAM++, guided Grad-CAM(++), the activation map), on the same test images.

Chapter: ``nbs/05_brnpa.ipynb``. The attention models are read through ``attend`` (maps and
``extras["norms"]``); the figures and the explorer that show these maps are in
:mod:`attnbook.chapters.brnpa.figures`.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from attnbook.chapters.brnpa.pipeline import ImageTask, Inputs
from attnbook.chapters.brnpa.studies import ResolutionStudy
from attnbook.data import records as R
from attnbook.explain.cam import model_activation_map
from attnbook.explain.gradcam import grad_attention
from attnbook.explain.guided_backprop import guided_backprop, guided_gradcam, saliency
from attnbook.explain.postprocess import upsample
from attnbook.models.backbones import Backbone
from attnbook.models.staged import ImageModel, StagedModel
from attnbook.viz.rgb_maps import rgb_attention


def image_model(inputs: Inputs, model: StagedModel) -> ImageModel:
    """``model`` behind the frozen prefix of ``inputs``: images in, logits (and attention) out."""
    return ImageModel(inputs.prefix, inputs.cut, model).eval()


def last_stage_name(model: ImageModel) -> str:
    """Dotted name of the module that outputs the last feature map (the explainers' layer)."""
    tail = model.model.tail
    if isinstance(tail, Backbone):
        return f"model.tail.{tail.stage_names[-1]}"
    if isinstance(tail, nn.Sequential):
        return f"model.tail.{[name for name, _ in tail.named_children()][-1]}"
    return f"prefix.{model.prefix.stage_names[-1]}"


def post_hoc_maps(model: ImageModel, images: torch.Tensor, target: torch.Tensor,
                  chunk: int = 32) -> dict[str, torch.Tensor]:
    """Grad-CAM, Grad-CAM++, guided Grad-CAM(++) and the activation map (AM) of ``model``'s last stage,
    ``[N, H, W]`` on the CPU, ``chunk`` images at a time. Paper: BR-NPA Figs. 1, 3 and 5.

    Guided Grad-CAM++ (Chattopadhyay et al. 2018, §3) = guided backprop ⊙ upsampled Grad-CAM++, reduced
    to a map like guided Grad-CAM (max over colour channels of the absolute value).
    """
    layer, size = last_stage_name(model), tuple(images.shape[-2:])
    columns: dict[str, list[torch.Tensor]] = defaultdict(list)
    for x, y in zip(images.split(chunk), target.split(chunk)):
        cam_pp = upsample(grad_attention(model, layer, x, y, "gradcam++"), size)  # [n, H, W]
        maps = {
            "Grad-CAM": upsample(grad_attention(model, layer, x, y, "gradcam"), size),
            "Grad-CAM++": cam_pp,
            "Guided Grad-CAM": saliency(guided_gradcam(model, x, y, layer=layer)),
            "Guided Grad-CAM++": saliency(guided_backprop(model, x, y) * cam_pp[:, None]),
            "AM": upsample(model_activation_map(model, x, layer=layer), size),
        }
        for name, m in maps.items():
            columns[name].append(m.detach().clamp(min=0).cpu())
    return {name: torch.cat(parts) for name, parts in columns.items()}


@dataclass
class Examples:
    """Test images with every method's map at image resolution."""

    images: torch.Tensor  # [N, 3, H, W]
    labels: torch.Tensor  # [N]
    masks: torch.Tensor | None  # [N, H, W] object masks (synthetic only)
    disc: torch.Tensor | None  # [N, H, W] discriminative-part masks (synthetic only)
    heat: dict[str, torch.Tensor]  # post-hoc method → [N, H, W]
    rgb: dict[str, torch.Tensor]  # attention model → [N, 3, H, W] RGB rendering (§4.1)
    weighted: dict[str, torch.Tensor]  # attention model → [N, H, W] norm-weighted mean map


def attention_models(study: ResolutionStudy) -> dict[str, StagedModel]:
    """The figures' attention models (first seed): B-CNN and BR-NPA at high resolution, BR-NPA at low."""
    return {"B-CNN": study.models["bcnn", "high"], "BR-NPA": study.models["brnpa", "high"],
            "BR-NPA low-res": study.models["brnpa", "low"]}


def explain_examples(inputs: Inputs, study: ResolutionStudy, task: ImageTask, n: int) -> Examples:
    """Every method on the first ``n`` test images, explaining the true class: the post-hoc methods on
    the low-resolution GAP CNN, the RGB maps (map k × ‖f_i‖, §4.1) of the attention models."""
    batch = next(iter(DataLoader(task.test, batch_size=min(n, len(task.test)))))
    images, labels = batch[R.IMAGE], batch[R.LABEL]
    device = next(study.models["gap", "low"].parameters()).device
    size = tuple(images.shape[-2:])
    heat = post_hoc_maps(image_model(inputs, study.models["gap", "low"]), images.to(device), labels.to(device))
    rgb, weighted = {}, {}
    for name, model in attention_models(study).items():
        with torch.no_grad():
            out = image_model(inputs, model).attend(images.to(device))
        norms = out.extras["norms"]  # [B, h, w]
        rgb[name] = rgb_attention(out.maps.cpu(), norms.cpu(), size)
        weighted[name] = upsample((out.maps * norms[:, None]).mean(1).cpu(), size).clamp(min=0)
    return Examples(images, labels, batch.get(R.MASK), batch.get(R.DISC_MASK), heat, rgb, weighted)
