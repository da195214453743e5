"""Batched prediction with optional test-time augmentation (horizontal flip, ten-crop)."""

from __future__ import annotations

import numpy as np
import torch

from ferstream.model.modelfile import EmotionClassifier, to_input_tensor

TTA_MODES = ("none", "flip", "tencrop")
CROP = 44  # ten-crop side; crops are resized back to the 48 px the model was trained on


def views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """The augmented copies of a (N, 1, 48, 48) batch whose predictions are averaged."""
    if mode == "none":
        return [x]
    if mode == "flip":
        return [x, x.flip(3)]
    side = x.shape[-1]
    offsets = [(0, 0), (0, side - CROP), (side - CROP, 0), (side - CROP, side - CROP),
               ((side - CROP) // 2, (side - CROP) // 2)]
    crops = [
        torch.nn.functional.interpolate(x[:, :, top:top + CROP, left:left + CROP], size=(side, side),
                                        mode="bilinear", align_corners=False)
        for top, left in offsets
    ]
    return crops + [crop.flip(3) for crop in crops]


@torch.inference_mode()
def predict(classifier: EmotionClassifier, images: np.ndarray, mode: str = "none",
            batch_size: int = 256) -> np.ndarray:
    """(N, 48, 48) uint8 crops -> (N, classes) probabilities averaged over the TTA views."""
    if mode not in TTA_MODES:
        raise ValueError(f"unknown TTA mode {mode!r}; expected one of {', '.join(TTA_MODES)}")
    out = []
    for start in range(0, len(images), batch_size):
        x = to_input_tensor(images[start:start + batch_size])
        probabilities = [torch.softmax(classifier.network(v), dim=1) for v in views(x, mode)]
        out.append(torch.stack(probabilities).mean(0).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(classifier.class_names)), np.float32)
