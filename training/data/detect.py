"""One entry point for every dataset format, with a decoded cache so a second run starts in seconds."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .dataset import DatasetError, FaceSet
from .ferplus import ferplus_split_folder, is_ferplus_root, load_ferplus_folder
from .folders import SPLIT_PREFIXES, is_class_folder_root, kaggle_split_folder, load_class_folder
from .kaggle_csv import load_kaggle_csv


def cache_dir() -> Path:
    """Where decoded datasets are cached: $FER_CACHE_DIR, else ~/.cache/ferstream/datasets."""
    return Path(os.environ.get("FER_CACHE_DIR", Path.home() / ".cache" / "ferstream" / "datasets"))


def load_dataset(path: str | os.PathLike, split: str | None = None, use_cache: bool = True) -> FaceSet:
    """Load any supported dataset at `path`.

    split is one of Training, PublicTest, PrivateTest, or None for everything at `path`. A root that
    holds several splits (Kaggle train/+test/, FER+ FER2013Train/+FER2013Valid/) needs a split.
    """
    if split is not None and split not in SPLIT_PREFIXES:
        raise ValueError(f"split must be one of {', '.join(SPLIT_PREFIXES)}")
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    key = cache_key(path, split)
    cached = cache_dir() / f"{key}.npz"
    if use_cache and cached.is_file():
        return read_cache(cached, path)
    faces = load_uncached(path, split)
    if use_cache:
        write_cache(cached, faces)
    return faces


def load_uncached(path: Path, split: str | None) -> FaceSet:
    """Decode the dataset at path by its layout; DatasetError when it is none of the supported ones."""
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DatasetError(f"{path}: expected a folder or the Kaggle fer2013.csv")
        return load_kaggle_csv(path, split)
    if (path / "label.csv").is_file():
        return load_ferplus_folder(path)
    if is_ferplus_root(path):
        return load_ferplus_folder(ferplus_split_folder(path, require_split(path, split)))
    if (path / "train").is_dir() or (path / "test").is_dir():
        split = require_split(path, split)
        return load_class_folder(kaggle_split_folder(path, split), split)
    if is_class_folder_root(path):
        return load_class_folder(path, split)
    raise DatasetError(
        f"{path}: not a dataset (expected class subfolders, the Kaggle train/+test/ layout, "
        "a FER+ folder with label.csv, or fer2013.csv)"
    )


def require_split(path: Path, split: str | None) -> str:
    """split, or DatasetError when a root holding several splits was given none."""
    if split is None:
        raise DatasetError(f"{path}: holds several splits; name one of {', '.join(SPLIT_PREFIXES)}")
    return split


def cache_key(path: Path, split: str | None) -> str:
    """Changes whenever a file under path is added, removed or modified."""
    digest = hashlib.sha256(f"{path.resolve()}|{split}|v1".encode())
    if path.is_file():
        stat = path.stat()
        digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    else:
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                stat = os.stat(os.path.join(root, name))
                digest.update(f"{root}/{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def write_cache(target: Path, faces: FaceSet) -> None:
    """Save faces as an .npz at target (written beside it, then renamed, so readers never see half a file)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"images": faces.images, "labels": faces.labels}
    if faces.soft_labels is not None:
        arrays["soft_labels"] = faces.soft_labels
    if faces.groups is not None:
        arrays["groups"] = faces.groups
    temporary = target.with_suffix(".tmp.npz")
    np.savez(temporary, source=np.array(faces.source), skipped=np.array(faces.skipped), **arrays)
    temporary.replace(target)


def read_cache(cached: Path, path: Path) -> FaceSet:
    """The FaceSet write_cache saved in cached (path: the dataset it was decoded from)."""
    with np.load(cached, allow_pickle=False) as data:
        return FaceSet(
            images=data["images"],
            labels=data["labels"],
            soft_labels=data["soft_labels"] if "soft_labels" in data else None,
            groups=data["groups"] if "groups" in data else None,
            source=str(data["source"]),
            skipped=int(data["skipped"]),
        )
