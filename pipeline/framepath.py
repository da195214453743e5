"""The one frame path: decode -> detect -> crop -> classify -> annotated frame.

`FramePath.annotate` is the straight line, used by fer-annotate. The server runs the same two halves
(`detect`, then `classify` on crops of several frames at once) on its worker thread; see batcher.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ferstream.model.modelfile import EmotionClassifier
from ferstream.model.labels import EMOTIONS

from .crops import face_crops
from .decode import ImageSource, decode
from .detectors import Detection, DetectorKind, DetectorStatus, default_detector
from .errors import DetectorUnavailable, invalid


@dataclass(frozen=True)
class DetectOptions:
    # None: the server's default detector.
    detector: DetectorKind | None = None
    # 0: the detector's default threshold.
    min_score: float = 0.0
    # 0: the server's limit.
    max_faces: int = 0


@dataclass
class Timing:
    decode_ms: float = 0.0
    detect_ms: float = 0.0
    classify_ms: float = 0.0
    queue_ms: float = 0.0
    total_ms: float = 0.0
    batch_faces: int = 0


@dataclass(frozen=True)
class FaceResult:
    box: Detection
    # Over the served classes, in EMOTIONS order; sums to 1.
    probabilities: np.ndarray
    # Index into EMOTIONS of each entry of probabilities.
    classes: tuple[int, ...]

    @property
    def top_class(self) -> int:
        """Index into EMOTIONS of the most probable served class."""
        return self.classes[int(np.argmax(self.probabilities))]

    @property
    def top_name(self) -> str:
        return EMOTIONS[self.top_class]


@dataclass
class AnnotatedFrame:
    width: int
    height: int
    # Highest detection score first.
    faces: list[FaceResult]
    timing: Timing = field(default_factory=Timing)


@dataclass
class DetectedFrame:
    """The first half of the path: faces found and cropped, not yet classified."""

    frame: np.ndarray
    detections: list[Detection]
    crops: np.ndarray
    timing: Timing


def milliseconds_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class FramePath:
    def __init__(self, detectors: dict[DetectorKind, DetectorStatus], classifier: EmotionClassifier,
                 classes: tuple[int, ...], max_pixels: int, max_faces: int) -> None:
        if tuple(classifier.class_names) != EMOTIONS:
            raise ValueError(f"{classifier.path}: classes {classifier.class_names} are not {EMOTIONS}")
        self.detectors = detectors
        self.default_detector = default_detector(detectors)
        self.classifier = classifier
        self.classes = classes
        self.max_pixels = max_pixels
        self.max_faces = max_faces

    def choose_detector(self, kind: DetectorKind | None) -> DetectorStatus:
        status = self.detectors[kind or self.default_detector]
        if not status.available:
            raise DetectorUnavailable(f"detector {status.kind.name} is unavailable: {status.detail}")
        return status

    def detect(self, source: ImageSource, options: DetectOptions) -> DetectedFrame:
        """Decode, detect and crop one frame; FrameError for bad input or an unavailable detector."""
        if not 0.0 <= options.min_score <= 1.0:
            raise invalid(f"min_detection_score must be within 0-1, got {options.min_score}")
        detector = self.choose_detector(options.detector).detector
        start = time.perf_counter()
        frame = decode(source, self.max_pixels)
        decoded = time.perf_counter()
        threshold = options.min_score or detector.default_threshold
        detections = sorted(detector.detect(frame, threshold), key=lambda box: box.score, reverse=True)
        limit = min(options.max_faces or self.max_faces, self.max_faces)
        detections = detections[:limit]
        crops = face_crops(frame, detections)
        timing = Timing(decode_ms=(decoded - start) * 1000.0, detect_ms=milliseconds_since(decoded))
        return DetectedFrame(frame, detections, crops, timing)

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """(N, len(classes)) probabilities of the served classes, renormalised to sum to 1."""
        probabilities = self.classifier(crops)[:, list(self.classes)]
        return probabilities / np.maximum(probabilities.sum(axis=1, keepdims=True), 1e-12)

    def assemble(self, detected: DetectedFrame, probabilities: np.ndarray) -> AnnotatedFrame:
        faces = [FaceResult(box, row, self.classes) for box, row in zip(detected.detections, probabilities)]
        height, width = detected.frame.shape[:2]
        return AnnotatedFrame(width, height, faces, detected.timing)

    def annotate(self, source: ImageSource, options: DetectOptions = DetectOptions()) -> AnnotatedFrame:
        """The whole path for one frame, on the calling thread."""
        start = time.perf_counter()
        detected = self.detect(source, options)
        classify_start = time.perf_counter()
        probabilities = self.classify(detected.crops)
        detected.timing.classify_ms = milliseconds_since(classify_start)
        detected.timing.batch_faces = len(detected.crops)
        detected.timing.total_ms = milliseconds_since(start)
        return self.assemble(detected, probabilities)


def set_thread_counts(threads: int) -> None:
    """torch and OpenCV thread pools, set once per process before any inference."""
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


def load_frame_path(models_dir, model_path, classes: tuple[int, ...], max_pixels: int, max_faces: int) -> FramePath:
    """Detectors from models_dir (and installed packages) plus the emotion model; nothing is downloaded."""
    from ferstream.model.modelfile import load_model

    from .detectors import load_detectors

    return FramePath(load_detectors(models_dir), load_model(model_path).for_inference(), classes, max_pixels, max_faces)
