"""EAT — Explainable Attribute-based multi-Task framework (Xu et al., "Where is the Model Looking At? –
Concentrate and Explain the Network Attention", IEEE JSTSP 2020, arXiv:2009.13862).

A head on a backbone feature map ``v = f_img(x)`` ``[B, C, h, w]`` (Eq. 1):

* ``c_p = g_c(v)`` — the base model's category head (Eq. 1);
* ``a_i = g_a^i(v)`` — one binary classifier per attribute, same architecture as ``g_c`` (Eq. 2). The
  ``Na`` attribute heads are **one batched module** (:class:`BatchedHeads`: every weight carries a leading
  head axis and one ``einsum`` runs them all), not a Python loop over ``Na`` classifiers;
* ``E_a = emb_a(a)`` ``[Na, De]``, ``E_p = emb_p(c_p)`` ``[1, De]`` (Eq. 3), ``E = [E_a; E_p]`` (Eq. 4),
  ``c_i = g_i(E)`` (Eq. 5), ``c = λ·c_p + η·c_i`` (Eq. 6);
* losses ``l_c = CE(y, c)``, ``l_a = (1/Na) Σ_j CE(A_j, a_j)`` with class-level attribute labels ``A``
  (Eq. 7; each attribute is binary, so its CE is the binary cross-entropy);
* EAR: ``W = ∂c_ŷ/∂E_a`` (Eq. 9), ``s_i = Σ_j W_ij`` (Eq. 10), top-k attributes → a sentence.

Choices the paper leaves open, made here (the chapter states them):

* heads ``g_c`` / ``g_a^i``: ``depth`` 1×1 convolutions + ReLU at feature resolution, global average
  pooling, a linear layer (the paper: "4 layers CNN"; default depth 2 → 3 layers);
* ``emb_a``: a per-attribute affine map of the attribute's sigmoid probability,
  ``E_a[i] = σ(a_i)·U_i + V_i``; ``emb_p``: a linear map of ``softmax(c_p)``;
* ``g_i``: ``"cnn"`` — two 1-D convolutions (kernel 3) over the embedding axis with the ``Na + 1`` rows as
  channels, then a linear layer (3 layers, as the paper); ``"linear"`` — one linear layer on ``vec(E)``
  (used by the tests: EAR then has a closed form);
* visual grounding (``attend``): Grad-CAM (Eq. 11–12) of the predicted class's final score ``c_ŷ`` and of
  the logits of the top-k EAR attributes, taken w.r.t. the feature map the head reads — i.e. at the
  backbone's last conv layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attnbook.methods.base import Attention, check_features

INTEGRATORS = ("cnn", "linear")


class BatchedHeads(nn.Module):
    """``N`` independent heads of one architecture, run as one module: per head ``depth`` 1×1 convs + ReLU,
    global average pooling, a linear layer. ``[B, C, h, w] -> [B, N, out]``.

    Head ``n`` alone is :meth:`head` (an ordinary ``nn.Sequential`` sharing these weights' values), so the
    batched computation can be checked against a loop."""

    def __init__(self, channels: int, num_heads: int, out: int, hidden: int = 32, depth: int = 2) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be ≥ 1, got {depth}")
        self.num_heads, self.out = num_heads, out
        widths = [channels] + [hidden] * depth
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for cin, cout in zip(widths[:-1], widths[1:]):
            self.weights.append(nn.Parameter(torch.empty(num_heads, cin, cout)))
            self.biases.append(nn.Parameter(torch.zeros(num_heads, cout)))
        self.fc_weight = nn.Parameter(torch.empty(num_heads, hidden, out))
        self.fc_bias = nn.Parameter(torch.zeros(num_heads, out))
        for w in [*self.weights, self.fc_weight]:
            bound = 1 / math.sqrt(w.shape[1])  # nn.Linear's default range, per head
            nn.init.uniform_(w, -bound, bound)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, C, h, w] -> [B, N, out]``."""
        check_features(features)
        batch, channels, height, width = features.shape
        n, first = self.num_heads, self.weights[0]
        x = features.flatten(2).transpose(1, 2)  # [B, hw, C]
        # the first layer of every head reads all C channels: one matmul with the heads side by side
        x = torch.relu(x @ first.permute(1, 0, 2).reshape(channels, -1) + self.biases[0].reshape(-1))
        x = x.reshape(batch * height * width, n, -1).transpose(0, 1)  # [N, B·hw, hidden]
        for w, b in zip(list(self.weights)[1:], list(self.biases)[1:]):
            x = torch.relu(torch.baddbmm(b[:, None, :], x, w))  # each head its own 1×1 conv
        pooled = x.reshape(n, batch, height * width, -1).mean(2).transpose(0, 1)  # [B, N, hidden]
        return torch.einsum("bnk,nko->bno", pooled, self.fc_weight) + self.fc_bias

    def head(self, n: int) -> nn.Sequential:
        """Head ``n`` as a standalone module (1×1 ``Conv2d``s, ReLU, GAP, ``Linear``) with copies of its weights."""
        layers: list[nn.Module] = []
        for w, b in zip(self.weights, self.biases):
            conv = nn.Conv2d(w.shape[1], w.shape[2], 1)
            conv.weight.data = w[n].detach().T.clone()[:, :, None, None]
            conv.bias.data = b[n].detach().clone()
            layers += [conv, nn.ReLU()]
        fc = nn.Linear(self.fc_weight.shape[1], self.out)
        fc.weight.data, fc.bias.data = self.fc_weight[n].detach().T.clone(), self.fc_bias[n].detach().clone()
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc)


def make_integrator(kind: str, num_attributes: int, embed_dim: int, num_classes: int, hidden: int = 32) -> nn.Module:
    """``g_i`` (Eq. 5): ``E`` ``[B, Na + 1, De] -> c_i`` ``[B, Nc]`` (see the module docstring)."""
    rows = num_attributes + 1
    if kind == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(rows * embed_dim, num_classes))
    if kind == "cnn":
        return nn.Sequential(nn.Conv1d(rows, hidden, 3, padding=1), nn.ReLU(),
                             nn.Conv1d(hidden, hidden, 3, padding=1), nn.ReLU(),
                             nn.Flatten(), nn.Linear(hidden * embed_dim, num_classes))
    raise ValueError(f"unknown integrator {kind!r}; choose one of {INTEGRATORS}")


@dataclass(frozen=True)
class EATOutput:
    """Everything one forward of :class:`EATHead` computes."""

    logits: torch.Tensor  # c [B, Nc] (Eq. 6)
    base_logits: torch.Tensor  # c_p [B, Nc] (Eq. 1)
    integrated_logits: torch.Tensor | None  # c_i [B, Nc] (Eq. 5); None without g_i
    attribute_logits: torch.Tensor  # a [B, Na] (Eq. 2), one logit per binary attribute
    attribute_embedding: torch.Tensor | None  # E_a [B, Na, De] (Eq. 3)


class EATHead(nn.Module):
    """EAT's heads on a feature map: ``g_c``, the batched ``g_a``, ``emb_a``, ``emb_p``, ``g_i`` (Eq. 1–6).

    ``forward`` gives the final logits ``c``; :meth:`outputs` everything; :meth:`ear` the attribute scores;
    ``attend`` the attention interface (maps: Grad-CAM of the class and of the top-``k`` EAR attributes).
    ``integrator=None`` drops ``g_i`` (attributes as an auxiliary loss only: ``c = λ·c_p``).
    """

    def __init__(self, channels: int, num_classes: int, num_attributes: int = 16, *, embed_dim: int = 16,
                 hidden: int = 32, depth: int = 2, integrator: str | None = "cnn", lam: float = 1.0,
                 eta: float = 1.0, top_k: int = 3) -> None:
        super().__init__()
        self.channels, self.num_classes, self.num_attributes = channels, num_classes, num_attributes
        self.lam, self.eta, self.top_k = lam, eta, min(top_k, num_attributes)
        self.g_c = BatchedHeads(channels, 1, num_classes, hidden, depth)  # Eq. 1
        self.g_a = BatchedHeads(channels, num_attributes, 1, hidden, depth)  # Eq. 2, Na heads at once
        self.emb_a_scale = nn.Parameter(torch.randn(num_attributes, embed_dim) / math.sqrt(embed_dim))  # U, Eq. 3
        self.emb_a_shift = nn.Parameter(torch.zeros(num_attributes, embed_dim))  # V, Eq. 3
        self.emb_p = nn.Linear(num_classes, embed_dim)  # Eq. 3
        self.g_i = None if integrator is None else make_integrator(integrator, num_attributes, embed_dim,
                                                                   num_classes, hidden)  # Eq. 5

    def embed_attributes(self, attribute_logits: torch.Tensor) -> torch.Tensor:
        """``E_a = emb_a(a)`` (Eq. 3): ``σ(a_i)·U_i + V_i``. ``[B, Na] -> [B, Na, De]``."""
        return torch.sigmoid(attribute_logits)[:, :, None] * self.emb_a_scale + self.emb_a_shift

    def integrate(self, base_logits: torch.Tensor, attribute_embedding: torch.Tensor) -> torch.Tensor:
        """``c_i = g_i([E_a; E_p])`` (Eq. 3–5). ``-> [B, Nc]``."""
        e_p = self.emb_p(torch.softmax(base_logits, dim=1))[:, None]  # [B, 1, De]
        return self.g_i(torch.cat([attribute_embedding, e_p], dim=1))  # Eq. 4, 5

    def outputs(self, features: torch.Tensor) -> EATOutput:
        """One forward: ``c_p``, ``a``, ``E_a``, ``c_i`` and ``c = λ·c_p + η·c_i`` (Eq. 1–6)."""
        check_features(features, self.channels)
        c_p = self.g_c(features)[:, 0]  # [B, Nc]
        a = self.g_a(features)[:, :, 0]  # [B, Na]
        if self.g_i is None:
            return EATOutput(self.lam * c_p, c_p, None, a, None)
        e_a = self.embed_attributes(a)
        c_i = self.integrate(c_p, e_a)
        return EATOutput(self.lam * c_p + self.eta * c_i, c_p, c_i, a, e_a)  # Eq. 6

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, C, h, w] -> c`` ``[B, Nc]`` (Eq. 6)."""
        return self.outputs(features).logits

    def ear(self, features: torch.Tensor, target: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """EAR scores ``s`` ``[B, Na]`` (Eq. 9–10: ``s_i = Σ_j ∂c_ŷ/∂E_a[i, j]``) and the logits ``c``.

        ``target`` ``[B]``: the class to explain (default: the prediction ŷ). Samples are independent in
        the head, so one backward of the summed scores gives every sample's gradient. Without ``g_i`` the
        scores are zero (nothing reads ``E_a``)."""
        with torch.enable_grad():
            out = self.outputs(features)
            target = out.logits.argmax(1) if target is None else target
            if out.attribute_embedding is None:
                return torch.zeros_like(out.attribute_logits), out.logits.detach()
            score = out.logits.gather(1, target[:, None]).sum()
            (w,) = torch.autograd.grad(score, out.attribute_embedding)  # W [B, Na, De], Eq. 9
        return w.sum(-1), out.logits.detach()  # Eq. 10

    def attend(self, features: torch.Tensor) -> Attention:
        """Logits ``c`` and maps ``[B, 1 + k, h, w]``: Grad-CAM (Eq. 11–12) at the feature map of the predicted
        class's ``c_ŷ`` (map "class"), then of the logit ``a_i`` of each of the top-``k`` EAR attributes
        (maps "attribute 1" … "attribute k", rank order). ``extras``: ``ear`` scores ``[B, Na]``, ``top``
        attribute indices ``[B, k]``, ``attribute_logits``, ``predicted``."""
        with torch.enable_grad():
            v = features.detach().requires_grad_(True)
            out = self.outputs(v)
            predicted = out.logits.argmax(1)
            score = out.logits.gather(1, predicted[:, None]).sum()
            inputs = [v] if out.attribute_embedding is None else [v, out.attribute_embedding]
            grads = torch.autograd.grad(score, inputs, retain_graph=True)
            ear = grads[1].sum(-1) if len(grads) > 1 else torch.zeros_like(out.attribute_logits)
            top = ear.topk(self.top_k, dim=1).indices  # [B, k]
            maps = [gradcam(v, grads[0])]
            for k in range(self.top_k):
                attr_score = out.attribute_logits.gather(1, top[:, k:k + 1]).sum()
                (g,) = torch.autograd.grad(attr_score, v, retain_graph=k < self.top_k - 1)
                maps.append(gradcam(v, g))
        names = ("class",) + tuple(f"attribute {k + 1}" for k in range(self.top_k))
        return Attention(out.logits.detach(), torch.stack(maps, 1).detach(), names,
                         {"ear": ear.detach(), "top": top, "attribute_logits": out.attribute_logits.detach(),
                          "predicted": predicted})


def gradcam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Eq. 11–12): ``ReLU(Σ_k α_k A^k)``, ``α_k = mean_ij ∂y/∂A^k_ij``. ``-> [B, h, w]``."""
    alpha = grads.mean(dim=(-2, -1), keepdim=True)
    return torch.relu((alpha * activations).sum(1)).detach()


def eat_losses(out: EATOutput, labels: torch.Tensor, attributes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``l_c = CE(y, c)`` and ``l_a = (1/Na) Σ_j CE(A_j, a_j)`` (Eq. 7–8), each a batch mean; ``attributes``
    ``[B, Na]`` are the class-level labels ``A`` of each sample's class (binary CE per attribute)."""
    l_c = F.cross_entropy(out.logits, labels)
    l_a = F.binary_cross_entropy_with_logits(out.attribute_logits, attributes.float())  # mean over B and Na
    return l_c, l_a


def sentence(attributes: list[str] | tuple[str, ...], class_name: str, noun: str = "bird") -> str:
    """EAR's textual explanation: "This bird has X, Y and Z, so it is C." (§III-C, Fig. 1)."""
    words = [a.replace("::", " ").replace("_", " ") for a in attributes]
    listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    return f"This {noun} has {listed}, so it is {class_name}."
