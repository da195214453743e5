"""Batched augmentation on tensors: one affine warp per image plus random erasing.

Done on whole batches in the training process, so no loader workers compete with the model for
the two CPU cores (and it runs unchanged on CUDA).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentSpec:
    """Random augmentation of a training batch (ranges are uniform draws per image).

    max_rotation_deg: rotation in degrees either way; scale_range: zoom factors; max_shift: translation as
    a fraction of the side; flip: mirror half the images; erase_probability, erase_area: random erasing
    (Zhong et al. 2017) of that share of images over that fraction of their area; brightness, contrast:
    offset and gain jitter in normalised units. fer-train sets erase_probability from --erase-probability.
    """

    max_rotation_deg: float = 10.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    max_shift: float = 0.1  # fraction of the image side
    flip: bool = True
    erase_probability: float = 0.5
    erase_area: tuple[float, float] = (0.02, 0.2)
    brightness: float = 0.2  # in normalised units
    contrast: float = 0.2


def augment_batch(x: torch.Tensor, spec: AugmentSpec) -> torch.Tensor:
    """x: (N, 1, H, W) normalised floats -> a randomly warped, flipped, jittered and erased copy."""
    n, _, h, w = x.shape
    device = x.device

    def uniform(low: float, high: float, size: int = n) -> torch.Tensor:
        """(size,) uniform draws in [low, high) on the batch's device."""
        return torch.rand(size, device=device) * (high - low) + low

    angle = uniform(-spec.max_rotation_deg, spec.max_rotation_deg) * math.pi / 180
    scale = uniform(*spec.scale_range)
    flip = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0) if spec.flip else torch.ones(n, device=device)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, uniform(-spec.max_shift, spec.max_shift) * 2], dim=1),
            torch.stack([sin * flip, cos, uniform(-spec.max_shift, spec.max_shift) * 2], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    gain = 1 + uniform(-spec.contrast, spec.contrast).view(n, 1, 1, 1)
    offset = uniform(-spec.brightness, spec.brightness).view(n, 1, 1, 1)
    out = out * gain + offset

    if spec.erase_probability > 0:
        out = erase_rectangles(out, spec, uniform)
    return out


def erase_rectangles(x: torch.Tensor, spec: AugmentSpec, uniform) -> torch.Tensor:
    """Random erasing (Zhong et al. 2017) with one rectangle per chosen image, filled with noise."""
    n, _, h, w = x.shape
    area = uniform(*spec.erase_area) * h * w
    aspect = torch.exp(uniform(math.log(0.3), math.log(3.3)))
    eh = torch.sqrt(area * aspect).clamp(max=h)
    ew = torch.sqrt(area / aspect).clamp(max=w)
    top = uniform(0, 1) * (h - eh)
    left = uniform(0, 1) * (w - ew)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (
        (rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
        & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1))
    )
    chosen = (uniform(0, 1) < spec.erase_probability).view(n, 1, 1)
    mask = (inside & chosen).unsqueeze(1)
    noise = torch.randn(x.shape, device=x.device) if mask.any() else x
    return torch.where(mask, noise, x)
