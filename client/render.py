"""The client's side of drawing: server replies turned into the plain values the one renderer draws
(ferstream.annotate.draw, shared with fer-annotate). Used by the Tk app (at display size, and for snapshots
at the source's size) and by headless mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ferstream.annotate.draw import Drawing, FaceAnnotation, colour_of, render
from ferstream.client.messages import box_tuple, emotion_name, probabilities
from ferstream.model.labels import EMOTIONS
from ferstream.v1 import emotion_pb2

__all__ = ["annotation", "annotations", "colour_of", "draw_annotations", "render_reply"]


def annotations(faces: Sequence[emotion_pb2.Face]) -> list[FaceAnnotation]:
    """The reply's faces as plain values, in reply order (the app's face list uses the same numbers and
    labels). A face on a track (track_id >= 1, a stream's) is numbered by its track id and, when the server
    smooths (track_scores sent), shown with its track's smoothed emotion and probabilities; other faces are
    numbered 1, 2, 3... and shown with this frame's own."""
    return [annotation(face, number) for number, face in enumerate(faces, start=1)]


def annotation(face: emotion_pb2.Face, number: int) -> FaceAnnotation:
    """One face as `annotations` shows it; number is used when the face is on no track."""
    if face.track_scores:
        smoothed = {score.emotion: score.probability for score in face.track_scores}
        shown = tuple(float(smoothed.get(index + 1, 0.0)) for index in range(len(EMOTIONS)))
        emotion = EMOTIONS[max(range(len(EMOTIONS)), key=shown.__getitem__)]
    else:
        shown, emotion = probabilities(face), emotion_name(face.emotion)
    return FaceAnnotation(box_tuple(face), emotion, shown, face.track_id or number)


def render_reply(
    image: np.ndarray, faces: Sequence[emotion_pb2.Face], scale: float = 1.0, charts: bool = True
) -> Drawing:
    """`image` resized by scale with the reply's faces drawn on it, and where each overlay went."""
    return render(image, annotations(faces), scale=scale, charts=charts)


def draw_annotations(
    image: np.ndarray, faces: Sequence[emotion_pb2.Face], scale: float = 1.0, charts: bool = True
) -> np.ndarray:
    """render_reply(...).image: a drawn copy of image (the input is left untouched)."""
    return render_reply(image, faces, scale, charts).image
