"""Tests for attnbook.models.backbones: shapes per arch, stride options, named stages, classifier."""
from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn
from torchvision import models
from torchvision.transforms import Normalize

from attnbook.models import weights
from attnbook.models.backbones import (
    BACKBONES,
    Backbone,
    Classifier,
    build_backbone,
    build_classifier,
    list_backbones,
)
from attnbook.models.heads import GAPHead

RESNET = ("stem", "layer1", "layer2", "layer3", "layer4")
# arch -> (stage names, feature map [C, h, w] at 64 px) as documented in the module docstring
EXPECTED = {
    "resnet18": (RESNET, (512, 2, 2)),
    "resnet34": (RESNET, (512, 2, 2)),
    "resnet50": (RESNET, (2048, 2, 2)),
    "resnet101": (RESNET, (2048, 2, 2)),
    "resnet152": (RESNET, (2048, 2, 2)),
    "vgg16": (tuple(f"block{k}" for k in range(1, 6)), (512, 4, 4)),
    "vgg19": (tuple(f"block{k}" for k in range(1, 6)), (512, 4, 4)),
    "alexnet": (tuple(f"conv{k}" for k in range(1, 6)), (256, 3, 3)),
    "efficientnet_b0": (("stem", *(f"stage{k}" for k in range(1, 8)), "top"), (1280, 2, 2)),
}


@pytest.fixture(scope="module")
def resnet18() -> Backbone:
    return build_backbone("resnet18").eval()


def _image(size: int = 64, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, size, size)


def test_registry_is_the_list_of_backbones() -> None:
    assert list_backbones() == sorted(EXPECTED) == sorted(BACKBONES)


@pytest.mark.parametrize("arch", sorted(EXPECTED))
def test_every_arch_gives_its_documented_map(arch: str) -> None:
    names, shape = EXPECTED[arch]
    backbone = build_backbone(arch).eval()
    with torch.no_grad():
        out = backbone(_image())
    assert out.shape == (1, *shape)
    assert backbone.out_channels == shape[0] == backbone.stage_channels[names[-1]]
    assert backbone.stage_names == names
    assert all(isinstance(getattr(backbone, name), nn.Module) for name in names)
    assert not any(getattr(m, "inplace", False) for m in backbone.modules())  # hooked maps stay intact


@pytest.mark.parametrize(("arch", "side"), [("resnet18", 8), ("vgg16", 8), ("alexnet", 6), ("efficientnet_b0", 8)])
def test_small_input_keeps_more_resolution_and_the_same_weights(arch: str, side: int) -> None:
    small = build_backbone(arch, small_input=True).eval()
    with torch.no_grad():
        out = small(_image())
    assert out.shape[-2:] == (side, side)
    shapes = {key: value.shape for key, value in build_backbone(arch).state_dict().items()}
    assert {key: value.shape for key, value in small.state_dict().items()} == shapes  # pretrained-loadable


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])  # BasicBlock and Bottleneck put the stride differently
def test_stride_one_doubles_the_side_per_stage(arch: str) -> None:
    default = build_backbone(arch)
    sides = {}
    for stages in [(), ("layer4",), ("layer3", "layer4"), ("layer2", "layer3")]:
        backbone = build_backbone(arch, stride_one=stages).eval()
        with torch.no_grad():
            sides[stages] = backbone(_image()).shape[-1]
        assert backbone.state_dict().keys() == default.state_dict().keys()
    assert sides == {(): 2, ("layer4",): 4, ("layer3", "layer4"): 8, ("layer2", "layer3"): 8}


def test_stride_one_keeps_other_stages_untouched() -> None:
    backbone = build_backbone("resnet50", stride_one=("layer3", "layer4"))
    assert backbone.layer2[0].conv2.stride == (2, 2)
    assert backbone.layer3[0].conv2.stride == backbone.layer3[0].downsample[0].stride == (1, 1)
    assert backbone.layer4[0].conv2.dilation == (1, 1)  # stride only, no dilation (BR-NPA §3.1)


def test_bad_options_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet19'.*resnet18"):
        build_backbone("resnet19")
    with pytest.raises(ValueError, match="ResNet backbones only"):
        build_backbone("vgg16", stride_one=("block5",))
    with pytest.raises(ValueError, match=r"\['layer1'\].*layer2"):
        build_backbone("resnet18", stride_one=("layer1",))
    with pytest.raises(TypeError, match=r"\('layer3',\)"):
        build_backbone("resnet18", stride_one="layer3")


def test_normalisation_is_imagenet_mean_std(resnet18: Backbone) -> None:
    images = _image(32, 2)
    oracle = Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(images)
    torch.testing.assert_close(resnet18.normalize(images), oracle)
    assert not any(key.startswith("normalize") for key in resnet18.state_dict())  # not in checkpoints
    with pytest.raises(ValueError, match="RGB"):
        resnet18(torch.rand(1, 1, 32, 32))


def test_features_returns_named_maps_of_one_pass(resnet18: Backbone) -> None:
    images = _image(64, 2)
    with torch.no_grad():
        maps = resnet18.features(images, ["layer2", "layer4", "layer4.1.conv2"])
        manual = resnet18.layer2(resnet18.layer1(resnet18.stem(resnet18.normalize(images))))
        full = resnet18(images)
    assert list(maps) == ["layer2", "layer4", "layer4.1.conv2"]
    torch.testing.assert_close(maps["layer2"], manual, rtol=0, atol=0)
    torch.testing.assert_close(maps["layer4"], full, rtol=0, atol=0)
    assert maps["layer4.1.conv2"].shape == (2, 512, 2, 2)


def test_features_stops_after_the_last_requested_stage(resnet18: Backbone) -> None:
    calls = []
    handle = resnet18.layer4.register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            maps = resnet18.features(_image(), ["layer1"])
    finally:
        handle.remove()
    assert maps["layer1"].shape == (1, 64, 16, 16) and calls == []


def test_features_rejects_unknown_names_and_strings(resnet18: Backbone) -> None:
    with pytest.raises(ValueError, match=r"no layer 'layer5'.*'stem', 'layer1'"):
        resnet18.features(_image(), ["layer5"])
    with pytest.raises(TypeError, match=r"\['layer3'\]"):
        resnet18.features(_image(), "layer3")


def test_stage_channels_match_the_maps() -> None:
    backbone = build_backbone("resnet50").eval()
    with torch.no_grad():
        maps = backbone.features(_image(), backbone.stage_names)
    assert backbone.stage_channels == {name: maps[name].shape[1] for name in backbone.stage_names}
    assert backbone.stage_channels == {"stem": 64, "layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048}


def test_classifier_resolves_dotted_stage_names_and_predicts() -> None:
    model = build_classifier("resnet18", num_classes=7, dropout=0.2, small_input=True)
    assert isinstance(model, Classifier) and isinstance(model.head, GAPHead)
    assert model.get_submodule("backbone.layer3") is model.backbone.layer3
    assert model.head.fc.in_features == 512 and model.head.dropout.p == 0.2
    model.eval()
    with torch.no_grad():
        images = _image(32, 3)
        logits = model(images)
        expected = model.head.fc(model.backbone(images).mean(dim=(2, 3)))
    assert logits.shape == (3, 7)
    torch.testing.assert_close(logits, expected)


def test_pretrained_loads_verified_cached_weights(tmp_path, monkeypatch) -> None:
    reference = models.resnet18()  # stands in for the ImageNet file (same keys and shapes)
    staged = tmp_path / "staged.pth"
    torch.save(reference.state_dict(), staged)
    prefix = hashlib.sha256(staged.read_bytes()).hexdigest()[:8]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    target = tmp_path / "hub" / "checkpoints" / f"resnet18-{prefix}.pth"
    target.parent.mkdir(parents=True)
    staged.rename(target)
    monkeypatch.setattr(weights, "weights_url", lambda arch, name: f"https://example.invalid/{target.name}")

    backbone = build_backbone("resnet18", pretrained=True, stride_one=("layer4",))
    torch.testing.assert_close(backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight, rtol=0, atol=0)
    torch.testing.assert_close(backbone.stem.conv1.weight, reference.conv1.weight, rtol=0, atol=0)
