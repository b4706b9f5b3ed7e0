"""The CIFAR ResNet of He et al. (2016, §4.2): depth 6n + 2, three stages at 16/32/64 channels."""
import pytest
import torch

from attnbook.explain.gradcam import grad_attention
from attnbook.models.cifar_resnet import (
    BasicBlock,
    PadShortcut,
    blocks_per_stage,
    cifar_resnet,
    cifar_resnet_classifier,
)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet110_has_the_papers_shape_and_1_7m_parameters():
    model = cifar_resnet_classifier(110, 100)
    assert blocks_per_stage(110) == 18
    assert [len(getattr(model.backbone, f"layer{k}")) for k in (1, 2, 3)] == [18, 18, 18]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) + 1 == 110, "109 convolutions + the linear layer"
    assert _count(model) == pytest.approx(1.7e6, rel=0.03)  # Sharpen Focus Table 2 / He et al. Table 6: 1.7 M
    assert model.backbone.stage_names == ("stem", "layer1", "layer2", "layer3")
    assert model.backbone.stage_channels == {"stem": 16, "layer1": 16, "layer2": 32, "layer3": 64}


@pytest.mark.parametrize("depth,params", [(20, 0.27e6), (56, 0.85e6)])
def test_smaller_depths_match_he_et_al_table_6(depth, params):
    assert _count(cifar_resnet_classifier(depth, 10)) == pytest.approx(params, rel=0.03)


def test_maps_have_stride_1_2_4_and_the_classifier_gives_logits():
    torch.manual_seed(0)
    model = cifar_resnet_classifier(8, 7, widths=(4, 8, 16)).eval()
    x = torch.rand(2, 3, 32, 32)
    maps = model.backbone.features(x, ["stem", "layer1", "layer2", "layer3"])
    assert [tuple(m.shape[1:]) for m in maps.values()] == [(4, 32, 32), (4, 32, 32), (8, 16, 16), (16, 8, 8)]
    assert model(x).shape == (2, 7)
    assert grad_attention(model, "backbone.layer2", x, torch.tensor([0, 3])).shape == (2, 16, 16)


def test_option_a_pads_with_zeros_and_option_b_projects():
    x = torch.arange(2 * 2 * 4 * 4, dtype=torch.float).view(2, 2, 4, 4)
    out = PadShortcut(2, 5, 2)(x)
    assert out.shape == (2, 5, 2, 2)
    torch.testing.assert_close(out[:, :2], x[:, :, ::2, ::2])
    assert (out[:, 2:] == 0).all()
    assert sum(p.numel() for p in BasicBlock(4, 8, 2, "A").shortcut.parameters()) == 0
    assert sum(p.numel() for p in BasicBlock(4, 8, 2, "B").shortcut.parameters()) == 4 * 8 + 2 * 8


def test_bad_depths_widths_and_shortcuts_are_refused():
    for depth in (7, 21, 0, True):
        with pytest.raises(ValueError, match="6n \\+ 2"):
            blocks_per_stage(depth)
    with pytest.raises(ValueError, match="three positive"):
        cifar_resnet(8, widths=(4, 8))
    with pytest.raises(ValueError, match="shortcut"):
        BasicBlock(4, 4, shortcut="C")


def test_he_initialisation():
    torch.manual_seed(0)
    backbone = cifar_resnet(20)
    conv = backbone.layer3[0].conv2.weight  # fan_out = 64·9
    assert conv.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.1)
    bn = backbone.layer1[0].bn1
    assert (bn.weight == 1).all() and (bn.bias == 0).all()
