"""Batched prediction with optional test-time augmentation (horizontal flip, ten-crop), without torch.

The views are made from the preprocessed input (after the model's declared equalisation and
normalisation), so every view of a face is the same preprocessed face, moved; each classifier that
has `.preprocessing` and `.run(x)` works: the served runtime (runtime.ServedClassifier, what fer-eval
scores) or PyTorch (modelfile.EmotionClassifier).
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

from ferstream.model.preprocess import Preprocessing

TTA_MODES = ("none", "flip", "tencrop")
CROP = 44  # ten-crop side in pixels; crops are resized back to the model's input size (48)


class Classifier(Protocol):
    """What predict needs: the declared preprocessing and a call on preprocessed input."""

    preprocessing: Preprocessing
    class_names: tuple[str, ...]

    def run(self, x: np.ndarray) -> np.ndarray: ...


def resized(x: np.ndarray, side: int) -> np.ndarray:
    """(N, 1, h, w) float32 -> (N, 1, side, side), bilinear with pixel centres aligned (torch's
    interpolate(mode="bilinear", align_corners=False), which the first TTA used)."""
    return np.stack([cv2.resize(image[0], (side, side), interpolation=cv2.INTER_LINEAR)[None] for image in x])


def views(x: np.ndarray, mode: str) -> list[np.ndarray]:
    """The augmented copies of a preprocessed (N, 1, S, S) batch whose predictions are averaged.

    none: the batch; flip: it and its mirror image; tencrop: the four corner and the centre CROP x CROP
    crops, each resized to S x S, and their mirror images.
    """
    if mode == "none":
        return [x]
    if mode == "flip":
        return [x, np.ascontiguousarray(x[..., ::-1])]
    side = x.shape[-1]
    offsets = [(0, 0), (0, side - CROP), (side - CROP, 0), (side - CROP, side - CROP),
               ((side - CROP) // 2, (side - CROP) // 2)]
    crops = [resized(x[:, :, top:top + CROP, left:left + CROP], side) for top, left in offsets]
    return crops + [np.ascontiguousarray(crop[..., ::-1]) for crop in crops]


def predict(classifier: Classifier, images: np.ndarray, mode: str = "none", batch_size: int = 256) -> np.ndarray:
    """(N, S, S) uint8 crops -> (N, classes) float32 probabilities averaged over the TTA views.

    ValueError for an unknown mode or crops the model's preprocessing does not take.
    """
    if mode not in TTA_MODES:
        raise ValueError(f"unknown TTA mode {mode!r}; expected one of {', '.join(TTA_MODES)}")
    classifier.preprocessing.check(images)
    out = []
    for start in range(0, len(images), batch_size):
        x = classifier.preprocessing.apply(images[start:start + batch_size])
        out.append(np.mean([classifier.run(view) for view in views(x, mode)], axis=0, dtype=np.float32))
    return np.concatenate(out) if out else np.zeros((0, len(classifier.class_names)), np.float32)
