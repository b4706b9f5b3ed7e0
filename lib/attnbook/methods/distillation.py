"""Logit distillation from a low-resolution teacher to a high-resolution student.

Paper: BR-NPA (Gomez et al.) §3.1: ``L = α·CE(ỹ_s, y) + (1 − α)·KL(ỹ_t ‖ ỹ_s)``.
Chapter: nbs/05_brnpa.ipynb.

As in the authors' code (and Hinton et al.), both distributions are softened by a temperature T,
``KL(softmax(z_t/T) ‖ softmax(z_s/T))`` is averaged over the batch and multiplied by T² so that
its gradient keeps the same scale as T changes; CE uses the unsoftened student logits. The
authors' code names the mixing weight ``kl_interp`` and puts it on the KL term: ``kl_interp = 1 − α``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    *,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """``α·CE(z_s, y) + (1 − α)·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))``. Paper: BR-NPA §3.1.

    ``student_logits`` and ``teacher_logits`` are ``[B, K]``; ``target`` is ``[B]`` class indices.
    Returns a scalar. The teacher is detached: no gradient flows into it. α and T were tuned per
    task with Optuna in the paper, so they have no defaults here.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1] (1 = pure cross-entropy), got {alpha}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if student_logits.ndim != 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student and teacher logits must both be [B, K]; got {tuple(student_logits.shape)} "
            f"and {tuple(teacher_logits.shape)}"
        )
    cross_entropy = F.cross_entropy(student_logits, target)
    student_log_probs = F.log_softmax(student_logits / temperature, dim=1)  # [B, K]
    teacher_probs = F.softmax(teacher_logits.detach() / temperature, dim=1)  # [B, K]
    kl = F.kl_div(student_log_probs, teacher_probs, reduction="batchmean")
    return alpha * cross_entropy + (1 - alpha) * temperature**2 * kl
