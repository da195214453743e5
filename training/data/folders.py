"""Folders of class subfolders: the Kaggle (msambare) FER2013 layout, CK+48, or any bare folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ferstream.model.labels import EMOTIONS, canonical_name
from .dataset import DatasetError, FaceSet, read_grey_48, warn

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".pgm", ".tif", ".tiff"}
# Kaggle file names carry the split of the original fer2013.csv: Training_123.jpg, PublicTest_45.jpg.
SPLIT_PREFIXES = ("Training", "PublicTest", "PrivateTest")
# CK+ file names start with the subject: S010_004_00000017.png.
SUBJECT_PATTERN = re.compile(r"^(S\d+)_")


def is_class_folder_root(path: Path) -> bool:
    """True for a folder with at least one subfolder named after a class (any spelling canonical_name knows)."""
    return path.is_dir() and any(
        child.is_dir() and canonical_name(child.name) is not None for child in path.iterdir()
    )


def list_class_folder(root: Path, split: str | None) -> list[tuple[str, int]]:
    """(file path, label) for every image under root/<class>/, filtered by split prefix if given."""
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder (expected a folder of class subfolders)")
    entries: list[tuple[str, int]] = []
    ignored = []
    for child in sorted(root.iterdir()):
        if not child.is_dir():
            continue
        name = canonical_name(child.name)
        if name is None:
            ignored.append(child.name)
            continue
        files = sorted(
            f for f in os.listdir(child) if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES
        )
        if split is not None:
            files = [f for f in files if f.startswith(split + "_") or not f.startswith(SPLIT_PREFIXES)]
        if not files:
            warn(f"{child}: class folder has no images")
        entries += [(str(child / f), EMOTIONS.index(name)) for f in files]
    if ignored:
        warn(f"{root}: ignored folders that are not one of the 7 classes: {', '.join(ignored)}")
    if not entries:
        raise DatasetError(
            f"{root}: no images found (expected subfolders named {', '.join(EMOTIONS)} holding image files)"
        )
    return entries


def load_class_folder(root: Path, split: str | None = None) -> FaceSet:
    """The faces under root/<class>/ (grey, resized to 48x48), subject ids from CK+ file names when all have one.

    DatasetError when no image is found or none decodes; unreadable files are skipped with a warning.
    """
    entries = list_class_folder(root, split)
    images, labels, names = [], [], []
    bad = []
    for path, label in entries:
        image = read_grey_48(path)
        if image is None:
            bad.append(path)
            continue
        images.append(image)
        labels.append(label)
        names.append(os.path.basename(path))
    if bad:
        warn(f"skipped {len(bad)} unreadable image file(s), e.g. {bad[0]}")
    if not images:
        raise DatasetError(f"{root}: none of the {len(entries)} image files could be decoded")
    subjects = [SUBJECT_PATTERN.match(n) for n in names]
    groups = np.array([m.group(1) for m in subjects]) if all(subjects) else None
    return FaceSet(
        images=np.stack(images),
        labels=np.array(labels, dtype=np.int64),
        groups=groups,
        source=str(root),
        skipped=len(bad),
    )


def kaggle_split_folder(root: Path, split: str) -> Path:
    """The subfolder of a Kaggle FER2013 root that holds a split (test/ holds both test splits)."""
    folder = root / ("train" if split == "Training" else "test")
    if not folder.is_dir():
        raise DatasetError(f"{root}: expected a {folder.name}/ subfolder for split {split}")
    return folder
