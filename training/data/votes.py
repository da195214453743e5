"""FER+ annotator votes for FER2013 images that come without them (the Kaggle folder layout).

FER+ relabelled every FER2013 image with ten votes, but the Kaggle folders hold the pixels under
new file names, with a contrast stretch and JPEG loss, so the two are paired by content: each image
is reduced to a 12x12 grid of mean brightness, its cells replaced by their ranks (blind to brightness
and contrast, nearly so to any monotone tone curve), and paired with the FER+ image of highest rank
correlation. FER2013 holds exact duplicates, so a pair may name either copy; both carry votes for the
same picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .dataset import SIZE, FaceSet

GRID = 12
# Nearly every Kaggle training image reaches it against its FER+ twin, and only a few CK+ faces in a
# thousand, which FER+ does not hold, reach it against a stranger (docs/model-card.md#design-measurements).
MIN_SIMILARITY = 0.95


@dataclass(frozen=True)
class VoteMatch:
    """The outcome of attach_votes: the faces with votes attached, and which FER+ image each one matched."""

    faces: FaceSet  # the input with soft_labels set: the matched votes, or the one-hot label when unmatched
    partner: np.ndarray  # (N,) index of each face's twin in the voted set; -1 where none scored high enough

    @property
    def matched(self) -> np.ndarray:
        """(N,) bool: which faces found their votes."""
        return self.partner >= 0


def signatures(images: np.ndarray) -> torch.Tensor:
    """(N, 48, 48) uint8 -> (N, GRID²) centred, unit-length rank vectors."""
    cell = SIZE // GRID
    means = images.astype(np.float32).reshape(len(images), GRID, cell, GRID, cell).mean(axis=(2, 4))
    ranks = means.reshape(len(images), -1).argsort(axis=1).argsort(axis=1).astype(np.float32)
    ranks -= ranks.mean(axis=1, keepdims=True)
    return torch.from_numpy(ranks / np.linalg.norm(ranks, axis=1, keepdims=True))


def nearest(query: np.ndarray, reference: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """For each query image: (index of the most similar reference image, that rank correlation)."""
    ours, theirs = signatures(query), signatures(reference)
    index, similarity = [], []
    for start in range(0, len(ours), chunk):  # chunks keep the similarity matrix to ~200 MB
        best = (ours[start:start + chunk] @ theirs.T).max(dim=1)
        index.append(best.indices.numpy())
        similarity.append(best.values.numpy())
    return np.concatenate(index), np.concatenate(similarity)


def attach_votes(faces: FaceSet, voted: FaceSet, min_similarity: float = MIN_SIMILARITY) -> VoteMatch:
    """faces with soft_labels from the matching images of `voted` (a FER+ split with soft labels)."""
    if voted.soft_labels is None:
        raise ValueError(f"{voted.source}: holds no vote distributions (expected a FER+ split)")
    index, similarity = nearest(faces.images, voted.images)
    matched = similarity >= min_similarity
    soft = np.eye(len(faces.class_names), dtype=np.float32)[faces.labels]
    soft[matched] = voted.soft_labels[index[matched]]
    with_votes = FaceSet(images=faces.images, labels=faces.labels, soft_labels=soft, groups=faces.groups,
                         source=f"{faces.source} + votes from {voted.source}", skipped=faces.skipped)
    return VoteMatch(faces=with_votes, partner=np.where(matched, index, -1))
