"""Sharpen Focus (Wang et al. ICCV 2019): each loss on hand-sized maps, the attentions against independent
computations (captum, pytorch-grad-cam, a per-sample hand formula), the class rule, the options."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from attnbook.explain.postprocess import normalize, upsample
from attnbook.methods import sharpen_focus as sf
from attnbook.methods.base import Attention, AttentionModel
from attnbook.models.cifar_resnet import cifar_resnet
from attnbook.train import TrainConfig, fit

K = 6


@pytest.fixture
def model() -> sf.SharpenFocusModel:
    torch.manual_seed(0)
    return sf.SharpenFocusModel(cifar_resnet(8, widths=(4, 8, 8)), sf.SharpenFocusHead(8, K))


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.rand(4, 3, 32, 32), torch.tensor([0, 3, 5, 1])


# --- each loss on hand-sized maps -------------------------------------------------------------------

def test_soft_iou_known_values_and_identical_maps_give_one():
    a = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    b = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    assert sf.soft_iou(a, b).item() == pytest.approx(2 * 1 / 4)  # min sums to 1, a + b to 4
    assert sf.soft_iou(a, b, torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])).item() == 0.0  # the overlap is masked out
    assert sf.soft_iou(a, b, torch.full((1, 2, 2), 0.5)).item() == pytest.approx(0.25)
    m = torch.rand(3, 4, 4) + 0.1
    torch.testing.assert_close(sf.soft_iou(m, m, torch.ones(3, 4, 4)), torch.ones(3))
    assert sf.soft_iou(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)).item() == 0.0  # eps: no NaN


def test_consistency_loss_known_value():
    inner = torch.tensor([[[2.0, 0.0], [1.0, 1.0]]])
    mask = torch.tensor([[[1.0, 0.0], [0.0, 0.5]]])
    assert sf.consistency_loss(inner, mask).item() == pytest.approx(1 - 2.5 / 4)
    assert sf.consistency_loss(inner, mask, alpha=0.8).item() == pytest.approx(0.8 - 2.5 / 4)
    assert sf.consistency_loss(inner, torch.ones_like(inner)).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="resize the mask"):
        sf.consistency_loss(inner, torch.ones(1, 4, 4))


def test_mask_thresholds_at_0_55_of_the_max_with_slope_100():
    a = torch.tensor([[[2.0, 1.1], [0.0, 1.2]]])
    mask = sf.soft_mask(sf.normalize_maps(a, "sample"), 0.55, 100.0)
    expected = torch.sigmoid(100 * (torch.tensor([[[1.0, 0.55], [0.0, 0.6]]]) - 0.55))
    torch.testing.assert_close(mask, expected, atol=1e-6, rtol=0)
    assert mask[0, 0, 1].item() == pytest.approx(0.5, abs=1e-5) and mask[0, 1, 0].item() < 1e-20
    # raw maps ("none"): the threshold is 0.55 of the sample's own max (ω then acts on the raw scale)
    torch.testing.assert_close(sf.soft_mask(a, mode="none"), torch.sigmoid(100 * (a - 0.55 * 2.0)), atol=1e-6, rtol=0)


def test_normalisation_per_sample_per_batch_none():
    maps = torch.tensor([[[2.0, 1.0], [0.0, 0.0]], [[4.0, 0.0], [0.0, 0.0]]])
    torch.testing.assert_close(sf.normalize_maps(maps, "sample"), torch.tensor(
        [[[1.0, 0.5], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]]), atol=1e-7, rtol=0)
    torch.testing.assert_close(sf.normalize_maps(maps, "batch"), maps / 4, atol=1e-7, rtol=0)
    assert sf.normalize_maps(maps, "none") is maps
    # the port's batch scale: the first sample's mask is empty at 0.55 of the batch max (its own max is 0.5)
    mask = sf.soft_mask(sf.normalize_maps(maps, "batch"), mode="batch")
    assert mask[0].max() < 1e-2 and mask[1, 0, 0] > 0.99
    with pytest.raises(ValueError, match="normalisation"):
        sf.normalize_maps(maps, "layer")


def test_most_confusing_class_is_top1_if_wrong_else_second():
    logits = torch.tensor([[3.0, 1.0, 2.0], [1.0, 3.0, 2.0], [0.0, 1.0, 5.0], [0.0, 9.0, 5.0]])
    labels = torch.tensor([0, 0, 2, 2])
    assert sf.most_confusing_class(logits, labels).tolist() == [2, 1, 1, 1]
    conf, valid = sf.multilabel_confusing_class(logits, torch.tensor(
        [[1.0, 0, 1], [0, 1, 0], [0, 0, 1], [1, 1, 1]]))
    assert conf[:3].tolist() == [1, 2, 1] and valid.tolist() == [True, True, True, False]
    with pytest.raises(ValueError, match="K ≥ 2"):
        sf.most_confusing_class(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long))


def test_total_is_the_sum_of_the_terms(model, batch):
    x, y = batch
    out = model.train().losses(x, y)
    terms = out.classification + out.siou_inner + out.siou_last + out.consistency
    torch.testing.assert_close(out.loss, terms)
    torch.testing.assert_close(out.classification, F.cross_entropy(out.logits, y))
    assert 0 <= out.siou_inner.item() <= 1 and 0 <= out.siou_last.item() <= 1 and 0 <= out.consistency.item() <= 1
    assert out.maps["target_last"].shape == (4, 8, 8) and out.maps["target_inner"].shape == (4, 16, 16)
    half = model.losses(x, y, sf.SharpenFocusOptions(weight=0.5))
    torch.testing.assert_close(half.loss, out.classification + 0.5 * (terms - out.classification))


def test_the_losses_recompute_from_the_maps(model, batch):
    """sIoU_in uses the last layer's mask resized to the inner map; L_ac the inner target map."""
    x, y = batch
    out = model.train().losses(x, y)
    m = out.maps
    mask_in = upsample(m["mask_last"], (16, 16))
    torch.testing.assert_close(out.siou_last, sf.soft_iou(m["target_last"], m["confuser_last"], m["mask_last"]).mean())
    torch.testing.assert_close(out.siou_inner, sf.soft_iou(m["target_inner"], m["confuser_inner"], mask_in).mean())
    torch.testing.assert_close(out.consistency, sf.consistency_loss(m["target_inner"], mask_in).mean())


# --- training signal ---------------------------------------------------------------------------------

@pytest.mark.parametrize("attention", sf.ATTENTIONS)
def test_the_attention_terms_train_conv_weights_below_the_inner_layer(model, batch, attention):
    x, y = batch
    out = model.train().losses(x, y, sf.SharpenFocusOptions(attention=attention))
    grads = torch.autograd.grad(out.siou_inner + out.siou_last + out.consistency,
                                [model.backbone.stem.conv.weight, model.backbone.layer1[0].conv1.weight,
                                 model.backbone.layer3[0].conv2.weight])
    for g in grads:
        assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_gradients_through_the_channel_weights_or_detached(model, batch):
    x, y = batch
    model.train()
    params = list(model.parameters())
    through = torch.autograd.grad(model.losses(x, y).siou_last, params, allow_unused=True)
    detached_out = model.losses(x, y, sf.SharpenFocusOptions(grad_path="detached"))
    detached = torch.autograd.grad(detached_out.siou_last, params, allow_unused=True)
    # the head's weight w_c enters the last layer's map only through the gradient ∂Y^c/∂F = w_c / hw
    fc = [i for i, p in enumerate(params) if p is model.head.fc.weight][0]
    assert through[fc] is not None and through[fc].abs().sum() > 0
    assert detached[fc] is None or detached[fc].abs().sum() == 0
    torch.testing.assert_close(detached_out.siou_last, model.losses(x, y).siou_last)  # same values, other graph


def test_gradient_seed_ones_or_logits(model, batch):
    x, y = batch
    logits, acts = model.eval().forward_with_maps(x)
    seed = sf.one_hot(y, K)
    ones = sf.class_gradients(logits, acts, [seed], sf.SharpenFocusOptions(grad_path="detached"))[0]
    scaled = sf.class_gradients(logits, acts, [seed], sf.SharpenFocusOptions(grad_path="detached",
                                                                             grad_seed="logits"))[0]
    score = (logits * seed).sum().detach()
    for a, b in zip(ones, scaled):
        torch.testing.assert_close(b, score * a)
    assert not ones[0].requires_grad


def test_batched_and_separate_backward_agree(model, batch):
    x, y = batch
    model.train()
    params = list(model.parameters())
    outs = {mode: model.losses(x, y, sf.SharpenFocusOptions(backward=mode)) for mode in sf.BACKWARDS}
    grads = {mode: torch.autograd.grad(out.loss, params) for mode, out in outs.items()}
    torch.testing.assert_close(outs["batched"].loss, outs["separate"].loss)
    for a, b in zip(grads["batched"], grads["separate"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


# --- the attentions against independent computations -------------------------------------------------

def test_gradcam_matches_captum_and_pytorch_grad_cam(model, batch):
    x, y = batch
    model.eval()
    confuser = sf.most_confusing_class(model(x), y)
    _, maps = model.class_maps(x, y, confuser)
    ours = maps["gradcam"]["inner"][:, 0]  # [B, 16, 16], the target's Grad-CAM at layer2
    assert ours.max() > 0 and (ours == 0).any()
    theirs = LayerGradCam(model, model.backbone.layer2).attribute(x, y, relu_attributions=True)[:, 0]
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
    with GradCAM(model, [model.backbone.layer2]) as explainer:
        pgc = torch.from_numpy(explainer(x, [ClassifierOutputTarget(int(c)) for c in confuser]))
    torch.testing.assert_close(normalize(upsample(normalize(maps["gradcam"]["inner"][:, 1]), 32)), pgc,
                               rtol=0, atol=1e-5)


def _hand_maps(model: sf.SharpenFocusModel, image: torch.Tensor, cls: int) -> dict[str, torch.Tensor]:
    """One image, plain loops: F = layer2 output, g = ∂Y^c/∂F by autograd of that image alone."""
    b = model.backbone
    feat = b.layer2(b.layer1(b.stem(b.normalize(image[None])))).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(model.head(b.layer3(feat))[0, cls], feat)
    f, g = feat[0].detach(), g[0]
    channels, h, w = f.shape
    ach, grad_cam, apx = torch.zeros(h, w), torch.zeros(h, w), torch.zeros(h, w)
    for k in range(channels):
        alpha_pos = sum(max(g[k, i, j].item(), 0.0) for i in range(h) for j in range(w)) / (h * w)
        alpha = sum(g[k, i, j].item() for i in range(h) for j in range(w)) / (h * w)
        ach += alpha_pos * f[k]
        grad_cam += alpha * f[k]
        apx += g[k] * f[k] / channels
    return {"channelwise": ach.clamp(min=0), "gradcam": grad_cam.clamp(min=0), "pixelwise": apx.clamp(min=0)}


def test_channel_and_pixel_wise_attention_match_the_hand_formula(model, batch):
    x, y = batch
    model.eval()
    confuser = sf.most_confusing_class(model(x), y)
    _, maps = model.class_maps(x, y, confuser)
    for i in range(2):
        for slot, cls in ((0, int(y[i])), (1, int(confuser[i]))):
            hand = _hand_maps(model, x[i], cls)
            for attention in sf.ATTENTIONS:
                torch.testing.assert_close(maps[attention]["inner"][i, slot], hand[attention], rtol=1e-4, atol=1e-6)
    assert not torch.equal(maps["channelwise"]["inner"], maps["gradcam"]["inner"])  # the ReLU on g matters here


# --- interface, multi-label, training ---------------------------------------------------------------

def test_head_and_model_answer_the_attention_interface(model, batch):
    x, _ = batch
    model.eval()
    features = model.backbone(x)
    out = model.head.attend(features)
    assert isinstance(model.head, AttentionModel) and isinstance(out, Attention)
    assert out.names == ("target", "confuser") and out.maps.shape == (4, 2, 8, 8) and (out.maps >= 0).all()
    torch.testing.assert_close(out.logits, model.head(features))
    whole = model.attend(x)
    torch.testing.assert_close(whole.maps, out.maps, rtol=1e-5, atol=1e-7)  # ∂Y/∂F at the last layer: head only
    assert whole.extras["inner"].shape == (4, 2, 16, 16)
    assert torch.equal(whole.extras["target"], whole.logits.argmax(1))
    px = model.attend(x, attention="pixelwise")
    assert not torch.equal(px.maps, whole.maps)


def test_multilabel_union_and_pairs_per_present_class(model, batch):
    x, y = batch
    model.train()
    targets = torch.zeros(4, K)
    targets[torch.arange(4), y] = 1
    union = model.losses(x, targets, multilabel=True)
    each = model.losses(x, targets, sf.SharpenFocusOptions(multilabel_target="each"), multilabel=True)
    torch.testing.assert_close(union.loss, each.loss)  # one present class: one pair either way
    torch.testing.assert_close(union.classification, F.multilabel_soft_margin_loss(union.logits, targets))
    targets[torch.arange(4), (y + 2) % K] = 1
    union, each = (model.losses(x, targets, sf.SharpenFocusOptions(multilabel_target=t), multilabel=True)
                   for t in sf.MULTILABEL_TARGETS)
    assert math.isfinite(union.loss.item()) and math.isfinite(each.loss.item())
    assert not torch.isclose(union.siou_last, each.siou_last)
    assert (targets.gather(1, union.confuser[:, None]) == 0).all(), "the confuser is an absent class"


def test_objective_trains_with_the_books_loop(model, batch):
    x, y = batch
    data = [{"image": x[i], "label": y[i]} for i in range(4)]
    before = model.backbone.stem.conv.weight.detach().clone()
    history = fit(model, data, TrainConfig(epochs=1, batch_size=4, lr=1e-2, progress=False),
                  objective=sf.SharpenFocusObjective())
    assert {"train_siou_inner", "train_siou_last", "train_l_ac", "train_cls"} <= set(history[0])
    assert not torch.equal(before, model.backbone.stem.conv.weight)
    with torch.no_grad():  # evaluation: the plain loss, no gradients needed
        out = sf.SharpenFocusObjective()(model.eval(), {"image": x, "label": y})
    torch.testing.assert_close(out.loss, F.cross_entropy(model(x), y))


def test_options_are_validated():
    with pytest.raises(ValueError, match="grad_seed"):
        sf.SharpenFocusOptions(grad_seed="zeros")
    with pytest.raises(ValueError, match="sigma"):
        sf.SharpenFocusOptions(sigma=1.5)
    with pytest.raises(ValueError, match="unknown SharpenFocusOptions"):
        sf.SharpenFocusOptions().replace(gamma=1)
    port = sf.SharpenFocusOptions().replace(**sf.PORT_OPTIONS)
    assert (port.grad_seed, port.normalize, port.grad_path) == ("logits", "batch", "detached")
    with pytest.raises(ValueError, match="attention"):
        sf.SharpenFocusHead(4, 2, attention="cam")
    with pytest.raises(AttributeError):
        sf.SharpenFocusModel(cifar_resnet(8), sf.SharpenFocusHead(64, 2), inner="layer9")
