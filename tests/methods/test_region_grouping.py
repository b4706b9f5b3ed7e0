"""Region Grouping's maths on hand-sized inputs, with scipy as the oracle for Eq. 2."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from attnbook.methods import region_grouping as rg
from attnbook.methods.base import Attention, AttentionModel


def test_assignments_sum_to_one_and_follow_the_distance():
    torch.manual_seed(0)
    x = torch.rand(2, 4, 3, 5)
    d = torch.rand(3, 4)
    q = rg.assign_paper(x, d, torch.full((3,), 0.5))
    torch.testing.assert_close(q.sum(1), torch.ones(2, 3, 5))
    # a feature equal to d_1 is assigned mostly to part 1 when the others are far
    d = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    x = torch.zeros(1, 2, 1, 1)
    q = rg.assign_paper(x, d, torch.ones(3))
    expected = torch.softmax(torch.tensor([0.0, -12.5, -12.5]), 0)  # −‖x − d_k‖²/2 with σ = 1
    torch.testing.assert_close(q[0, :, 0, 0], expected)


def test_paper_form_equals_code_form_under_the_reparametrisation():
    torch.manual_seed(1)
    x = torch.relu(torch.randn(2, 6, 4, 4))
    d = torch.rand(5, 6)
    s = torch.randn(5)
    paper = rg.assign_paper(x, d, rg.sigma_from_smooth(s))
    code = rg.assign_code(x, d, s)
    torch.testing.assert_close(paper, code, atol=1e-5, rtol=1e-4)
    # σ = sqrt(sigmoid(s)/2): at s = 0 the code's temperature 0.5 is σ = 0.5
    assert float(rg.sigma_from_smooth(torch.zeros(1))) == pytest.approx(0.5)


def test_part_occurrence_on_a_hand_sized_map():
    q = torch.zeros(1, 2, 5, 5)
    q[0, 0, 2, 2] = 1.0  # a single hot pixel in the middle
    q[0, 1] = 0.5
    t = rg.part_occurrence(q, radius=2, std=0.4)  # valid conv of a 5×5 map with a 5×5 kernel: one value
    g = rg.gaussian_kernel(2, 0.4)
    assert float(g.sum()) == pytest.approx(1.0)
    assert float(t[0, 0]) == pytest.approx(float(g[2, 2]))  # the kernel's centre weight
    assert float(t[0, 1]) == pytest.approx(0.5)  # a constant map stays constant
    manual = max(float((rg.gaussian_kernel(1, 1.0) * torch.arange(36.).view(6, 6)[i:i + 3, j:j + 3]).sum())
                 for i in range(4) for j in range(4))
    got = rg.part_occurrence(torch.arange(36.).view(1, 1, 6, 6), radius=1, std=1.0)
    assert float(got) == pytest.approx(manual)
    # radius 0: plain max pooling
    assert float(rg.part_occurrence(q, radius=0)[0, 0]) == 1.0


def test_beta_quantiles_match_scipy():
    q = rg.beta_quantiles(4, 2.0, 3.0)
    expected = stats.beta.ppf([1 / 8, 3 / 8, 5 / 8, 7 / 8], 2.0, 3.0)
    np.testing.assert_allclose(q.numpy(), expected)


def test_prior_loss_is_zero_at_the_quantiles_and_matches_the_log_wasserstein():
    alpha, beta, n = 2.0, 3.0, 6
    quantiles = rg.beta_quantiles(n, alpha, beta).float()
    shuffled = quantiles[torch.tensor([3, 0, 5, 1, 4, 2])]
    occurrence = torch.stack([shuffled, quantiles.flip(0)], 1)  # two parts, each a permutation of the quantiles
    assert float(rg.occurrence_prior_loss(occurrence, alpha, beta)) == pytest.approx(0.0, abs=1e-6)
    # on hand samples, L_W of one part = scipy's 1-D Wasserstein distance between the log-rescaled samples
    samples = torch.tensor([[0.9], [0.05], [0.6], [0.3], [0.99], [0.2]], dtype=torch.float64)
    ours = float(rg.occurrence_prior_loss(samples, alpha, beta))
    oracle = stats.wasserstein_distance(np.log(samples[:, 0].numpy() + 1e-5),
                                        np.log(stats.beta.ppf((2 * np.arange(1, n + 1) - 1) / (2 * n), alpha, beta)
                                               + 1e-5))
    assert ours == pytest.approx(oracle, rel=1e-9)
    # averaged over parts
    two = torch.cat([samples, rg.beta_quantiles(n, alpha, beta)[:, None]], 1)
    assert float(rg.occurrence_prior_loss(two, alpha, beta)) == pytest.approx(ours / 2, rel=1e-9)
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        rg.occurrence_prior_loss(torch.rand(3))


def test_region_features_are_normalised_residuals():
    x = torch.zeros(1, 2, 1, 2)
    x[0, :, 0, 0] = torch.tensor([3.0, 0.0])
    x[0, :, 0, 1] = torch.tensor([0.0, 4.0])
    q = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # part 1 owns pixel 1, part 2 pixel 2
    d = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z = rg.region_features(x, q, d, torch.tensor([0.5, 2.0]))  # [B, C, K]
    torch.testing.assert_close(z[0, :, 0], torch.tensor([1.0, 0.0]))  # (3−1, 0)/0.5 normalised
    torch.testing.assert_close(z[0, :, 1], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(z.norm(dim=1), torch.ones(1, 2))


@pytest.mark.parametrize("assignment", rg.ASSIGNMENTS)
@pytest.mark.parametrize("attention", [True, False])
def test_head_attends_and_gradients_reach_the_dictionary_and_sigma(assignment, attention):
    torch.manual_seed(0)
    head = rg.RegionGroupingHead(8, 3, num_parts=4, assignment=assignment, attention=attention)
    features = torch.relu(torch.randn(6, 8, 7, 7))
    out = head.outputs(features)
    assert out.logits.shape == (6, 3) and out.assign.shape == (6, 4, 7, 7) and out.occurrence.shape == (6, 4)
    torch.testing.assert_close(out.attention.sum(1), torch.ones(6))
    if not attention:  # a = 1/K and Σ_k q^k = 1: the attribution is flat
        torch.testing.assert_close(out.attribution, torch.full((6, 1, 7, 7), 0.25))
    loss = torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 2, 0, 1, 2])) + head.prior_loss(out)
    loss.backward()
    for p in (head.dictionary, head.smooth):
        assert p.grad is not None and p.grad.abs().sum() > 0
    # the prior alone also reaches both (the paper's argument for the log rescaling)
    head.zero_grad()
    head.prior_loss(head.outputs(features)).backward()
    assert head.dictionary.grad.abs().sum() > 0 and head.smooth.grad.abs().sum() > 0
    head.eval()
    att = head.attend(features)
    assert isinstance(head, AttentionModel) and isinstance(att, Attention)
    assert att.names == ("part 1", "part 2", "part 3", "part 4")
    torch.testing.assert_close(att.maps.sum(1), torch.ones(6, 7, 7))
    torch.testing.assert_close(att.logits, head(features))
    expected = (att.maps * att.extras["attention"][:, :, None, None]).sum(1, keepdim=True)
    torch.testing.assert_close(att.extras["attribution"], expected)


def test_head_rejects_bad_options():
    with pytest.raises(ValueError, match="assignment"):
        rg.RegionGroupingHead(4, 2, assignment="kmeans")
    with pytest.raises(ValueError, match="num_parts"):
        rg.RegionGroupingHead(4, 2, num_parts=1)
    with pytest.raises(ValueError, match="channels"):
        rg.RegionGroupingHead(4, 2).outputs(torch.rand(2, 3, 5, 5))


def test_dictionary_starts_positive_and_sigma_at_half():
    head = rg.RegionGroupingHead(16, 2, num_parts=5)
    assert (head.dictionary > 0).all()
    torch.testing.assert_close(head.sigma, torch.full((5,), math.sqrt(0.25)))
