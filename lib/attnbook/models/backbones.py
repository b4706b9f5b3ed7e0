"""torchvision CNN backbones with named, hookable stages — the trunk every method in attnbook sits on.

A :class:`Backbone` maps images in [0, 1] (``attnbook.data.records``) to the **last conv feature map**
``[B, C, h, w]`` (no pooling, no classifier). It owns the ImageNet mean/std normalisation
(:class:`ImageNetNormalize`, its first step) so that a backbone alone — used by
:func:`attnbook.train.cache_features`, by Grad-CAM hooks, or inside :class:`Classifier` — always sees
what its weights expect, and notebooks never normalise by hand. Stages are attributes
(``model.backbone.layer3``), so dotted names such as ``"backbone.layer3"`` resolve with
``get_submodule``; :meth:`Backbone.features` returns chosen intermediate maps in one forward pass.
All in-place activations are switched off, so a captured map is never overwritten later in the pass.

========================  ===========================================  =====  =================
arch                      stages                                       C      map at 64 px
========================  ===========================================  =====  =================
resnet18 / 34             stem, layer1, layer2, layer3, layer4         512    2×2  (stride 32)
resnet50 / 101 / 152      stem, layer1, layer2, layer3, layer4         2048   2×2  (stride 32)
vgg16 / 19                block1 … block5 (pool + convs of one scale)  512    4×4  (stride 16)
alexnet                   conv1 … conv5 (each conv + ReLU, pools       256    3×3  (stride 16)
                          at the start of conv2 and conv3)
efficientnet_b0           stem, stage1 … stage7, top (1×1 conv, 1280)  1280   2×2  (stride 32)
========================  ===========================================  =====  =================

The final max-pool of VGG and AlexNet is dropped: the output is the last conv layer's map (14×14 and
13×13 at 224 px), the layer Grad-CAM and CAM use.

``small_input=True`` (32–64 px images, CIFAR-style) removes early downsampling so that every backbone
has output stride 8 (a 64 px image gives an 8×8 map; AlexNet 6×6): ResNet stem conv stride 1 and no
max-pool; VGG without its first max-pool; AlexNet conv1 stride 2 instead of 4; EfficientNet stem and
stage2 stride 1. Only strides and pools change, so pretrained weights still load (ResNet keeps its 7×7
stem kernel rather than the CIFAR ResNets' 3×3 conv for that reason).

``stride_one=("layer3", "layer4")`` (ResNet only): BR-NPA's high-resolution maps (BR-NPA §3.1, §4.1) set
those stages' stride to 1 — the first block's strided conv and its downsample shortcut — and each such
stage doubles the map's side (layer3 + layer4: 14×14 → 56×56 at 448 px; the paper's re-id model uses
layer2 + layer3). No dilation is added: the paper just sets the stride to 1 and distils from the
low-resolution teacher (§3.1); dilation (as in DeepLab) would keep the receptive field but is not
what the paper trained.

Pretrained weights: ``pretrained=True`` loads torchvision's ``IMAGENET1K_V1`` — the original ImageNet
weights the five papers used (torchvision's newer ``IMAGENET1K_V2`` ResNet-50/101/152 recipes came
later); pass a weights name instead of ``True`` for another entry. Loading is offline and verified, see
:mod:`attnbook.models.weights`.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from functools import partial

import torch
from torch import nn
from torchvision import models

from attnbook.models.heads import GAPHead
from attnbook.models.weights import DEFAULT_WEIGHTS, pretrained_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNET_STRIDE_STAGES = ("layer2", "layer3", "layer4")  # stages whose stride stride_one can set to 1


class ImageNetNormalize(nn.Module):
    """``(x − mean) / std`` with ImageNet statistics, for images in [0, 1] ``[B, 3, H, W]``."""

    def __init__(self) -> None:
        super().__init__()
        # non-persistent: the constants are not part of any state dict (and so not of checkpoints)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> ``[B, 3, H, W]`` normalised."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be RGB [B, 3, H, W] in [0, 1], got shape {tuple(images.shape)}")
        return (images - self.mean) / self.std


class Backbone(nn.Module):
    """Normalisation followed by named stages; ``forward`` returns the last stage's map ``[B, C, h, w]``.

    ``stage_names`` lists the stages in order; each is an attribute of the module. ``out_channels`` is
    C of the output map; ``stage_channels`` maps every stage to its output channels.
    """

    def __init__(self, arch: str, stages: OrderedDict[str, nn.Module]) -> None:
        super().__init__()
        self.arch = arch
        self.normalize = ImageNetNormalize()
        self.stage_names: tuple[str, ...] = tuple(stages)
        for name, stage in stages.items():
            self.add_module(name, stage)
        self.stage_channels: dict[str, int] = {}
        channels = 3
        for name, stage in stages.items():
            channels = _last_conv_channels(stage, default=channels)
            self.stage_channels[name] = channels
        self.out_channels: int = channels

    def stages(self) -> Iterable[tuple[str, nn.Module]]:
        """``(name, module)`` of every stage, in order."""
        return ((name, getattr(self, name)) for name in self.stage_names)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` images -> ``[B, C, h, w]`` last stage's map."""
        x = self.normalize(images)
        for _, stage in self.stages():
            x = stage(x)
        return x

    def features(self, images: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """The outputs of the named modules (stages like ``"layer3"`` or dotted names like
        ``"layer4.1.conv2"``, relative to the backbone) in one forward pass, stopping after the last needed."""
        if isinstance(names, str):
            raise TypeError(f"names must be a sequence of layer names, e.g. [{names!r}], not a string")
        modules = {name: self._submodule(name) for name in names}
        captured: dict[str, torch.Tensor] = {}
        handles = [
            module.register_forward_hook(partial(_capture, captured, name)) for name, module in modules.items()
        ]
        try:
            x = self.normalize(images)
            for _, stage in self.stages():
                if len(captured) == len(modules):
                    break
                x = stage(x)
        finally:
            for handle in handles:
                handle.remove()
        return {name: captured[name] for name in names}

    def _submodule(self, name: str) -> nn.Module:
        try:
            return self.get_submodule(name)
        except AttributeError:
            raise ValueError(
                f"{self.arch} backbone has no layer {name!r}; stages are {list(self.stage_names)} "
                "(dotted names inside them, e.g. from named_modules(), work too)"
            ) from None

    def extra_repr(self) -> str:
        """The architecture and output channels, for ``repr``."""
        return f"arch={self.arch!r}, out_channels={self.out_channels}"


def _capture(store: dict[str, torch.Tensor], name: str, _module: nn.Module, _inputs, output: torch.Tensor) -> None:
    store[name] = output


def _last_conv_channels(module: nn.Module, default: int) -> int:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels if convs else default


def _no_inplace(module: nn.Module) -> nn.Module:
    """Switch off in-place activations (ReLU, SiLU …) so hooked outputs are never overwritten."""
    for m in module.modules():
        if getattr(m, "inplace", False):
            m.inplace = False
    return module


def _set_stride(module: nn.Module, stride: int) -> None:
    """Set every strided Conv2d in ``module`` (a block's conv and its shortcut) to ``stride``."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and m.stride != (1, 1):
            m.stride = (stride, stride)


def _torchvision_model(arch: str, pretrained: bool | str, allow_download: bool | None) -> nn.Module:
    """torchvision's ``arch``, random init or with verified cached ImageNet weights."""
    model = models.get_model(arch, weights=None)
    if pretrained:
        name = DEFAULT_WEIGHTS if pretrained is True else pretrained
        model.load_state_dict(pretrained_state_dict(arch, name, allow_download=allow_download))
    return model


def _split(layers: Sequence[nn.Module], starts: Sequence[int], names: Sequence[str]) -> OrderedDict[str, nn.Module]:
    """Cut a flat layer list into named ``nn.Sequential`` stages beginning at ``starts``."""
    ends = [*starts[1:], len(layers)]
    return OrderedDict((name, nn.Sequential(*layers[a:b])) for name, a, b in zip(names, starts, ends, strict=True))


def _resnet(arch: str, *, pretrained: bool | str, small_input: bool, stride_one: tuple[str, ...],
            allow_download: bool | None) -> Backbone:
    """ResNet (He et al. 2016): stem (conv1, bn1, relu, maxpool) and layer1 … layer4."""
    net = _torchvision_model(arch, pretrained, allow_download)
    if small_input:
        net.conv1.stride = (1, 1)
        net.maxpool = nn.Identity()  # Identity keeps the dotted names (stem.maxpool) stable
    for stage in stride_one:
        _set_stride(getattr(net, stage), 1)  # BR-NPA §3.1: stride 1, no dilation
    stem = nn.Sequential(OrderedDict(conv1=net.conv1, bn1=net.bn1, relu=net.relu, maxpool=net.maxpool))
    stages = OrderedDict(stem=stem, layer1=net.layer1, layer2=net.layer2, layer3=net.layer3, layer4=net.layer4)
    return Backbone(arch, stages)


def _vgg(arch: str, *, pretrained: bool | str, small_input: bool, allow_download: bool | None,
         **_: object) -> Backbone:
    """VGG (Simonyan & Zisserman 2015): block k = the max-pool into scale k, then that scale's convs."""
    layers = list(_torchvision_model(arch, pretrained, allow_download).features)[:-1]  # drop the final pool
    pools = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
    if small_input:
        layers[pools[0]] = nn.Identity()
    return Backbone(arch, _split(layers, [0, *pools], [f"block{k}" for k in range(1, len(pools) + 2)]))


def _alexnet(arch: str, *, pretrained: bool | str, small_input: bool, allow_download: bool | None,
             **_: object) -> Backbone:
    """AlexNet (Krizhevsky et al. 2012): conv1 … conv5, each conv + ReLU (pools open conv2, conv3)."""
    layers = list(_torchvision_model(arch, pretrained, allow_download).features)[:-1]  # drop the final pool
    if small_input:
        layers[0].stride = (2, 2)
    starts = [
        i - 1 if i > 0 and isinstance(layers[i - 1], nn.MaxPool2d) else i
        for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)
    ]
    return Backbone(arch, _split(layers, starts, [f"conv{k}" for k in range(1, len(starts) + 1)]))


def _efficientnet(arch: str, *, pretrained: bool | str, small_input: bool, allow_download: bool | None,
                  **_: object) -> Backbone:
    """EfficientNet (Tan & Le 2019): stem, stage1 … stage7 (MBConv), top (1×1 conv to 1280, SiLU)."""
    features = list(_torchvision_model(arch, pretrained, allow_download).features)
    if small_input:
        _set_stride(features[0], 1)  # stem
        _set_stride(features[2], 1)  # first strided MBConv stage
    names = ["stem", *(f"stage{k}" for k in range(1, len(features) - 1)), "top"]
    return Backbone(arch, OrderedDict(zip(names, features, strict=True)))


BackboneBuilder = Callable[..., Backbone]

BACKBONES: dict[str, BackboneBuilder] = {
    **{arch: partial(_resnet, arch) for arch in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")},
    **{arch: partial(_vgg, arch) for arch in ("vgg16", "vgg19")},
    "alexnet": partial(_alexnet, "alexnet"),
    "efficientnet_b0": partial(_efficientnet, "efficientnet_b0"),
}
"""Every backbone attnbook knows: name → builder. The single source of truth (see :func:`list_backbones`)."""


def list_backbones() -> list[str]:
    """Names accepted by :func:`build_backbone`."""
    return sorted(BACKBONES)


def _check_stride_one(arch: str, stride_one: Sequence[str]) -> tuple[str, ...]:
    if isinstance(stride_one, str):
        raise TypeError(f"stride_one must be a tuple of stage names, e.g. ({stride_one!r},), not a string")
    stride_one = tuple(stride_one)
    if stride_one and BACKBONES[arch].func is not _resnet:
        raise ValueError(f"stride_one is implemented for ResNet backbones only, not {arch!r}; use stride_one=()")
    unknown = [stage for stage in stride_one if stage not in RESNET_STRIDE_STAGES]
    if unknown:
        raise ValueError(
            f"stride_one stages {unknown} have no stride to reduce; choose from {list(RESNET_STRIDE_STAGES)}"
        )
    return stride_one


def build_backbone(
    arch: str,
    *,
    pretrained: bool | str = False,
    small_input: bool = False,
    stride_one: Sequence[str] = (),
    allow_download: bool | None = None,
) -> Backbone:
    """Build backbone ``arch`` (see :func:`list_backbones`); options as in the module docstring.

    ``pretrained``: ``False`` (random init), ``True`` (torchvision ``IMAGENET1K_V1``) or a weights name;
    ``allow_download`` as in :func:`attnbook.models.weights.load_state_dict`.
    """
    if arch not in BACKBONES:
        raise ValueError(f"unknown backbone {arch!r}; valid: {list_backbones()}")
    stride_one = _check_stride_one(arch, stride_one)
    backbone = BACKBONES[arch](
        pretrained=pretrained, small_input=small_input, stride_one=stride_one, allow_download=allow_download
    )
    return _no_inplace(backbone)


class Classifier(nn.Module):
    """``head(backbone(x))``: a :class:`Backbone` and a head on its last map (e.g. :class:`GAPHead`)."""

    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` images -> ``[B, K]`` logits."""
        return self.head(self.backbone(images))  # [B, C, h, w] -> [B, K]


def build_classifier(arch: str, num_classes: int, *, dropout: float = 0.0, **backbone_kw: object) -> Classifier:
    """:func:`build_backbone` (``backbone_kw``) + ``GAPHead(out_channels, num_classes, dropout)``."""
    backbone = build_backbone(arch, **backbone_kw)
    return Classifier(backbone, GAPHead(backbone.out_channels, num_classes, dropout))
