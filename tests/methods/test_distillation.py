"""Tests for the BR-NPA distillation loss (lib/attnbook/methods/distillation.py)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnbook.methods.distillation import distillation_loss

STUDENT = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
TEACHER = torch.tensor([[2.0, 1.0, 0.0], [0.5, 0.5, 2.0]])
TARGET = torch.tensor([1, 2])


def hand_loss(alpha: float, temperature: float) -> torch.Tensor:
    """α·CE + (1 − α)·T²·KL(teacher ‖ student), written out from log_softmax, exp and sum."""
    log_p_student = F.log_softmax(STUDENT, dim=1)
    cross_entropy = -(log_p_student[0, 1] + log_p_student[1, 2]) / 2
    log_q_student = F.log_softmax(STUDENT / temperature, dim=1)
    log_q_teacher = F.log_softmax(TEACHER / temperature, dim=1)
    kl_per_row = (log_q_teacher.exp() * (log_q_teacher - log_q_student)).sum(dim=1)  # [2]
    return alpha * cross_entropy + (1 - alpha) * temperature**2 * kl_per_row.sum() / 2


@pytest.mark.parametrize("alpha,temperature", [(0.3, 2.0), (0.0, 4.0), (0.7, 1.0)])
def test_matches_hand_computation(alpha: float, temperature: float) -> None:
    loss = distillation_loss(STUDENT, TEACHER, TARGET, alpha=alpha, temperature=temperature)
    torch.testing.assert_close(loss, hand_loss(alpha, temperature))


def test_alpha_one_is_pure_cross_entropy() -> None:
    loss = distillation_loss(STUDENT, TEACHER, TARGET, alpha=1.0, temperature=3.0)
    torch.testing.assert_close(loss, F.cross_entropy(STUDENT, TARGET))


def test_identical_logits_leave_only_cross_entropy() -> None:
    loss = distillation_loss(STUDENT, STUDENT.clone(), TARGET, alpha=0.5, temperature=2.0)
    torch.testing.assert_close(loss, 0.5 * F.cross_entropy(STUDENT, TARGET))


def test_teacher_gets_no_gradient() -> None:
    student = STUDENT.clone().requires_grad_(True)
    teacher = TEACHER.clone().requires_grad_(True)
    distillation_loss(student, teacher, TARGET, alpha=0.5, temperature=2.0).backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(STUDENT, TEACHER, TARGET, alpha=1.5, temperature=1.0)
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(STUDENT, TEACHER, TARGET, alpha=0.5, temperature=0.0)
    with pytest.raises(ValueError, match=r"\[B, K\]"):
        distillation_loss(STUDENT, TEACHER[:, :2], TARGET, alpha=0.5, temperature=1.0)
