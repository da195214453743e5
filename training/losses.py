"""The training losses: cross-entropy against soft targets, and knowledge distillation (Hinton et al. 2015)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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


class TeacherEnsemble(nn.Module):
    """Several teachers as one: logits whose softened distribution is the mean of theirs.

    forward: (N, C, H, W) input -> (N, classes) logits T * log(mean_i softmax(logits_i / T)), so that
    softmax(logits / T), what distillation_loss compares, is the average of the teachers' softened
    predictions (an ensemble of two different models is better than either: Hinton et al. 2015, sec. 2).
    """

    def __init__(self, teachers: list[nn.Module], temperature: float) -> None:
        super().__init__()
        self.teachers = nn.ModuleList(teachers)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        softened = torch.stack([F.softmax(teacher(x).float() / self.temperature, dim=1) for teacher in self.teachers])
        return self.temperature * torch.log(softened.mean(dim=0).clamp_min(1e-12))
