"""The two splits fer-train reads: Training to learn from, PublicTest to select epochs on."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from .dataset import DatasetError, FaceSet
from .detect import load_dataset
from .votes import attach_votes


@dataclass(frozen=True)
class Splits:
    """train: the faces to learn from; val: PublicTest, scored after every epoch."""

    train: FaceSet
    val: FaceSet


def training_splits(data: str, votes: str = "", limit: int = 0, val_limit: int = 0, seed: int = 0) -> Splits:
    """Training and PublicTest of the dataset at `data` (any layout load_dataset reads).

    votes: a FER+ root whose Training votes join the targets of the training images they match ("": none).
    limit, val_limit: keep that many images of each split, a random choice fixed by seed (smoke runs);
    0 keeps all. DatasetError for missing or malformed data.
    """
    train = load_dataset(data, "Training")
    val = load_dataset(data, "PublicTest")
    if votes:
        train = with_votes(train, votes)
    if limit:
        train = train.subset(np.random.default_rng(seed).permutation(len(train))[:limit])
    if val_limit:
        val = val.subset(np.random.default_rng(seed).permutation(len(val))[:val_limit])
    return Splits(train=train, val=val)


def with_votes(train: FaceSet, ferplus_root: str) -> FaceSet:
    """The training images with the FER+ votes of their Training split; PublicTest votes stay unread.

    DatasetError when none matches (the wrong folder); prints how many matched on stderr.
    """
    match = attach_votes(train, load_dataset(ferplus_root, "Training"))
    matched = int(match.matched.sum())
    if not matched:
        raise DatasetError(f"{ferplus_root}: none of its images matches a training image")
    print(f"fer-train: FER+ votes for {matched} training images; {len(train) - matched} unmatched keep "
          f"their one-hot labels", file=sys.stderr)
    return match.faces
