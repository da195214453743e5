"""One training epoch and its schedule: what fer-train runs each epoch and fer-ckplus runs per fold.

A step: the learning rate of the schedule, a batch of crops altered as rooms and cameras alter faces (photometric.py),
through the model's preprocessing, the batched geometric augmentation, targets (one-hot, FER+ votes, label smoothing),
the loss (cross-entropy, plus distillation when a teacher is given), SGD, then the EMA of the weights.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from ferstream.model.modelfile import to_input_tensor
from ferstream.model.preprocess import Preprocessing

from .augment import AugmentSpec, augment_batch
from .data import FaceSet
from .losses import distillation_loss, soft_cross_entropy
from .photometric import PhotometricSpec, perturb_crops

MOMENTUM = 0.9  # SGD with Nesterov momentum, as the reference VGG was trained


@dataclass(frozen=True)
class StepRecipe:
    """What a training step does besides the forward pass.

    augment: the geometric warp, flip and erasing on the network's input.
    photometric: light, blur, noise and JPEG alterations of the uint8 crops, before the preprocessing
        (off unless given: fer-train's defaults turn it on).
    label_smoothing: share of each target spread evenly over the classes (Szegedy et al. 2016).
    vote_weight: where a face has FER+ votes, their share of its target; the rest is the one-hot label.
    distill_weight, temperature: with a teacher, the distillation term's share of the loss and the
        softening of both distributions (Hinton et al. 2015); clean_teacher: the teacher sees the batch
        without its photometric alterations (same geometric augmentation).
    autocast: the dtype forward passes are autocast to (torch.bfloat16), or None for fp32.
    """

    augment: AugmentSpec = field(default_factory=AugmentSpec)
    photometric: PhotometricSpec = field(default_factory=lambda: PhotometricSpec(probability=0.0))
    label_smoothing: float = 0.1
    vote_weight: float = 0.5
    distill_weight: float = 0.5
    temperature: float = 4.0
    clean_teacher: bool = False
    autocast: torch.dtype | None = None


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (shuffling, augmentation, dropout, initial weights)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_at(step: int, total: int, peak: float) -> float:
    """The learning rate at step of total: linear warm-up over the first 5 % of steps, then cosine to zero."""
    warmup = max(1, int(0.05 * total))
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """SGD, Nesterov momentum 0.9, L2 weight decay on every parameter; lr is replaced each step by the schedule."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, nesterov=True, weight_decay=weight_decay)


def targets_for(faces: FaceSet, index: np.ndarray, smoothing: float, vote_weight: float) -> torch.Tensor:
    """(len(index), 7) target distributions: one-hot labels mixed with FER+ votes where the faces carry
    them (vote_weight of each), then label smoothing."""
    target = F.one_hot(torch.from_numpy(faces.labels[index]), 7).float()
    if faces.soft_labels is not None:
        target = (1 - vote_weight) * target + vote_weight * torch.from_numpy(faces.soft_labels[index])
    return target * (1 - smoothing) + smoothing / target.shape[1]


def train_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, faces: FaceSet, order: np.ndarray,
                batch_size: int, preprocessing: Preprocessing, recipe: StepRecipe, device: torch.device,
                schedule: Callable[[int], float], first_step: int = 0, ema: AveragedModel | None = None,
                teacher: torch.nn.Module | None = None, description: str = "") -> tuple[float, float]:
    """One pass over faces[order] in batches of batch_size; returns (mean loss, accuracy) on the augmented batches.

    schedule(step) gives each step's learning rate, steps counted from first_step. `model` may be DDP-wrapped; the EMA
    follows the bare model inside it. A teacher sees the same augmented batch as the student (without its photometric
    alterations with recipe.clean_teacher). description: a progress bar's label; "" shows none.
    """
    model.train()
    steps = math.ceil(len(order) / batch_size)
    seen, loss_sum, correct = 0, 0.0, 0
    bar = tqdm(range(steps), desc=description, leave=False, disable=not description)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = schedule(first_step + step)
        index = order[step * batch_size:(step + 1) * batch_size]
        # Seeded from NumPy's global generator, which checkpoints capture, so a resumed run draws the same.
        crops = perturb_crops(faces.images[index], recipe.photometric, np.random.default_rng(np.random.randint(2**31)))
        geometry = torch.get_rng_state()
        x = augment_batch(to_input_tensor(crops, preprocessing).to(device), recipe.augment)
        teacher_x = x
        if teacher is not None and recipe.clean_teacher:
            # The same warp, flip and erasing (the same draws) on the faces before their photometric alteration.
            after = torch.get_rng_state()
            torch.set_rng_state(geometry)
            teacher_x = augment_batch(to_input_tensor(faces.images[index], preprocessing).to(device), recipe.augment)
            torch.set_rng_state(after)
        x = x.contiguous(memory_format=torch.channels_last)
        target = targets_for(faces, index, recipe.label_smoothing, recipe.vote_weight).to(device)
        with torch.autocast(device.type, dtype=recipe.autocast or torch.bfloat16, enabled=recipe.autocast is not None):
            logits = model(x)
            if teacher is not None:
                with torch.no_grad():
                    teacher_logits = teacher(teacher_x.contiguous(memory_format=torch.channels_last))
        loss = soft_cross_entropy(logits, target)
        if teacher is not None:
            weight = recipe.distill_weight
            loss = (1 - weight) * loss + weight * distillation_loss(logits, teacher_logits, recipe.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update_parameters(getattr(model, "module", model))
        seen += len(index)
        loss_sum += loss.item() * len(index)
        correct += int((logits.argmax(1).cpu().numpy() == faces.labels[index]).sum())
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    return loss_sum / seen, correct / seen
