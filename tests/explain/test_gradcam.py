"""Gradient attention: oracles (captum, pytorch-grad-cam), hand-sized examples, differentiability."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import LayerAttribution, LayerGradCam
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from attnbook.explain import EXPLAINERS, explain
from attnbook.explain.gradcam import (
    WEIGHTINGS,
    attention_maps,
    capture_activations,
    grad_attention,
    resolve_layer,
    select_score,
)
from attnbook.explain.postprocess import normalize, upsample

SIZE = 64


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(3, 3, SIZE, SIZE), torch.tensor([1, 5, 7])  # targets differ per sample


# ------------------------------------------------------------------------------------------------
# oracles at layer3 of a random-init resnet18 (layer4 gradients are constant in space)
# ------------------------------------------------------------------------------------------------
def test_gradcam_matches_captum(resnet, batch):
    x, t = batch
    ours = grad_attention(resnet, "layer3", x, t)  # [B, 4, 4]
    theirs = LayerGradCam(resnet, resnet.layer3).attribute(x, t, relu_attributions=True)  # [B, 1, 4, 4]
    assert ours.shape == (3, 4, 4)
    assert ours.max() > 0 and (ours == 0).any()  # neither trivial nor all-positive
    torch.testing.assert_close(ours, theirs[:, 0], rtol=1e-5, atol=1e-7)
    up = LayerAttribution.interpolate(theirs, (SIZE, SIZE), "bilinear")[:, 0]
    torch.testing.assert_close(normalize(upsample(ours, SIZE)), normalize(up), rtol=0, atol=1e-5)


@pytest.mark.parametrize("method,oracle", [("gradcam", GradCAM), ("gradcam++", GradCAMPlusPlus)])
def test_matches_pytorch_grad_cam(resnet, batch, method, oracle):
    x, t = batch
    with oracle(resnet, [resnet.layer3]) as explainer:
        theirs = torch.from_numpy(explainer(x, [ClassifierOutputTarget(int(c)) for c in t]))  # [B, H, W]
    # pytorch-grad-cam: ReLU, min-max at feature resolution, cv2 bilinear resize, min-max again
    ours = normalize(upsample(normalize(grad_attention(resnet, "layer3", x, t, method)), SIZE))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_batch_equals_one_by_one(resnet, batch):
    x, t = batch
    together = grad_attention(resnet, "layer3", x, t, "pixelwise")
    alone = torch.cat([grad_attention(resnet, "layer3", x[i : i + 1], t[i : i + 1], "pixelwise") for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-8)


# ------------------------------------------------------------------------------------------------
# hand-sized example: A is the input itself, the score is linear in A, so dS/dA = W[target]
# ------------------------------------------------------------------------------------------------
A = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]]])  # [K=2, 2, 2]
W = torch.tensor([[[1.0, -1.0], [2.0, 0.0]], [[-2.0, -2.0], [0.0, 4.0]]])  # gradients per channel
EXPECTED = {
    "gradcam": 0.5 * A[0],  # α = (0.5, 0)
    "channelwise": 0.75 * A[0] + 1.0 * A[1],  # α = mean ReLU(g) = (0.75, 1)
    "pixelwise": torch.tensor([[0.5, 0.0], [3.0, 0.0]]),  # ReLU(½ Σ_k g ⊙ A)
    # α_ij = g²/(2g² + Σ A·g³): channel 0 (ΣA = 10) → w = 1·1/12 + 2·1/22; channel 1 (ΣA = 2) → w = 4·1/10
    "gradcam++": (1 / 12 + 2 / 22) * A[0] + 0.4 * A[1],
}


def _linear_score_model() -> nn.Module:
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(8, 2, bias=False))
    with torch.no_grad():
        model[2].weight.copy_(torch.stack([torch.zeros(8), W.flatten()]))
    return model


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_hand_sized_known_values(method):
    maps = grad_attention(_linear_score_model(), "0", A.unsqueeze(0), torch.tensor([1]), method)
    torch.testing.assert_close(maps[0], torch.relu(EXPECTED[method]), rtol=1e-5, atol=1e-6)


def test_registry_lists_all_methods():
    assert set(WEIGHTINGS) == {"gradcam", "gradcam++", "channelwise", "pixelwise"}
    assert {"cam", "gradcam", "gradcam++", "activation", "guided_backprop", "guided_gradcam", "lime"} <= set(EXPLAINERS)


# ------------------------------------------------------------------------------------------------
# differentiable attention (create_graph=True)
# ------------------------------------------------------------------------------------------------
class _TinyNet(nn.Module):
    """conv(w1) → ReLU → conv → ``feat`` → tanh → conv(w3) → ReLU → GAP → linear.

    ``w1`` (upstream of the layer) and ``w3`` (downstream) are settable tensors; the tanh makes
    dS/dA a smooth function of both, so the gradients' own graph is exercised.
    """

    def __init__(self) -> None:
        super().__init__()
        self.w1 = torch.randn(3, 2, 3, 3, dtype=torch.float64)
        self.w3 = torch.randn(4, 4, 3, 3, dtype=torch.float64)
        self.conv2 = nn.Conv2d(3, 4, 3, padding=1).double()
        self.feat = nn.Identity()
        self.fc = nn.Linear(4, 3).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.feat(self.conv2(F.relu(F.conv2d(x, self.w1, padding=1))))
        h = F.relu(F.conv2d(torch.tanh(a), self.w3, padding=1))
        return self.fc(h.mean(dim=(2, 3)))


@pytest.mark.parametrize("method", sorted(WEIGHTINGS))
def test_create_graph_passes_gradcheck(method):
    net, x, t = _TinyNet(), torch.randn(2, 2, 5, 5, dtype=torch.float64), torch.tensor([0, 2])

    def maps_of(w1: torch.Tensor, w3: torch.Tensor) -> torch.Tensor:
        net.w1, net.w3 = w1, w3
        return grad_attention(net, "feat", x, t, method, create_graph=True)

    w1, w3 = net.w1.clone().requires_grad_(True), net.w3.clone().requires_grad_(True)
    assert maps_of(w1, w3).abs().sum() > 0
    assert torch.autograd.gradcheck(maps_of, (w1, w3), eps=1e-6, atol=1e-5)


def test_create_graph_trains_resnet_conv_weights(resnet, batch):
    x, t = batch
    resnet.zero_grad(set_to_none=True)  # the pytorch-grad-cam oracle leaves .grad behind
    maps = grad_attention(resnet, "layer3", x, t, "channelwise", create_graph=True)
    maps.sum().backward()
    assert resnet.layer2[0].conv1.weight.grad.abs().sum() > 0  # upstream of the layer, via A
    assert resnet.layer4[0].conv1.weight.grad.abs().sum() > 0  # downstream, only via dS/dA
    resnet.zero_grad(set_to_none=True)


def test_post_hoc_maps_are_detached(resnet, batch):
    x, t = batch
    assert not grad_attention(resnet, "layer3", x, t).requires_grad


def test_one_forward_many_maps(resnet, batch):
    """Sharpen Focus's pattern: one forward, maps of two scores at two layers, then a loss."""
    x, t = batch
    with capture_activations(resnet, ["layer3", "layer4"]) as acts:
        logits = resnet(x)
    a3, a4 = attention_maps(acts, select_score(logits, t), "pixelwise", create_graph=True, retain_graph=True)
    (b3,) = attention_maps(acts[:1], select_score(logits, (t + 1) % 10), "pixelwise", create_graph=True)
    assert a3.shape == (3, 4, 4) and a4.shape == (3, 2, 2)
    torch.testing.assert_close(a3.detach(), grad_attention(resnet, "layer3", x, t, "pixelwise"))
    assert not torch.allclose(a3, b3)
    resnet.zero_grad(set_to_none=True)


# ------------------------------------------------------------------------------------------------
# layers, targets, robustness
# ------------------------------------------------------------------------------------------------
def test_layer_by_name_or_module(resnet, batch):
    x, t = batch
    torch.testing.assert_close(grad_attention(resnet, "layer3", x, t), grad_attention(resnet, resnet.layer3, x, t))
    assert resolve_layer(nn.Sequential(resnet), "0.layer3.1") is resnet.layer3[1]
    with pytest.raises(ValueError, match="valid names:.*layer3"):
        resolve_layer(resnet, "layer9")
    with pytest.raises(ValueError, match="not a submodule"):
        resolve_layer(resnet, nn.Conv2d(1, 1, 1))


def test_callable_target_and_tuple_output(resnet, batch):
    """EAT's case: explain an attribute score from a second output head."""
    x, t = batch

    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = resnet

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.net(x)
            return logits, 2 * logits[:, 3:6]

    via_fn = grad_attention(TwoHeads(), "net.layer3", x, lambda out: out[1][:, 1])  # attribute 1 = 2·class 4
    torch.testing.assert_close(via_fn, 2 * grad_attention(resnet, "layer3", x, 4))


def test_bad_inputs_raise_clear_errors(resnet, batch):
    x, t = batch
    with pytest.raises(ValueError, match="unknown method"):
        grad_attention(resnet, "layer3", x, t, "gradcam+++")
    with pytest.raises(ValueError, match=r"shape \[3\]"):
        grad_attention(resnet, "layer3", x, t[:2])
    with pytest.raises(TypeError, match="LongTensor"):
        grad_attention(resnet, "layer3", x, t.float())
    with pytest.raises(RuntimeError, match="ran twice"):
        grad_attention(resnet, "layer3.0.relu", x, t)  # torchvision reuses this ReLU module
    with pytest.raises(ValueError, match="unknown explainer"):
        explain("gradcamm", resnet, x, t, layer="layer3")
    with pytest.raises(ValueError, match="needs layer="):
        explain("gradcam", resnet, x, t)


def test_inplace_relu_after_layer_and_frozen_model_under_no_grad():
    torch.manual_seed(1)
    inplace = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 5, 3), nn.Flatten(),
                            nn.LazyLinear(3))
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([0, 2])
    inplace(x)  # materialise the lazy layer
    plain = nn.Sequential(*[nn.ReLU() if isinstance(m, nn.ReLU) else m for m in inplace])
    expected = grad_attention(plain, "0", x, t, "pixelwise")
    for p in inplace.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        got = grad_attention(inplace, "0", x, t, "pixelwise")
    assert expected.abs().sum() > 0
    torch.testing.assert_close(got, expected)
    assert not x.requires_grad
