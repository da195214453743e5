"""The training losses: cross-entropy against soft targets, and knowledge distillation (Hinton et al. 2015)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against per-row target distributions (smoothed one-hot or FER+ votes)."""
    return torch.sum(-target * F.log_softmax(logits.float(), dim=1), dim=1).mean()


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the temperature-softened distributions, times T².

    The T² keeps its gradients the size of the cross-entropy's whatever the temperature, so the mixing
    weight means the same at every T.
    """
    student = F.log_softmax(student_logits.float() / temperature, dim=1)
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    return F.kl_div(student, teacher, reduction="batchmean", log_target=True) * temperature**2
