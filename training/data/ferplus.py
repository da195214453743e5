"""The FER+ layout: FER2013Train/, FER2013Valid/, FER2013Test/, each PNGs plus label.csv of 10 votes.

label.csv columns after the file name and face box: neutral, happiness, surprise, sadness, anger,
disgust, fear, contempt, unknown, NF (not a face).

Rows whose most-voted column is unknown or NF are dropped, as in the FER+ paper. Contempt has no
FER2013 class: rows whose majority is contempt are dropped too, and contempt votes are removed from
the soft labels of the rows we keep (the other votes are renormalised). Both counts are reported.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ferstream.model.labels import EMOTIONS
from .dataset import DatasetError, FaceSet, read_grey_48, warn

VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                "contempt", "unknown", "NF")
# Index into EMOTIONS for each vote column; None for columns that are not one of the 7 classes.
VOTE_TO_EMOTION = [EMOTIONS.index(n) for n in ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear")]
SPLIT_FOLDERS = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}


def is_ferplus_root(path: Path) -> bool:
    """True for a folder holding at least one of FER2013Train/, FER2013Valid/, FER2013Test/."""
    return path.is_dir() and any((path / f).is_dir() for f in SPLIT_FOLDERS.values())


def ferplus_split_folder(root: Path, split: str) -> Path:
    """The folder of a FER+ root holding split; DatasetError when it or its label.csv is missing."""
    folder = root / SPLIT_FOLDERS[split]
    if not (folder / "label.csv").is_file():
        raise DatasetError(f"{root}: expected {folder.name}/label.csv for split {split}")
    return folder


def load_ferplus_folder(folder: Path) -> FaceSet:
    """A FER+ split folder's faces with (N, 7) vote distributions; labels are each row's majority.

    DatasetError when label.csv is missing or no row is usable; malformed rows and unreadable images are
    skipped with one warning each.
    """
    label_file = folder / "label.csv"
    if not label_file.is_file():
        raise DatasetError(f"{folder}: expected a label.csv with FER+ votes")
    images, soft, dropped, bad_rows, unreadable = [], [], {"unknown/NF": 0, "contempt": 0}, [], []
    with open(label_file, newline="") as handle:
        for line_number, row in enumerate(csv.reader(handle), start=1):
            try:
                votes = np.array([float(v) for v in row[2:12]], dtype=np.float32)
                if votes.size != len(VOTE_COLUMNS):
                    raise ValueError
            except (ValueError, IndexError):
                bad_rows.append(line_number)
                continue
            top = int(votes.argmax())
            if VOTE_COLUMNS[top] in ("unknown", "NF"):
                dropped["unknown/NF"] += 1
                continue
            if VOTE_COLUMNS[top] == "contempt":
                dropped["contempt"] += 1
                continue
            image = read_grey_48(str(folder / row[0]))
            if image is None:
                unreadable.append(row[0])
                continue
            distribution = np.zeros(len(EMOTIONS), dtype=np.float32)
            distribution[VOTE_TO_EMOTION] = votes[: len(VOTE_TO_EMOTION)]
            images.append(image)
            soft.append(distribution / distribution.sum())
    if bad_rows:
        warn(f"{label_file}: skipped {len(bad_rows)} malformed row(s), e.g. line {bad_rows[0]}")
    if unreadable:
        warn(f"{folder}: skipped {len(unreadable)} unreadable image(s), e.g. {unreadable[0]}")
    if not images:
        raise DatasetError(f"{folder}: no usable FER+ rows")
    soft_labels = np.stack(soft)
    return FaceSet(
        images=np.stack(images),
        labels=soft_labels.argmax(axis=1).astype(np.int64),
        soft_labels=soft_labels,
        source=f"{folder} (dropped {dropped['unknown/NF']} unknown/NF and {dropped['contempt']} contempt majorities)",
        skipped=len(bad_rows) + len(unreadable),
    )
