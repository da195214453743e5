"""fer-eval-path photos: a model tier scored through the whole path on labelled photos in class folders.

Each photo (DIR/<class>/<file>, class folders named as EMOTIONS or their labels.ALIASES; others, such as
contempt, skipped) goes through pipeline.framepath as the server runs it: decode, detect, crop for the
tier, classify. The largest face found is the photo's answer; a photo without a face counts as wrong.
Reported: accuracy over all photos, per-class recall and their mean (balanced accuracy, the fairer figure
when classes are as unequal as realfaces-dev's), the confusion matrix and wall milliseconds per photo.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ferstream.model.labels import EMOTIONS, canonical_name
from ferstream.pipeline.framepath import DetectOptions, FramePath

from .data import DatasetError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def labelled_photos(root: Path) -> list[tuple[Path, int]]:
    """(photo path, EMOTIONS index) for every photo in root's class folders, sorted by path. DatasetError
    when root is not a folder or holds no photo in a known class folder."""
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder of class folders")
    photos = []
    for folder in sorted(path for path in root.iterdir() if path.is_dir()):
        name = canonical_name(folder.name)
        if name is None:
            continue
        photos += [(path, EMOTIONS.index(name)) for path in sorted(folder.iterdir())
                   if path.suffix.lower() in PHOTO_SUFFIXES]
    if not photos:
        raise DatasetError(f"{root}: no photos in class folders named {', '.join(EMOTIONS)}")
    return photos


@dataclass(frozen=True)
class PhotosReport:
    """fer-eval-path photos: accuracies are fractions 0-1 of all photos (no face found counts as wrong).

    recall: per class present, in EMOTIONS order (absent classes left out); confusion[i][j]: photos of
    class EMOTIONS[i] answered EMOTIONS[j], with a last column for no face found.
    """

    data: str
    model: str
    detector: str
    photos: int
    no_face: int
    accuracy: float
    balanced_accuracy: float
    recall: dict[str, float]
    confusion: list[list[int]]
    ms_per_photo: float

    def to_text(self) -> str:
        """Markdown: the summary line, the per-class recall and the confusion matrix."""
        lines = [f"{self.photos} photos, model {self.model}, detector {self.detector}: accuracy "
                 f"{self.accuracy:.1%}, balanced accuracy {self.balanced_accuracy:.1%}, no face in {self.no_face}, "
                 f"{self.ms_per_photo:.1f} ms per photo", "",
                 "| class | " + " | ".join(self.recall) + " |", "|---|" + "---:|" * len(self.recall),
                 "| recall | " + " | ".join(f"{value:.1%}" for value in self.recall.values()) + " |", "",
                 "| true \\ answered | " + " | ".join(EMOTIONS) + " | no face |",
                 "|---|" + "---:|" * (len(EMOTIONS) + 1)]
        lines += [f"| {name} | " + " | ".join(str(count) for count in row) + " |"
                  for name, row in zip(EMOTIONS, self.confusion) if sum(row)]
        return "\n".join(lines)


def answer(path: FramePath, photo: np.ndarray, options: DetectOptions) -> int:
    """EMOTIONS index of the largest face's top class, -1 when no face is found."""
    faces = path.annotate(photo, options).faces
    if not faces:
        return -1
    largest = max(faces, key=lambda face: face.box.width * face.box.height)
    return largest.top_class


def evaluate_photos(path: FramePath, root: Path, options: DetectOptions, limit: int | None = None,
                    seed: int = 0, prepare: Callable[[np.ndarray], np.ndarray] | None = None) -> PhotosReport:
    """Scores the tier options.model (empty: the path's default) on the labelled photos under root; with
    limit, on that many drawn at random with seed (sorted, so a run is repeatable). prepare: applied to
    each decoded BGR photo first (fer-eval-path photos --place puts face crops into frames). Unreadable
    photos count as no face."""
    photos = labelled_photos(root)
    if limit is not None and limit < len(photos):
        chosen = np.sort(np.random.default_rng(seed).choice(len(photos), limit, replace=False))
        photos = [photos[index] for index in chosen]
    confusion = np.zeros((len(EMOTIONS), len(EMOTIONS) + 1), dtype=int)
    start = time.perf_counter()
    for photo_path, label in photos:
        photo = cv2.imread(str(photo_path), cv2.IMREAD_COLOR)
        if photo is not None and prepare is not None:
            photo = prepare(photo)
        confusion[label, -1 if photo is None else answer(path, photo, options)] += 1
    ms = (time.perf_counter() - start) * 1000.0 / len(photos)
    totals = confusion.sum(axis=1)
    recall = {EMOTIONS[index]: float(confusion[index, index] / totals[index])
              for index in range(len(EMOTIONS)) if totals[index]}
    correct = int(np.trace(confusion[:, :len(EMOTIONS)]))
    model = path.choose_model(options.model)
    return PhotosReport(str(root), model, (options.detector or path.default_detector).name, len(photos),
                        int(confusion[:, -1].sum()), correct / len(photos), float(np.mean(list(recall.values()))),
                        recall, confusion.tolist(), ms)
