"""The original Kaggle fer2013.csv: emotion,pixels,Usage with 2304 space-separated pixels a row."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ferstream.model.labels import EMOTIONS
from .dataset import SIZE, DatasetError, FaceSet, warn

USAGE_TO_SPLIT = {"Training": "Training", "PublicTest": "PublicTest", "PrivateTest": "PrivateTest"}


def load_kaggle_csv(path: Path, split: str | None = None) -> FaceSet:
    """The rows of fer2013.csv whose Usage is split (all rows when None) as 48x48 faces.

    DatasetError for a missing file, a wrong header or no usable row; malformed rows are skipped with a warning.
    """
    if not path.is_file():
        raise DatasetError(f"{path}: no such file (expected the Kaggle fer2013.csv)")
    images, labels, bad_lines = [], [], []
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["emotion", "pixels"]:
            raise DatasetError(f"{path}: expected a header 'emotion,pixels,Usage', found {header!r}")
        for line_number, row in enumerate(reader, start=2):
            if split is not None and len(row) > 2 and row[2].strip() != split:
                continue
            try:
                label = int(row[0])
                pixels = np.array(row[1].split(), dtype=np.int64)
                if not 0 <= label < len(EMOTIONS) or pixels.size != SIZE * SIZE:
                    raise ValueError
                if pixels.min() < 0 or pixels.max() > 255:
                    raise ValueError
            except (ValueError, IndexError):
                bad_lines.append(line_number)
                continue
            images.append(pixels.astype(np.uint8).reshape(SIZE, SIZE))
            labels.append(label)
    if bad_lines:
        shown = ", ".join(map(str, bad_lines[:5]))
        warn(f"{path}: skipped {len(bad_lines)} malformed row(s) (lines {shown}{'…' if len(bad_lines) > 5 else ''})")
    if not images:
        raise DatasetError(f"{path}: no usable rows{f' with Usage={split}' if split else ''}")
    return FaceSet(
        images=np.stack(images),
        labels=np.array(labels, dtype=np.int64),
        source=str(path),
        skipped=len(bad_lines),
    )
