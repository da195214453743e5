"""Served test-time augmentation: a face and its mirror image in one batch, their logits averaged.

The fast CNN learned from faces flipped at random, so its mirror image is a second, nearly independent
look at the same face; averaging the two views' logits gains about a point of PublicTest accuracy for
twice the network's cost (docs/model-card.md has the figures of the shipped model).

The served graph ends in softmax(logits / T) at the single view's temperature T (calibration.py). The
average of the views' logits wants its own temperature T_flip, fitted by `fer-export --calibrate` on the
averaged logits and recorded in the model's metadata. Both are recovered from the graph's probabilities
without a second graph: log p = logits / T - c per row, so a row's mean log-probability over the views,
times T / T_flip, is mean(logits) / T_flip up to a constant, which the softmax ignores. The combination is
therefore exactly softmax(mean(logits) / T_flip) (up to float rounding; a probability that underflowed
to 0 counts as 1e-30).
"""

from __future__ import annotations

import numpy as np

# What the server and fer-eval can serve: one view, or a face and its mirror image.
SERVED_TTA = ("none", "flip")
# The smallest probability whose log is taken: the graph's float32 softmax underflows near 1e-38.
FLOOR = 1e-30


def check_tta(mode: str) -> str:
    """mode when it is one of SERVED_TTA; ValueError naming the choices otherwise."""
    if mode not in SERVED_TTA:
        raise ValueError(f"unknown test-time augmentation {mode!r}; expected one of {', '.join(SERVED_TTA)}")
    return mode


def with_mirror_images(x: np.ndarray) -> np.ndarray:
    """(N, C, S, S) preprocessed faces -> (2N, C, S, S): the faces, then their mirror images (left-right)."""
    return np.concatenate([x, x[..., ::-1]])


def combine_mirrored(probabilities: np.ndarray, temperature: float, flip_temperature: float) -> np.ndarray:
    """(2N, K) probabilities softmax(logits / temperature) of with_mirror_images' batch -> (N, K) float32
    softmax(mean of each face's two logit rows / flip_temperature). ValueError for an odd row count."""
    if len(probabilities) % 2:
        raise ValueError(f"expected a face and its mirror image per row pair, got {len(probabilities)} rows")
    half = len(probabilities) // 2
    log_p = np.log(np.maximum(probabilities.astype(np.float64), FLOOR))
    scaled = (log_p[:half] + log_p[half:]) * (0.5 * temperature / flip_temperature)
    scaled -= scaled.max(axis=1, keepdims=True)
    combined = np.exp(scaled)
    return (combined / combined.sum(axis=1, keepdims=True)).astype(np.float32)
