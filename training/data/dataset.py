"""The in-memory form every loader produces."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import cv2
import numpy as np

from ferstream.model.labels import EMOTIONS

SIZE = 48


class DatasetError(Exception):
    """A dataset that is missing or malformed; the message names the path and what was expected."""


@dataclass
class FaceSet:
    """Face crops and their labels.

    images: (N, 48, 48) uint8 grey. labels: (N,) int64 indices into EMOTIONS.
    soft_labels: optional (N, 7) float32 vote distributions (FER+).
    groups: optional (N,) subject ids, for subject-independent folds (CK+).
    """

    images: np.ndarray
    labels: np.ndarray
    soft_labels: np.ndarray | None = None
    groups: np.ndarray | None = None
    source: str = ""
    skipped: int = 0
    class_names: tuple[str, ...] = field(default=EMOTIONS)

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise ValueError("images and labels differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> FaceSet:
        """The faces at index (an integer array or boolean mask), with their labels, votes and subjects."""
        return FaceSet(
            images=self.images[index],
            labels=self.labels[index],
            soft_labels=None if self.soft_labels is None else self.soft_labels[index],
            groups=None if self.groups is None else self.groups[index],
            source=self.source,
        )

    def class_counts(self) -> dict[str, int]:
        """Number of faces of each class, in EMOTIONS order."""
        counts = np.bincount(self.labels, minlength=len(EMOTIONS))
        return {name: int(n) for name, n in zip(EMOTIONS, counts)}


def read_grey_48(path: str) -> np.ndarray | None:
    """A 48x48 grey crop from an image file, or None when the file cannot be decoded."""
    image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if image is None or image.size == 0:
        return None
    if image.shape != (SIZE, SIZE):
        image = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return image


def warn(message: str) -> None:
    """Print "warning: MESSAGE" on stderr (loaders report what they skipped and go on)."""
    print(f"warning: {message}", file=sys.stderr)
