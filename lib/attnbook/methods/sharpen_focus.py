"""Sharpen Focus — attention separability and consistency as training losses (Wang et al., "Sharpen Focus:
Learning with Attention Separability and Consistency", ICCV 2019).

**Attention** (§3.1) of a class score ``Y^c`` at a feature map ``F`` ``[B, K, h, w]``, from the gradient
``g = ∂Y^c/∂F``, after a ReLU:

* Grad-CAM (Eq. 1–2): ``A = ReLU(Σ_k α_k F^k)``, ``α_k = (1/Z) Σ_ij g^k_ij``;
* channel-wise ``A_ch`` (Eq. 3–4): ``α_k = (1/Z) Σ_ij ReLU(g^k_ij)`` — positive gradients only;
* pixel-wise ``A_px`` (Eq. 5): ``A = ReLU((1/K) Σ_k g^k ⊙ F^k)``.

The weightings are :data:`attnbook.explain.gradcam.WEIGHTINGS` (the post-hoc explainers' own, oracle-tested);
the activations are recorded with :func:`attnbook.explain.gradcam.capture_activations`. The gradient step is
written here rather than with :func:`~attnbook.explain.gradcam.attention_maps` because training needs what that
function does not offer: two class scores (target and confuser) from one forward — one ``autograd.grad`` with a
*batched* seed ``[2, B, K]`` (``is_grads_batched``) or two calls (the default: on the CPU the batched call, a
``vmap`` over the backward, measured ~5–10 % slower; the chapter measures both) — and the port's alternatives
(a logits-scaled seed, gradients outside the graph).

**Losses** (§3.2–3.4), per sample, averaged over the batch:

* the most confusing class: the top-1 prediction if it is wrong, else the second-highest score
  (:func:`most_confusing_class`);
* ``Mask = sigmoid(ω (Â^last_T − σ))`` with ``σ = 0.55·max Â^last_T``, ``ω = 100`` (Eq. 7), ``Â`` the target's
  last-layer attention normalised per sample (``Â = A / max A``, so ``σ = 0.55``);
* ``sIoU = 2 Σ_ij min(A^T, A^Conf)·Mask / Σ_ij (A^T + A^Conf)`` (Eq. 6, :func:`attnbook.metrics.soft_iou`) at
  the inner and the last layer; the inner layer uses the last layer's mask resized to its map (bilinear);
* ``L_ac = α − Σ_ij A^in_T·Mask / Σ_ij A^in_T`` (Eq. 8, α = 1);
* ``L = L_cls + sIoU_in + sIoU_last + L_ac`` (Eq. 9), ``L_cls`` cross-entropy, or the multilabel soft-margin loss
  with a multi-hot seed over the present classes (§4.3).

**Choices the paper leaves open** (papers.md §2), each a field of :class:`SharpenFocusOptions` whose default
is the paper's reading; :data:`PORT_OPTIONS` are the unofficial PyTorch ports' choices:

* ``grad_seed``: ``"ones"`` — ``∂(Σ_b Y^c_b)/∂F`` (each sample's own gradient; samples couple only through
  batch-norm in training mode) — or ``"logits"``, the port's ``score.backward(gradient=score)``: every gradient
  scaled by the batch's summed score;
* ``grad_path``: ``"through"`` — gradients taken with ``create_graph=True`` so the losses train the network
  through the channel weights / pixel weights as well as through ``F`` — or ``"detached"`` (the port's
  backward hooks: the weights are constants);
* ``normalize``: ``"sample"`` (each map over its own max), ``"batch"`` (the port: min–max over the whole batch,
  constants) or ``"none"`` (raw maps; σ still 0.55 of each sample's max);
* ``eps`` in every denominator; ``alpha`` of L_ac; ``weight`` on the three attention terms (paper: 1);
* the ReLU on gradients of ``A_ch``: without it ``A_ch`` *is* Grad-CAM (Eq. 2 vs Eq. 3), so that ablation is
  ``attention="gradcam"`` — Table 1's Grad-CAM row.

Multi-label (``multilabel=True``): ``L_cls`` is the multilabel soft-margin loss; ``multilabel_target="union"``
(default, the paper: "one-hot encoding is applied to the corresponding dimensions") seeds the target with the
multi-hot vector of the present classes, the confuser is the highest-scoring absent class; ``"each"`` makes one
pair per present class (each against that confuser) and averages the pairs.

Chapter: ``nbs/02_sharpen_focus.ipynb``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attnbook import metrics
from attnbook.explain.gradcam import WEIGHTINGS, capture_activations
from attnbook.explain.postprocess import upsample
from attnbook.methods.base import Attention, check_features

ATTENTIONS = ("gradcam", "channelwise", "pixelwise")  # keys of attnbook.explain.gradcam.WEIGHTINGS
ATTENTION_NAMES = {"gradcam": "Grad-CAM", "channelwise": "A_ch", "pixelwise": "A_px"}
GRAD_SEEDS = ("ones", "logits")
GRAD_PATHS = ("through", "detached")
NORMALIZATIONS = ("sample", "batch", "none")
BACKWARDS = ("batched", "separate")
MULTILABEL_TARGETS = ("union", "each")
LAYERS = ("inner", "last")


@dataclass(frozen=True)
class SharpenFocusOptions:
    """Every choice of the method; defaults are the paper's reading (module docstring)."""

    attention: str = "channelwise"  # the attention the losses use: gradcam | channelwise (A_ch) | pixelwise (A_px)
    grad_seed: str = "ones"  # ones: ∂ΣY^c/∂F | logits: the port's score-scaled seed
    grad_path: str = "through"  # through: create_graph=True | detached: gradients are constants (port)
    normalize: str = "sample"  # sample | batch (port) | none
    sigma: float = 0.55  # Eq. 7: threshold, a fraction of the max
    omega: float = 100.0  # Eq. 7: sigmoid slope
    alpha: float = 1.0  # Eq. 8
    eps: float = 1e-8  # every denominator
    weight: float = 1.0  # on sIoU_in + sIoU_last + L_ac (paper: 1)
    backward: str = "separate"  # separate: one autograd.grad per class | batched: one call with a [2, B, K] seed
    multilabel_target: str = "union"  # union: multi-hot seed (paper) | each: one pair per present class

    def __post_init__(self) -> None:
        choices = {"attention": ATTENTIONS, "grad_seed": GRAD_SEEDS, "grad_path": GRAD_PATHS,
                   "normalize": NORMALIZATIONS, "backward": BACKWARDS, "multilabel_target": MULTILABEL_TARGETS}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"SharpenFocusOptions.{name}={getattr(self, name)!r} is not one of {valid}")
        if not 0 < self.sigma < 1 or self.omega <= 0 or self.eps <= 0 or self.weight < 0:
            raise ValueError(f"need 0 < sigma < 1, omega > 0, eps > 0 and weight ≥ 0; got sigma={self.sigma}, "
                             f"omega={self.omega}, eps={self.eps}, weight={self.weight}")

    def replace(self, **changes: Any) -> SharpenFocusOptions:
        """A copy with ``changes`` (validated); unknown names raise ``ValueError``."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown SharpenFocusOptions field(s) {unknown}; valid: {sorted(known)}")
        return SharpenFocusOptions(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})


DEFAULT_OPTIONS = SharpenFocusOptions()  # the paper's reading

# The unofficial ports' choices (papers.md §2, "What the authors' public code does differently").
PORT_OPTIONS: dict[str, Any] = {"grad_seed": "logits", "normalize": "batch", "grad_path": "detached"}


# ------------------------------------------------------------------------------------------------
# which classes
# ------------------------------------------------------------------------------------------------
def most_confusing_class(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The most confusing class ``[B]``: the top-1 prediction if it is wrong, else the second-highest score
    (§3.2; ties broken by ``topk``'s order). Needs at least two classes."""
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"need logits [B, K] with K ≥ 2, got {tuple(logits.shape)}")
    top2 = logits.detach().topk(2, dim=1).indices  # [B, 2]
    return torch.where(top2[:, 0] == labels, top2[:, 1], top2[:, 0])


def multilabel_confusing_class(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-label: the highest-scoring *absent* class ``[B]`` and whether there is one ``[B]`` bool."""
    present = targets > 0.5
    masked = logits.detach().masked_fill(present, float("-inf"))
    return masked.argmax(dim=1), ~present.all(dim=1)


def one_hot(classes: torch.Tensor, num_classes: int, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Seed weights ``[B, K]``: one-hot rows of ``classes``, zero rows where ``valid`` is False."""
    w = F.one_hot(classes.long(), num_classes).float()
    return w if valid is None else w * valid[:, None].float()


# ------------------------------------------------------------------------------------------------
# gradients and maps
# ------------------------------------------------------------------------------------------------
def class_gradients(logits: torch.Tensor, activations: Sequence[torch.Tensor], seeds: Sequence[torch.Tensor],
                    options: SharpenFocusOptions) -> list[list[torch.Tensor]]:
    """``∂(Σ_bk W_bk Y_bk)/∂F`` for each seed ``W`` ``[B, K]`` and each recorded map ``F``: ``[seed][layer]``.

    One ``autograd.grad`` for all seeds (``backward="batched"``: the seeds stacked ``[S, B, K]`` with
    ``is_grads_batched``) or one per seed; the forward graph is kept for the loss's backward. ``grad_seed="logits"``
    scales seed ``W``'s gradients by ``Σ_bk W_bk Y_bk`` (the port). ``grad_path="through"`` builds the graph of the
    gradients (``create_graph``), ``"detached"`` returns constants."""
    create = options.grad_path == "through" and torch.is_grad_enabled()
    weights = [w.to(logits.dtype) for w in seeds]
    if options.grad_seed == "logits":
        weights = [w * (logits.detach() * w).sum() for w in weights]
    activations = list(activations)
    if options.backward == "batched" and len(weights) > 1:
        grads = torch.autograd.grad(logits, activations, grad_outputs=torch.stack(weights), is_grads_batched=True,
                                    create_graph=create, retain_graph=True)  # each [S, B, K, h, w]
        return [[g[s] for g in grads] for s in range(len(weights))]
    return [list(torch.autograd.grad(logits, activations, grad_outputs=w, create_graph=create, retain_graph=True))
            for w in weights]


def attention_map(activation: torch.Tensor, grad: torch.Tensor, attention: str) -> torch.Tensor:
    """``ReLU(weighting(F, g))`` ``[B, h, w]`` — Grad-CAM, ``A_ch`` or ``A_px`` (Eq. 1–5)."""
    if attention not in ATTENTIONS:
        raise ValueError(f"unknown attention {attention!r}; choose one of {ATTENTIONS}")
    return torch.relu(WEIGHTINGS[attention](activation, grad))


def normalize_maps(maps: torch.Tensor, mode: str = "sample", eps: float = 1e-8) -> torch.Tensor:
    """``"sample"``: ``A / (max_ij A + eps)`` per map (maps are ≥ 0, so 0 stays 0 and the max becomes 1);
    ``"batch"``: ``(A − min) / (max − min + eps)`` with the min and max over the whole batch, as constants
    (the port); ``"none"``: ``A``. ``[B, h, w] -> [B, h, w]``."""
    if mode == "sample":
        return maps / (maps.amax(dim=(-2, -1), keepdim=True) + eps)
    if mode == "batch":
        lo, hi = maps.detach().min(), maps.detach().max()
        return (maps - lo) / (hi - lo + eps)
    if mode == "none":
        return maps
    raise ValueError(f"unknown normalisation {mode!r}; choose one of {NORMALIZATIONS}")


def soft_mask(last_target: torch.Tensor, sigma: float = 0.55, omega: float = 100.0,
              mode: str = "sample") -> torch.Tensor:
    """Eq. 7: ``sigmoid(ω (A − σ·max A))`` ``[B, h, w]`` on the *normalised* last-layer target map; the max is the
    sample's (``"sample"``, ``"none"``) or the batch's (``"batch"``, as the port)."""
    top = last_target.amax() if mode == "batch" else last_target.amax(dim=(-2, -1), keepdim=True)
    return torch.sigmoid(omega * (last_target - sigma * top))


def soft_iou(target: torch.Tensor, confuser: torch.Tensor, mask: torch.Tensor | None = None,
             eps: float = 1e-8) -> torch.Tensor:
    """Eq. 6: ``2 Σ min(A^T, A^Conf)·Mask / Σ (A^T + A^Conf)`` ``[B]`` (:func:`attnbook.metrics.soft_iou`)."""
    return metrics.soft_iou(target, confuser, mask, eps=eps)


def consistency_loss(inner_target: torch.Tensor, mask: torch.Tensor, alpha: float = 1.0,
                     eps: float = 1e-8) -> torch.Tensor:
    """Eq. 8: ``α − Σ A^in·Mask / (Σ A^in + eps)`` ``[B]``, the mask at the inner map's size."""
    if inner_target.shape != mask.shape:
        raise ValueError(f"inner map {tuple(inner_target.shape)} and mask {tuple(mask.shape)} differ; resize the mask")
    return alpha - (inner_target * mask).sum(dim=(-2, -1)) / (inner_target.sum(dim=(-2, -1)) + eps)


# ------------------------------------------------------------------------------------------------
# the losses
# ------------------------------------------------------------------------------------------------
@dataclass
class SharpenFocusOutput:
    """One batch: the total loss (Eq. 9) and its terms (batch means), the classes and the maps the losses saw."""

    logits: torch.Tensor  # [B, K]
    loss: torch.Tensor  # L_cls + weight · (sIoU_in + sIoU_last + L_ac)
    classification: torch.Tensor
    siou_inner: torch.Tensor
    siou_last: torch.Tensor
    consistency: torch.Tensor
    target: torch.Tensor  # [B] (single-label) or [B, K] multi-hot seed
    confuser: torch.Tensor  # [B]
    maps: dict[str, torch.Tensor] = field(default_factory=dict)  # target/confuser × inner/last, mask (normalised)

    def logs(self) -> dict[str, torch.Tensor]:
        """The detached terms, for the training loop's logs."""
        return {"cls": self.classification.detach(), "siou_inner": self.siou_inner.detach(),
                "siou_last": self.siou_last.detach(), "l_ac": self.consistency.detach()}


def _pair_losses(target: Sequence[torch.Tensor], confuser: Sequence[torch.Tensor], options: SharpenFocusOptions
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Per-sample sIoU_in, sIoU_last and L_ac ``[B]`` of one (target, confuser) pair of raw maps at both layers."""
    norm = [normalize_maps(m, options.normalize, options.eps) for m in (*target, *confuser)]
    t_in, t_last, c_in, c_last = norm
    mask = soft_mask(t_last, options.sigma, options.omega, options.normalize)
    mask_in = upsample(mask, tuple(t_in.shape[-2:]))
    siou_in = soft_iou(t_in, c_in, mask_in, options.eps)
    siou_last = soft_iou(t_last, c_last, mask, options.eps)
    l_ac = consistency_loss(t_in, mask_in, options.alpha, options.eps)
    maps = {"target_inner": t_in, "target_last": t_last, "confuser_inner": c_in, "confuser_last": c_last,
            "mask_last": mask}
    return siou_in, siou_last, l_ac, maps


def sharpen_focus_losses(logits: torch.Tensor, activations: Sequence[torch.Tensor], labels: torch.Tensor,
                         options: SharpenFocusOptions = DEFAULT_OPTIONS, multilabel: bool = False
                         ) -> SharpenFocusOutput:
    """Eq. 6–9 for one batch from the logits and the recorded ``(inner, last)`` maps of the same forward.

    ``labels``: class indices ``[B]``, or multi-hot ``[B, K]`` with ``multilabel=True``."""
    if len(activations) != 2:
        raise ValueError(f"need the inner and the last layer's maps, got {len(activations)}")
    num_classes = logits.shape[1]
    if multilabel:
        classification = F.multilabel_soft_margin_loss(logits, labels.float())
        confuser, valid = multilabel_confusing_class(logits, labels)
        present = labels.float() > 0.5
        if options.multilabel_target == "union":
            targets = [present.float()]
        else:  # one pair per present class: slot k holds each sample's k-th present class (zero rows past its count)
            order = present.float().argsort(dim=1, descending=True, stable=True)
            targets = [one_hot(order[:, k], num_classes, present.gather(1, order[:, k:k + 1])[:, 0])
                       for k in range(int(present.sum(1).max()))]
        target_seed = present.float()
    else:
        classification = F.cross_entropy(logits, labels)
        confuser, valid = most_confusing_class(logits, labels), torch.ones_like(labels, dtype=torch.bool)
        targets = [one_hot(labels, num_classes)]
        target_seed = labels
    grads = class_gradients(logits, activations, [*targets, one_hot(confuser, num_classes, valid)], options)
    conf_maps = [attention_map(a, g, options.attention) for a, g in zip(activations, grads[-1])]
    terms, weights, maps = [], [], {}
    for k, seed in enumerate(targets):
        t_maps = [attention_map(a, g, options.attention) for a, g in zip(activations, grads[k])]
        siou_in, siou_last, l_ac, pair_maps = _pair_losses(t_maps, conf_maps, options)
        terms.append(torch.stack([siou_in, siou_last, l_ac]))  # [3, B]
        weights.append((seed.sum(1) > 0).float() * valid.float())  # pairs that exist
        maps = maps or pair_maps
    w = torch.stack(weights)  # [P, B]
    per_sample = (torch.stack(terms) * w[:, None]).sum(0) / w.sum(0).clamp(min=1)  # [3, B]
    siou_in, siou_last, l_ac = (per_sample.sum(1) / valid.float().sum().clamp(min=1)).unbind(0)
    loss = classification + options.weight * (siou_in + siou_last + l_ac)
    return SharpenFocusOutput(logits, loss, classification, siou_in, siou_last, l_ac, target_seed, confuser, maps)


# ------------------------------------------------------------------------------------------------
# the head, the model and the training objective
# ------------------------------------------------------------------------------------------------
class SharpenFocusHead(nn.Module):
    """Global average pooling → linear (the plain CNN head: Sharpen Focus changes no architecture, §3) whose
    ``attend`` gives the target's and the most confusing class's attention at its input map.

    ``attend(features)`` (the kit's interface, :mod:`attnbook.methods.base`): the target is the predicted class,
    the confuser the second-highest score; maps ``[B, 2, h, w]`` named ``("target", "confuser")``, raw (ReLU'd,
    not normalised) ``attention`` maps (default ``A_ch``). At the last layer ``∂Y/∂F`` depends on the head alone,
    so these equal :meth:`SharpenFocusModel.attend`'s maps."""

    def __init__(self, in_channels: int, num_classes: int, attention: str = "channelwise",
                 dropout: float = 0.0) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {attention!r}; choose one of {ATTENTIONS}")
        self.attention = attention
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, C, h, w] -> [B, K]`` logits of the average-pooled features."""
        return self.fc(self.dropout(features.mean(dim=(2, 3))))

    def attend(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> Attention:
        """Logits and ``[B, 2, h, w]`` maps of the target (``labels``, default: the prediction) and the most
        confusing class; ``extras``: ``target``, ``confuser`` ``[B]``."""
        check_features(features, self.fc.in_features)
        with torch.enable_grad():
            f = features.detach().requires_grad_(True)
            logits = self(f)
            target = logits.detach().argmax(1) if labels is None else labels
            confuser = most_confusing_class(logits, target)
            options = SharpenFocusOptions(attention=self.attention, grad_path="detached")
            grads = class_gradients(logits, [f], [one_hot(target, logits.shape[1]),
                                                  one_hot(confuser, logits.shape[1])], options)
            maps = torch.stack([attention_map(f, g[0], self.attention) for g in grads], dim=1)
        return Attention(logits.detach(), maps.detach(), ("target", "confuser"),
                         {"target": target, "confuser": confuser})


class SharpenFocusModel(nn.Module):
    """``head(backbone(x))`` with the inner and last layers named (default ``layer2`` / ``layer3`` of a CIFAR
    ResNet; ``layer3`` / ``layer4`` of torchvision's). ``forward`` gives logits; :meth:`losses` Eq. 9 from one
    forward; :meth:`attend` the kit's attention interface on images."""

    def __init__(self, backbone: nn.Module, head: nn.Module, inner: str = "layer2", last: str = "layer3") -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.inner, self.last = inner, last
        for name in (inner, last):
            backbone.get_submodule(name)  # fail at construction on a bad layer name

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, K]``."""
        return self.head(self.backbone(images))

    def forward_with_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the inner and last layers' outputs ``[B, C, h, w]`` of the same forward."""
        with capture_activations(self.backbone, [self.inner, self.last]) as acts:
            logits = self(images)
        return logits, acts

    def losses(self, images: torch.Tensor, labels: torch.Tensor, options: SharpenFocusOptions = DEFAULT_OPTIONS,
               multilabel: bool = False) -> SharpenFocusOutput:
        """Eq. 9 on one batch (train mode for training: batch-norm as the paper's training)."""
        with torch.enable_grad():
            logits, acts = self.forward_with_maps(images)
            return sharpen_focus_losses(logits, acts, labels, options, multilabel)

    def class_maps(self, images: torch.Tensor, target: torch.Tensor, confuser: torch.Tensor,
                   attentions: Sequence[str] = ATTENTIONS) -> tuple[torch.Tensor, dict[str, dict[str, torch.Tensor]]]:
        """Raw maps of every ``attentions`` kind from ONE forward and one gradient per class (evaluation):
        ``logits`` and ``{attention: {"inner"|"last": [B, 2, h, w]}}`` (target, confuser), detached."""
        with torch.enable_grad():
            logits, acts = self.forward_with_maps(images)
            k = logits.shape[1]
            grads = class_gradients(logits, acts, [one_hot(target, k), one_hot(confuser, k)],
                                    SharpenFocusOptions(grad_path="detached"))
            out = {a: {layer: torch.stack([attention_map(acts[i], g[i], a) for g in grads], 1).detach()
                       for i, layer in enumerate(LAYERS)} for a in attentions}
        return logits.detach(), out

    def attend(self, images: torch.Tensor, labels: torch.Tensor | None = None, attention: str | None = None
               ) -> Attention:
        """Logits and the last layer's ``[B, 2, h, w]`` maps (target, confuser) of ``attention`` (default: the
        head's, ``A_ch``); the target is ``labels`` or the prediction. ``extras``: ``inner`` ``[B, 2, h', w']``,
        ``target``, ``confuser``."""
        attention = attention or getattr(self.head, "attention", "channelwise")
        with torch.no_grad():
            logits = self(images)
        target = logits.argmax(1) if labels is None else labels
        confuser = most_confusing_class(logits, target)
        logits, maps = self.class_maps(images, target, confuser, (attention,))
        return Attention(logits, maps[attention]["last"], ("target", "confuser"),
                         {"inner": maps[attention]["inner"], "target": target, "confuser": confuser})


@dataclass(frozen=True)
class SharpenFocusObjective:
    """The training objective for :func:`attnbook.train.fit`: Eq. 9 on ``batch["image"]`` / ``batch["label"]``
    (``enabled=False``: the baseline, ``L_cls`` alone, same model). Logs the three attention terms."""

    options: SharpenFocusOptions = SharpenFocusOptions()
    multilabel: bool = False
    enabled: bool = True

    def __call__(self, model: SharpenFocusModel, batch: Mapping[str, torch.Tensor]):
        """``StepOutput(loss, logits, logs)`` of one batch; in eval mode without gradients the plain loss."""
        from attnbook.train import StepOutput, model_input  # light import: the training loop imports tqdm

        images, labels = model_input(batch), batch["label"]
        if not self.enabled or not torch.is_grad_enabled() and not model.training:
            logits = model(images)
            loss = (F.multilabel_soft_margin_loss(logits, labels.float()) if self.multilabel
                    else F.cross_entropy(logits, labels))
            return StepOutput(loss, logits)
        out = model.losses(images, labels, self.options, self.multilabel)
        return StepOutput(out.loss, out.logits, out.logs())
