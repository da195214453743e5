"""The one frame path: decode -> detect -> crop -> classify -> annotated frame.

Two halves, so that crops of several frames can share one classifier call:
  `FramePath.detect`           decode, detect and crop one frame (any thread with its own detectors)
  `FramePath.classify_frames`  one classifier call for the crops of several frames, then each
                               frame's AnnotatedFrame (the only place that assembles one)
Each request names a model tier (model/tiers.py: "fast", "accurate"; DetectOptions.model): `detect` cuts
the crops that tier needs, and `classify_frames` makes one call per tier for the frames that named it.
`FramePath.annotate` runs both on the calling thread (fer-annotate, the headless client); the server runs
`detect` on a pool of worker threads and `classify_frames` on its batcher thread (server/workers.py).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ferstream.model.labels import EMOTIONS
from ferstream.model.runtime import ServedClassifier
from ferstream.model.tiers import COLOUR, FAST, GREY, TIER_NAMES, Tier, fast_tier, unknown_tier

from .crops import colour_crops, face_crops
from .decode import ImageSource, decode
from .detectors import DEFAULT_MIN_FACE_PX, Detection, DetectorKind, DetectorStatus, default_detector
from .errors import Abandoned, DetectorUnavailable, invalid
from .tracking import scene_thumbnail


@dataclass(frozen=True)
class DetectOptions:
    """Per-request detection settings (the proto's AnnotateOptions without gRPC)."""

    # None: the server's default detector.
    detector: DetectorKind | None = None
    # 0: the detector's default threshold.
    min_score: float = 0.0
    # 0: the server's limit.
    max_faces: int = 0
    # Smallest face height to find, px of the sent image; 0: the frame path's min_face_px.
    min_face_px: int = 0
    # The model tier that classifies the faces (model/tiers.py); empty: the frame path's default_model.
    model: str = ""


@dataclass
class Timing:
    """Milliseconds spent on one frame, per stage (wall clock, time.perf_counter)."""

    decode_ms: float = 0.0
    detect_ms: float = 0.0
    # The whole classifier call this frame's crops were part of (shared with the other frames in it).
    classify_ms: float = 0.0
    # Waiting for a detection worker, from submission to the start of decoding.
    queue_ms: float = 0.0
    # Arrival (or the call's start) to the answer.
    total_ms: float = 0.0
    # Crops in that classifier call, this frame's and other frames' together.
    batch_faces: int = 0


@dataclass(frozen=True)
class FaceResult:
    """One classified face: its box and the probabilities of the served classes."""

    box: Detection
    # Over the served classes, in EMOTIONS order; sums to 1.
    probabilities: np.ndarray
    # Index into EMOTIONS of each entry of probabilities.
    classes: tuple[int, ...]
    # The scene thumbnail of the frame it was found on (tracking.scene_thumbnail), shared by the frame's faces:
    # face tracks end where it changes at a cut. None when the face came without its frame.
    scene: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def top_class(self) -> int:
        """Index into EMOTIONS of the most probable served class."""
        return self.classes[int(np.argmax(self.probabilities))]

    @property
    def top_name(self) -> str:
        """EMOTIONS name of top_class."""
        return EMOTIONS[self.top_class]


@dataclass
class AnnotatedFrame:
    """The answer for one frame: its size in pixels and its faces."""

    width: int
    height: int
    # Highest detection score first.
    faces: list[FaceResult]
    timing: Timing = field(default_factory=Timing)
    # Faces found but left out by the face limit (the lowest scored ones).
    faces_omitted: int = 0
    # The model tier that classified the faces.
    model: str = FAST


@dataclass
class DetectedFrame:
    """The first half of the path: faces found and cropped, not yet classified."""

    # (height, width) of the decoded BGR frame; the pixels themselves are not kept past detection.
    size: tuple[int, int]
    # Highest score first, at most the frame's face limit.
    detections: list[Detection]
    # (len(detections), 48, 48) uint8 grey crops, in the order of detections.
    crops: np.ndarray
    timing: Timing
    # Faces found but left out by the face limit (the lowest scored ones).
    faces_omitted: int = 0
    # tracking.scene_thumbnail of the decoded frame: what face tracks compare to find cuts.
    scene: np.ndarray | None = None
    # The model tier that will classify the faces, and the (N, 112, 112, 3) uint8 BGR crops it needs
    # besides the grey ones (None when it needs none).
    model: str = FAST
    colour: np.ndarray | None = None

    def crops_for(self, kinds: Sequence[str]) -> dict[str, np.ndarray]:
        """{crop kind: crops} for the kinds a tier needs (model/tiers.py GREY, COLOUR)."""
        return {kind: self.crops if kind == GREY else self.colour for kind in kinds}


def milliseconds_since(start: float) -> float:
    """Milliseconds from a time.perf_counter() reading to now."""
    return (time.perf_counter() - start) * 1000.0


class FramePath:
    """Detectors, the emotion classifier and the limits that turn an image into an AnnotatedFrame.

    `detect` uses the detectors, which are not thread-safe: each thread that detects needs its own
    FramePath (`with_detectors`). `classify_frames` uses the classifier from one thread at a time.

    classifier: the fast tier's CNN; tiers: every served tier by name (default: the fast tier alone, built on
    classifier); default_model: the tier of requests that name none (ValueError when not served).
    """

    def __init__(self, detectors: dict[DetectorKind, DetectorStatus], classifier: ServedClassifier,
                 classes: tuple[int, ...], max_pixels: int, max_faces: int,
                 min_face_px: int = DEFAULT_MIN_FACE_PX, tiers: dict[str, Tier] | None = None,
                 default_model: str = FAST) -> None:
        if tuple(classifier.class_names) != EMOTIONS:
            raise ValueError(f"{classifier.path}: classes {classifier.class_names} are not {EMOTIONS}")
        self.detectors = detectors
        self.default_detector = default_detector(detectors)
        self.classifier = classifier
        self.tiers = tiers if tiers is not None else {FAST: fast_tier(classifier)}
        self.default_model = self.check_model(default_model)
        self.classes = classes
        self.max_pixels = max_pixels
        self.max_faces = max_faces
        self.min_face_px = min_face_px

    def with_detectors(self, detectors: dict[DetectorKind, DetectorStatus]) -> FramePath:
        """This frame path with another set of detectors (one per thread); classifier and limits shared.

        ValueError when the set offers different detectors than this one (they came from other weights).
        """
        if {kind: status.available for kind, status in detectors.items()} != \
                {kind: status.available for kind, status in self.detectors.items()}:
            raise ValueError("the detectors loaded for a worker differ from the server's")
        twin = copy.copy(self)
        twin.detectors = detectors
        return twin

    def check_model(self, name: str) -> str:
        """name when it is a served tier; ValueError naming the served ones otherwise."""
        if name not in self.tiers:
            raise ValueError(unknown_tier(name, tuple(self.tiers)))
        return name

    def choose_model(self, name: str) -> str:
        """The tier a request names, or default_model for an empty name; FrameError (INVALID_ARGUMENT)
        naming the served tiers for an unknown one."""
        name = name or self.default_model
        if name not in self.tiers:
            raise invalid(unknown_tier(name, tuple(self.tiers)))
        return name

    def choose_detector(self, kind: DetectorKind | None) -> DetectorStatus:
        """The requested detector, or the default; DetectorUnavailable when its weights were not found."""
        status = self.detectors[kind or self.default_detector]
        if not status.available:
            raise DetectorUnavailable(f"detector {status.kind.name} is unavailable: {status.detail}")
        return status

    def detect(self, source: ImageSource, options: DetectOptions,
               stop: Callable[[], bool] | None = None) -> DetectedFrame:
        """Decode, detect and crop one frame; FrameError for bad input or an unavailable detector.

        stop: asked after decoding, before each of the detector's network runs and before cropping; once it
        says True (nobody waits for the frame: deadline passed, call cancelled) the rest is dropped and
        Abandoned raised, so a large frame nobody waits for holds its thread for one network run at most.
        """
        if not 0.0 <= options.min_score <= 1.0:
            raise invalid(f"min_detection_score must be within 0-1, got {options.min_score}")
        if options.min_face_px < 0:
            raise invalid(f"min_face_px cannot be negative, got {options.min_face_px}")
        model = self.choose_model(options.model)
        detector = self.choose_detector(options.detector).detector
        start = time.perf_counter()
        frame = decode(source, self.max_pixels)
        decoded = time.perf_counter()
        threshold = options.min_score or detector.default_threshold
        min_face_px = options.min_face_px or self.min_face_px
        found = detector.detect(frame, threshold, min_face_px, stop)
        detections = sorted(found, key=lambda box: box.score, reverse=True)
        limit = min(options.max_faces or self.max_faces, self.max_faces)
        omitted = max(0, len(detections) - limit)
        detections = detections[:limit]
        if stop is not None and stop():
            raise Abandoned("the caller stopped waiting")
        crops = face_crops(frame, detections)
        colour = colour_crops(frame, detections) if COLOUR in self.tiers[model].inputs else None
        timing = Timing(decode_ms=(decoded - start) * 1000.0, detect_ms=milliseconds_since(decoded))
        return DetectedFrame(frame.shape[:2], detections, crops, timing, omitted, scene_thumbnail(frame), model,
                             colour)

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """(N, len(classes)) float probabilities of the served classes for (N, 48, 48) uint8 crops by the
        fast tier's CNN, renormalised to sum to 1 per row."""
        return self.served_classes(self.classifier(crops))

    def served_classes(self, probabilities: np.ndarray) -> np.ndarray:
        """(N, 7) EMOTIONS probabilities -> (N, len(classes)), renormalised to sum to 1 per row."""
        probabilities = probabilities[:, list(self.classes)]
        return probabilities / np.maximum(probabilities.sum(axis=1, keepdims=True), 1e-12)

    def classify_with(self, model: str, crops: dict[str, np.ndarray]) -> np.ndarray:
        """(N, len(classes)) probabilities of the served classes by tier `model` for {crop kind: crops}
        holding every kind the tier needs (DetectedFrame.crops_for); KeyError for a tier not served."""
        return self.served_classes(self.tiers[model].classify(crops))

    def classify_frames(self, frames: Sequence[DetectedFrame]) -> list[AnnotatedFrame]:
        """Classifies the crops of every frame in one classifier call per model tier (the frames that named
        it) and assembles each frame's answer, in the order of frames.

        Sets each frame's timing.classify_ms (its tier's whole call) and timing.batch_faces (crops in that
        call). A frame without faces costs nothing; a call with no crops at all never reaches a classifier.
        """
        answers: list[AnnotatedFrame | None] = [None] * len(frames)
        for model in dict.fromkeys(frame.model for frame in frames):
            group = [index for index, frame in enumerate(frames) if frame.model == model]
            for index, answer in zip(group, self.classify_group(model, [frames[index] for index in group])):
                answers[index] = answer
        return answers  # type: ignore[return-value]

    def classify_group(self, model: str, frames: Sequence[DetectedFrame]) -> list[AnnotatedFrame]:
        """classify_frames for frames that all named tier `model`: one call of its classifier."""
        counts = [len(frame.crops) for frame in frames]
        total = sum(counts)
        start = time.perf_counter()
        if total:
            kinds = self.tiers[model].inputs
            if len(frames) == 1:
                crops = frames[0].crops_for(kinds)
            else:
                crops = {kind: np.concatenate([frame.crops_for((kind,))[kind] for frame in frames]) for kind in kinds}
            probabilities = self.classify_with(model, crops)
        classify_ms = milliseconds_since(start) if total else 0.0
        answers = []
        offset = 0
        for frame, count in zip(frames, counts):
            frame.timing.classify_ms = classify_ms
            frame.timing.batch_faces = total
            faces = [FaceResult(box, probabilities[offset + index], self.classes, frame.scene)
                     for index, box in enumerate(frame.detections)]
            offset += count
            height, width = frame.size
            answers.append(AnnotatedFrame(width, height, faces, frame.timing, frame.faces_omitted, model))
        return answers

    def annotate(self, source: ImageSource, options: DetectOptions = DetectOptions()) -> AnnotatedFrame:
        """The whole path for one frame, on the calling thread; FrameError for bad input."""
        start = time.perf_counter()
        [annotated] = self.classify_frames([self.detect(source, options)])
        annotated.timing.total_ms = milliseconds_since(start)
        return annotated


def set_thread_counts(threads: int) -> None:
    """OpenCV's threads and the serving runtime's, set once per process before the model is loaded.

    threads: CPU threads for OpenCV (decode, detectors) and for each emotion classifier loaded after
    this call (the runtime fixes its thread count when it compiles the model). No torch involved.
    """
    import cv2

    from ferstream.model.runtime import set_inference_threads

    cv2.setNumThreads(threads)
    set_inference_threads(threads)


def load_frame_path(models_dir, model_path, classes: tuple[int, ...], max_pixels: int, max_faces: int,
                    min_face_px: int = DEFAULT_MIN_FACE_PX, models: Sequence[str] = (FAST,),
                    default_model: str = FAST, tta: str | None = None) -> FramePath:
    """Detectors from models_dir (and installed packages) plus the served emotion models; nothing is downloaded.

    model_path: the fast tier's CNN, None for $FER_MODEL or the shipped ONNX model (model/runtime.py); a
    PyTorch model file is exported in memory first when torch is installed. models: the tiers to serve
    (model/tiers.py TIER_NAMES); default_model: the tier of requests that name none; tta: the fast CNN's
    test-time augmentation (None: its declared default; model/tta.py). Raises before anything is returned,
    so a caller never holds a half-loaded path: FileNotFoundError for a missing model file, ValueError (one
    line naming the file or the unknown tier) for one the runtime cannot read, whose metadata is unknown,
    or a tier name not in TIER_NAMES.
    """
    from ferstream.model.runtime import load_classifier
    from ferstream.model.tiers import load_tiers

    from .detectors import load_detectors

    names = tuple(dict.fromkeys((*models, default_model)))
    if unknown := [name for name in names if name not in TIER_NAMES]:  # before any model is loaded
        raise ValueError(unknown_tier(unknown[0]))
    classifier = load_classifier(model_path, tta=tta)
    tiers = load_tiers(classifier, names)
    return FramePath(load_detectors(models_dir), classifier, classes, max_pixels, max_faces, min_face_px, tiers,
                     default_model)
