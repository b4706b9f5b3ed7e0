"""EAT (Xu et al. 2020) on hand-sized inputs: the batched heads, Eq. 6, the EAR closed form, the losses."""
from __future__ import annotations

import torch
from torch import nn

from attnbook.methods.base import Attention, AttentionModel
from attnbook.methods.eat import BatchedHeads, EATHead, eat_losses, sentence

C, K, NA, DE = 5, 3, 4, 6


def _head(**options) -> EATHead:
    torch.manual_seed(0)
    return EATHead(C, K, NA, embed_dim=DE, hidden=7, **options).eval()


def test_batched_heads_equal_a_loop_of_heads() -> None:
    torch.manual_seed(0)
    heads = BatchedHeads(C, num_heads=4, out=2, hidden=3, depth=2)
    x = torch.randn(2, C, 3, 5)
    looped = torch.stack([heads.head(n)(x) for n in range(4)], dim=1)
    torch.testing.assert_close(heads(x), looped)


def test_lambda_one_eta_zero_is_the_base_model() -> None:
    head = _head(lam=1.0, eta=0.0)
    x = torch.randn(3, C, 4, 4)
    base = head.g_c.head(0)  # g_c alone: the base model's head
    torch.testing.assert_close(head(x), base(x))
    torch.testing.assert_close(head.outputs(x).base_logits, base(x))


def test_final_logits_mix_base_and_integrated_by_eq6() -> None:
    head = _head(lam=0.7, eta=1.3)
    out = head.outputs(torch.randn(2, C, 4, 4))
    torch.testing.assert_close(out.logits, 0.7 * out.base_logits + 1.3 * out.integrated_logits)


def test_ear_of_a_linear_integrator_is_the_closed_form() -> None:
    """c_i = w·vec(E) + b ⇒ ∂c_ŷ/∂E_a[i, j] = η·w[ŷ, i·De + j] ⇒ s_i = η·Σ_j w[ŷ, i·De + j] (Eq. 9-10)."""
    head = _head(integrator="linear", eta=0.8)
    x = torch.randn(3, C, 4, 4)
    scores, logits = head.ear(x)
    weight = head.g_i[1].weight.detach().view(K, NA + 1, DE)  # rows: Na attributes, then E_p
    expected = 0.8 * weight[logits.argmax(1), :NA].sum(-1)
    torch.testing.assert_close(scores, expected)
    target = torch.tensor([2, 0, 1])
    torch.testing.assert_close(head.ear(x, target)[0], 0.8 * weight[target, :NA].sum(-1))


def test_gradients_reach_the_backbone_from_the_attribute_loss() -> None:
    torch.manual_seed(0)
    f_img = nn.Sequential(nn.Conv2d(3, C, 3, padding=1), nn.ReLU())
    head = _head()
    out = head.outputs(f_img(torch.randn(2, 3, 6, 6)))
    _, l_a = eat_losses(out, torch.tensor([0, 1]), torch.tensor([[1, 0, 1, 0], [0, 1, 0, 1]]))
    l_a.backward()
    grad = f_img[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert head.g_c.fc_weight.grad is None  # l_a does not touch g_c


def test_attribute_loss_is_the_mean_binary_ce() -> None:
    head = _head()
    out = head.outputs(torch.randn(2, C, 4, 4))
    labels = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 1]])
    p = torch.sigmoid(out.attribute_logits)
    manual = -(labels * p.log() + (1 - labels) * (1 - p).log()).mean()
    torch.testing.assert_close(eat_losses(out, torch.tensor([0, 1]), labels)[1], manual)


def test_attend_follows_the_interface_and_grounds_class_and_attributes() -> None:
    head = _head()
    features = torch.rand(2, C, 4, 4)
    with torch.no_grad():  # attend computes its own gradients
        att = head.attend(features)
    assert isinstance(head, AttentionModel) and isinstance(att, Attention)
    assert att.maps.shape == (2, 4, 4, 4) and (att.maps >= 0).all()
    assert att.map_names == ("class", "attribute 1", "attribute 2", "attribute 3")
    torch.testing.assert_close(att.logits, head(features))
    scores, _ = head.ear(features)
    torch.testing.assert_close(att.extras["ear"], scores)
    torch.testing.assert_close(att.extras["top"], scores.topk(3, dim=1).indices)
    # the class map is Grad-CAM of c_ŷ at the features: ReLU(Σ_k mean(∂c_ŷ/∂v_k)·v_k)
    v = features.clone().requires_grad_(True)
    c = head(v)
    (g,) = torch.autograd.grad(c.gather(1, c.argmax(1)[:, None]).sum(), v)
    torch.testing.assert_close(att.map("class"), torch.relu((g.mean((2, 3), keepdim=True) * features).sum(1)))


def test_without_integrator_attributes_are_an_auxiliary_loss_only() -> None:
    head = _head(integrator=None, lam=1.0)
    x = torch.randn(2, C, 4, 4)
    torch.testing.assert_close(head(x), head.g_c.head(0)(x))
    assert head.attend(x).extras["ear"].abs().sum() == 0


def test_sentence() -> None:
    assert sentence(["head_color::red", "wing_pattern::dots", "tail_shape::long"], "species_03") == (
        "This bird has head color red, wing pattern dots and tail shape long, so it is species_03.")


def test_registered_head_answers_the_interface() -> None:
    from attnbook.methods.registry import make_head

    head = make_head("eat", C, K, num_attributes=NA).eval()
    att = head.attend(torch.rand(2, C, 4, 4))
    assert att.logits.shape == (2, K) and att.maps.shape == (2, 4, 4, 4) and (att.maps >= 0).all()
