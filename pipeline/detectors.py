"""Face detectors (Haar, ResNet-10 SSD, YuNet) behind one interface, and which of them can run here.

Detectors are not thread-safe; the server calls them from its one worker thread only.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from . import weights


class DetectorKind(enum.IntEnum):
    """Same numbers as the proto's Detector enum."""

    HAAR = 1
    SSD = 2
    YUNET = 3


# Most accurate first: the default is the first one available.
PREFERENCE = (DetectorKind.YUNET, DetectorKind.SSD, DetectorKind.HAAR)


@dataclass(frozen=True)
class Detection:
    x: int
    y: int
    width: int
    height: int
    score: float


class FaceDetector(Protocol):
    # Used when a request leaves min_detection_score at 0.
    default_threshold: float

    def detect(self, frame: np.ndarray, threshold: float) -> list[Detection]:
        """Faces in a BGR frame scored at least threshold, in any order."""


def clamp_box(x0: float, y0: float, x1: float, y1: float, width: int, height: int, score: float) -> Detection | None:
    # A corrupted frame can make a network emit inf or NaN coordinates.
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1, score)):
        return None
    left, top = max(0, int(round(x0))), max(0, int(round(y0)))
    right, bottom = min(width, int(round(x1))), min(height, int(round(y1)))
    if right - left < 2 or bottom - top < 2:
        return None
    return Detection(left, top, right - left, bottom - top, float(score))


def shrink(image: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """image scaled down so its longer side is at most `side` (never below 1 px), and the scale used."""
    height, width = image.shape[:2]
    scale = min(1.0, side / max(height, width))
    if scale == 1.0:
        return image, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


class HaarDetector:
    """OpenCV's frontal-face cascade, run on a grey copy shrunk to at most WORK_SIDE pixels for speed.

    A cascade has no calibrated confidence, so every face it finds scores 1.0.
    """

    default_threshold = 0.0
    WORK_SIDE = 480

    def __init__(self, cascade_path: Path) -> None:
        self.cascade = cv2.CascadeClassifier(str(cascade_path))
        if self.cascade.empty():
            raise ValueError(f"{cascade_path}: not a readable cascade")

    def detect(self, frame: np.ndarray, threshold: float) -> list[Detection]:
        height, width = frame.shape[:2]
        grey, scale = shrink(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), self.WORK_SIDE)
        grey = cv2.equalizeHist(grey)
        boxes = self.cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(20, 20))
        found = (clamp_box(x / scale, y / scale, (x + w) / scale, (y + h) / scale, width, height, 1.0)
                 for x, y, w, h in boxes)
        return [box for box in found if box is not None]


class SsdDetector:
    """OpenCV's ResNet-10 SSD on a 300x300 view of the frame (Caffe or TensorFlow uint8 weights)."""

    # 0.5, the usual cut, misses small faces in group photos; 0.4 finds them with few false faces.
    default_threshold = 0.4
    INPUT = (300, 300)
    MEAN = (104.0, 177.0, 123.0)

    def __init__(self, network: cv2.dnn.Net) -> None:
        self.network = network

    def detect(self, frame: np.ndarray, threshold: float) -> list[Detection]:
        height, width = frame.shape[:2]
        blob = cv2.dnn.blobFromImage(frame, 1.0, self.INPUT, self.MEAN, swapRB=False, crop=False)
        self.network.setInput(blob)
        rows = self.network.forward().reshape(-1, 7)
        rows = rows[rows[:, 2] >= threshold]
        found = (clamp_box(x0 * width, y0 * height, x1 * width, y1 * height, width, height, score)
                 for _, _, score, x0, y0, x1, y1 in rows)
        return [box for box in found if box is not None]


class YuNetDetector:
    """YuNet through cv2.FaceDetectorYN on a copy shrunk to at most WORK_SIDE pixels.

    At 320 px YuNet still finds every boxed face of the test photos and runs about 4x faster than
    on a full 640x480 frame (`fer-bench detectors` measures both speed and recall).
    """

    default_threshold = 0.6
    WORK_SIDE = 320

    def __init__(self, model_path: Path) -> None:
        self.model = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), self.default_threshold, 0.3, 5000)

    def detect(self, frame: np.ndarray, threshold: float) -> list[Detection]:
        height, width = frame.shape[:2]
        small, scale = shrink(frame, self.WORK_SIDE)
        self.model.setInputSize((small.shape[1], small.shape[0]))
        self.model.setScoreThreshold(threshold)
        _, faces = self.model.detect(small)
        if faces is None:
            return []
        faces = faces[np.isfinite(faces).all(axis=1)]  # a corrupted frame can yield inf/NaN rows
        found = (clamp_box(x / scale, y / scale, (x + w) / scale, (y + h) / scale, width, height, row[-1])
                 for row in faces for x, y, w, h in [row[:4]])
        return [box for box in found if box is not None]


@dataclass(frozen=True)
class DetectorStatus:
    kind: DetectorKind
    detector: FaceDetector | None
    # Where its weights came from, or why it is unavailable.
    detail: str

    @property
    def available(self) -> bool:
        return self.detector is not None


def load_haar() -> DetectorStatus:
    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    try:
        return DetectorStatus(DetectorKind.HAAR, HaarDetector(path), str(path))
    except ValueError as error:
        return DetectorStatus(DetectorKind.HAAR, None, str(error))


def load_ssd(folders: list[Path]) -> DetectorStatus:
    """The Caffe weights if present and intact, else the TensorFlow uint8 twin."""
    caffe = [weights.locate(weights.SSD_CAFFE_MODEL, folders), weights.locate(weights.SSD_CAFFE_CONFIG, folders)]
    if all(found.ok for found in caffe):
        network = cv2.dnn.readNetFromCaffe(str(caffe[1].path), str(caffe[0].path))
        return DetectorStatus(DetectorKind.SSD, SsdDetector(network), f"Caffe {caffe[0].path}")
    tensorflow = [weights.locate(weights.SSD_TF_GRAPH, folders), weights.locate(weights.SSD_TF_CONFIG, folders)]
    if all(found.ok for found in tensorflow):
        network = cv2.dnn.readNetFromTensorflow(str(tensorflow[0].path), str(tensorflow[1].path))
        return DetectorStatus(DetectorKind.SSD, SsdDetector(network), f"TensorFlow uint8 {tensorflow[0].path}")
    problems = "; ".join(found.describe() for found in caffe + tensorflow if not found.ok)
    return DetectorStatus(DetectorKind.SSD, None, f"no intact weights ({problems}); run `fer-models download`")


def load_yunet(folders: list[Path]) -> DetectorStatus:
    found = weights.locate(weights.YUNET, folders)
    if not found.ok:
        return DetectorStatus(DetectorKind.YUNET, None, f"{found.describe()}; run `fer-models download`")
    return DetectorStatus(DetectorKind.YUNET, YuNetDetector(found.path), str(found.path))


def load_detectors(models_dir: Path) -> dict[DetectorKind, DetectorStatus]:
    """Every detector, loaded when its weights are found (never downloaded)."""
    folders = weights.search_folders(models_dir)
    statuses = [load_haar(), load_ssd(folders), load_yunet(folders)]
    return {status.kind: status for status in statuses}


def default_detector(statuses: dict[DetectorKind, DetectorStatus]) -> DetectorKind:
    for kind in PREFERENCE:
        if statuses[kind].available:
            return kind
    raise RuntimeError("no face detector is available")
