"""`ferstream.analyze`: one image through the server's frame path and model in this process, no server.

The frame path is loaded once, on the first call, exactly as fer-server loads it (load_frame_path with the
detector weights of $FER_MODELS_DIR or the package, and $FER_MODEL or the shipped emotion model), and its
answer goes through the same message building as the server's Annotate (server/protoconv.py), so a face here
is the face `EmotionClient.annotate` returns for the same image, down to the float32 probabilities.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np

from ferstream.pipeline.decode import EncodedImage, ImageSource
from ferstream.pipeline.framepath import FramePath

ImageInput = Union[str, os.PathLike, bytes, np.ndarray]

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
    """The process's frame path, loaded on the first call with fer-server's defaults (every class, the
    server's pixel limit) and a face ceiling of MAX_FACES_ASKED; the caller holds _lock. FileNotFoundError or ValueError when the emotion
    model cannot load (nothing is kept then, so the next call tries again)."""
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
    from ferstream.client.messages import detector_value, face_to_dict
    from ferstream.server import protoconv
    from ferstream.v1 import emotion_pb2 as pb

    from ferstream.model.tiers import TIER_NAMES, unknown_tier
    from ferstream.pipeline.settings import MAX_FACES

    if model not in TIER_NAMES:
        raise ValueError(unknown_tier(model))
    if max_faces < 0:
        raise ValueError(f"max_faces cannot be negative, got {max_faces}")
    source = image_source(image)
    options = protoconv.detect_options(pb.AnnotateOptions(detector=detector_value(detector),
                                                          min_detection_score=min_detection_score,
                                                          max_faces=min(max_faces or MAX_FACES, MAX_FACES_ASKED),
                                                          model=model))
    with _lock:
        annotated = _loaded_frame_path().annotate(source, options)
    response = protoconv.annotate_response(annotated)
    return Faces([face_to_dict(face) for face in response.faces], response.faces_omitted)
