"""`ferstream.analyze`: one image through the server's frame path and model in this process, no server.

The frame path is loaded once, on the first call, exactly as fer-server loads it (load_frame_path with the
detector weights of $FER_MODELS_DIR or the package, and $FER_MODEL or the shipped emotion model). Each face
of its answer (pipeline/framepath.py's FaceResult) becomes the JSON-lines face of annotate/records.py, with
its numbers held to float32 as the service's messages carry them, so a face here is the face
`EmotionClient.annotate` returns for the same image (`ferstream.client.face_to_dict`), down to the last
decimal written.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ferstream.model.labels import EMOTIONS
from ferstream.pipeline.decode import EncodedImage, ImageSource
from ferstream.pipeline.detectors import DetectorKind
from ferstream.pipeline.framepath import FaceResult, FramePath

ImageInput = str | os.PathLike | bytes | np.ndarray

# The most faces analyze keeps per image when asked (max_faces): the frame path is loaded with this ceiling,
# far above any photo's crowd, and max_faces=0 keeps fer-server's default limit (MAX_FACES, 32).
MAX_FACES_ASKED = 10_000


class Faces(list):
    """analyze's answer: a list of face dicts, highest detection score first, that also says how many
    faces the face limit left out (faces_omitted: the image had len(faces) + faces_omitted; 0 when none)."""

    def __init__(self, faces: list[dict[str, Any]], faces_omitted: int = 0) -> None:
        super().__init__(faces)
        self.faces_omitted = faces_omitted

_lock = threading.Lock()
_frame_path: FramePath | None = None


def _loaded_frame_path() -> FramePath:
    """The process's frame path, loaded on the first call with fer-server's defaults (every class, the server's pixel
    limit) and a face ceiling of MAX_FACES_ASKED; the caller holds _lock. FileNotFoundError or ValueError when the
    emotion model cannot load (nothing is kept then, so the next call tries again)."""
    global _frame_path
    if _frame_path is None:
        from ferstream.pipeline.framepath import load_frame_path
        from ferstream.pipeline.settings import MAX_PIXELS, default_models_dir, parse_classes

        from ferstream.model.tiers import ACCURATE, TIER_NAMES

        _frame_path = load_frame_path(default_models_dir(), None, parse_classes(None), MAX_PIXELS, MAX_FACES_ASKED,
                                      models=TIER_NAMES, default_model=ACCURATE)
    return _frame_path


def image_source(image: ImageInput) -> ImageSource:
    """The frame path's view of image: a file path (read here), encoded bytes (JPEG, PNG, BMP, WebP), or a
    BGR uint8 (height, width, 3) or grey (height, width) numpy array. TypeError for anything else; OSError
    for an unreadable file, ValueError for an array of another shape or type."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (image.ndim == 3 and image.shape[2] == 3 or image.ndim == 2):
            raise ValueError(f"expected a (height, width, 3) BGR or (height, width) grey uint8 array, "
                             f"got {image.dtype} {image.shape}")
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image
    if isinstance(image, (bytes, bytearray, memoryview)):
        return EncodedImage(bytes(image))
    if isinstance(image, (str, os.PathLike)):
        return EncodedImage(Path(image).read_bytes())
    raise TypeError(f"expected a path, encoded bytes or a numpy array, got {type(image).__name__}")


def detector_kind(name: str | int | None) -> DetectorKind | None:
    """The detector analyze's `detector` names: "haar", "ssd" or "yunet" (or its Detector number, 1-3);
    None, "", "default" or 0 for the best available. ValueError naming the choices for any other."""
    if name is None or name == "" or name == "default" or name == 0:
        return None
    names = tuple(kind.name.lower() for kind in DetectorKind)
    if isinstance(name, int):
        if name not in set(DetectorKind):
            raise ValueError(f"unknown detector number {name}; choose one of {', '.join(names)}")
        return DetectorKind(name)
    if name not in names:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(names)}")
    return DetectorKind[name.upper()]


def face_dict(face: FaceResult) -> dict[str, Any]:
    """One face as analyze answers it: annotate/records.py's JSON-lines face (box, detection_score, emotion,
    probabilities of the served classes in EMOTIONS order). The score and probabilities are taken as float32
    first, the precision of the service's Face message, so that they round to the same 4 decimals as the face
    a fer-server answers for the same image."""
    from ferstream.annotate.records import FaceRecord

    box = face.box
    probabilities = {EMOTIONS[index]: float(np.float32(probability))
                     for index, probability in zip(face.classes, face.probabilities)}
    return FaceRecord((box.x, box.y, box.width, box.height), float(np.float32(box.score)), EMOTIONS[face.top_class],
                      probabilities).to_json()


def analyze(image: ImageInput, detector: str | None = None, min_detection_score: float = 0.0,
            max_faces: int = 0, model: str = "accurate") -> Faces:
    """The faces of one image, highest detection score first, each as `ferstream.client.face_to_dict` gives
    it: {"box": {"x", "y", "width", "height"} in pixels of the image, "detection_score": 0-1, "emotion":
    the most probable class, "probabilities": {class name: 0-1, summing to 1}}.

    image: a path, encoded bytes, or a BGR (or grey) uint8 numpy array. detector: "haar", "ssd" or "yunet"
    (None: the best available, as the server chooses); min_detection_score: 0 for the detector's default;
    max_faces: the most faces kept (the highest scored), up to MAX_FACES_ASKED; 0 for fer-server's default
    limit (32). The answer is a list (Faces) whose faces_omitted says how many faces the limit left out.
    model: the emotion model, "accurate" (photos' default, as the server's Annotate) or "fast" (live
    streams' default; several times cheaper per face). Thread-safe: calls from several threads take turns on
    the one frame path (its detectors are not thread-safe). Raises ferstream.pipeline.errors.FrameError for
    an image that cannot be decoded or is too large, ValueError for an unknown detector or model or a
    negative max_faces, OSError for an unreadable file, and FileNotFoundError or ValueError when the emotion
    model cannot load.
    """
    from ferstream.model.tiers import TIER_NAMES, unknown_tier
    from ferstream.pipeline.framepath import DetectOptions
    from ferstream.pipeline.settings import MAX_FACES

    if model not in TIER_NAMES:
        raise ValueError(unknown_tier(model))
    if max_faces < 0:
        raise ValueError(f"max_faces cannot be negative, got {max_faces}")
    source = image_source(image)
    # The threshold as float32, as a request's AnnotateOptions carries it to the server: the same faces pass.
    options = DetectOptions(detector_kind(detector), float(np.float32(min_detection_score)),
                            min(max_faces or MAX_FACES, MAX_FACES_ASKED), model=model)
    with _lock:
        annotated = _loaded_frame_path().annotate(source, options)
    return Faces([face_dict(face) for face in annotated.faces], annotated.faces_omitted)
