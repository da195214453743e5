"""The service's messages as Python values: images for the wire, request options by name, and faces as
names, tuples and the JSON-lines records fer-annotate writes too.

Shared by every call of the client (unary calls in library.py, streams in streaming.py) and by the gateway.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ferstream.annotate.records import FaceRecord
from ferstream.model.labels import EMOTIONS  # the Emotion enum's order (without UNSPECIFIED)
from ferstream.v1 import emotion_pb2

DEFAULT_JPEG_QUALITY = 85
# The lowest JPEG quality fer-client and fer-annotate --server send at: from 75 up, at least 95 % of faces keep
# the top emotion they have in the uncompressed frame; below, more change (docs/model-card.md#design-measurements).
MIN_JPEG_QUALITY = 75

DETECTORS: tuple[str, ...] = ("haar", "ssd", "yunet")
# The emotion models a fer-server serves by name (AnnotateOptions.model; GetModelInfo lists them).
MODELS: tuple[str, ...] = ("fast", "accurate")


ImageInput = np.ndarray | bytes | str | os.PathLike


def emotion_name(value: int) -> str:
    """'happy' for EMOTION_HAPPY; 'unspecified' for 0."""
    return emotion_pb2.Emotion.Name(value).removeprefix("EMOTION_").lower()


def detector_value(name: str | int | None) -> int:
    """The Detector enum value for 'haar' / 'ssd' / 'yunet'; None, '' or 'default' mean the server's choice."""
    if name is None or name == "" or name == "default":
        return emotion_pb2.DETECTOR_UNSPECIFIED
    if isinstance(name, int):
        emotion_pb2.Detector.Name(name)  # ValueError for a value the proto does not define
        return name
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    return emotion_pb2.Detector.Value(f"DETECTOR_{name.upper()}")


def detector_name(value: int) -> str:
    """'yunet' for DETECTOR_YUNET; 'default' for DETECTOR_UNSPECIFIED."""
    name = emotion_pb2.Detector.Name(value).removeprefix("DETECTOR_").lower()
    return "default" if name == "unspecified" else name


def probabilities(face: emotion_pb2.Face) -> tuple[float, ...]:
    """The face's 7 probabilities in EMOTIONS order (0 for a class the server did not send)."""
    by_class = {score.emotion: score.probability for score in face.scores}
    return tuple(float(by_class.get(index + 1, 0.0)) for index in range(len(EMOTIONS)))


def box_tuple(face: emotion_pb2.Face) -> tuple[int, int, int, int]:
    """(x, y, width, height) in pixels of the sent image."""
    return (face.box.x, face.box.y, face.box.width, face.box.height)


def make_options(
    detector: str | int | None = None, min_detection_score: float = 0.0, max_faces: int = 0, model: str = ""
) -> emotion_pb2.AnnotateOptions:
    """AnnotateOptions for a request: detector by name (None: the server's), score threshold 0-1 (0: the
    detector's own), most faces (0: the server's limit), emotion model by name ("fast", "accurate"; empty:
    the server's default for the call). ValueError for an unknown detector; the server refuses an unknown
    model (INVALID_ARGUMENT naming the ones it serves)."""
    return emotion_pb2.AnnotateOptions(
        detector=detector_value(detector), min_detection_score=min_detection_score, max_faces=max_faces,
        model=model
    )


def encode_image(image: ImageInput, jpeg_quality: int | None = DEFAULT_JPEG_QUALITY) -> emotion_pb2.Image:
    """Wraps an image for the wire: arrays become JPEG (or raw pixels when jpeg_quality is None)."""
    if isinstance(image, bytes):
        return emotion_pb2.Image(encoded=image)
    if isinstance(image, (str, os.PathLike)):
        return emotion_pb2.Image(encoded=Path(image).read_bytes())
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError("image must be a uint8 numpy array, encoded bytes or a file path")
    if jpeg_quality is None:
        return _raw_image(image)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
        raise ValueError(f"cannot JPEG-encode an array of shape {image.shape}")
    return emotion_pb2.Image(encoded=jpeg.tobytes())


def _raw_image(image: np.ndarray) -> emotion_pb2.Image:
    """Grey (H, W) or BGR (H, W, 3) uint8 pixels as a RawImage, uncompressed."""
    if image.ndim == 2:
        pixel_format = emotion_pb2.PIXEL_FORMAT_GRAY8
    elif image.ndim == 3 and image.shape[2] == 3:
        pixel_format = emotion_pb2.PIXEL_FORMAT_BGR8
    else:
        raise ValueError(f"raw images must be grey (H, W) or BGR (H, W, 3), not {image.shape}")
    height, width = image.shape[:2]
    raw = emotion_pb2.RawImage(
        width=width, height=height, format=pixel_format, data=np.ascontiguousarray(image).tobytes()
    )
    return emotion_pb2.Image(raw=raw)



def face_record(face: emotion_pb2.Face) -> FaceRecord:
    """The face as the JSON-lines FaceRecord that fer-annotate writes too (ferstream.annotate.records).

    probabilities holds the classes the server sent (all seven unless it serves a subset), in Emotion order;
    a stream's face also carries its track_id and, when the server smooths, track_probabilities.
    """
    def by_name(scores) -> dict[str, float]:
        return {emotion_name(score.emotion): float(score.probability)
                for score in sorted(scores, key=lambda score: score.emotion)}

    return FaceRecord(box_tuple(face), float(face.detection_score), emotion_name(face.emotion), by_name(face.scores),
                      face.track_id or None, by_name(face.track_scores) if face.track_scores else None)


def omitted_note(response: emotion_pb2.AnnotateResponse | emotion_pb2.StreamAnnotateResponse) -> str:
    """"32 of 43 faces shown (limit 32)" when the face limit (the request's max_faces, else the server's
    --max-faces) left faces out of the response; "" when it kept them all. The faces kept are the limit."""
    if not response.faces_omitted:
        return ""
    shown = len(response.faces)
    return f"{shown} of {shown + response.faces_omitted} faces shown (limit {shown})"


def face_to_dict(face: emotion_pb2.Face) -> dict[str, object]:
    """A JSON-ready view of one face: box, detection score, top emotion and its probabilities (the
    face's entry in fer-annotate's and fer-client --headless's JSON lines)."""
    return face_record(face).to_json()
