"""Draws annotations onto frames: a box, the top emotion with its probability, and a bar chart of the
seven probabilities per face, in one colour per emotion. Pure numpy/OpenCV, shared by the Tk app
(which draws at display size) and headless mode (which draws at the source's size).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ferstream.client.library import EMOTIONS, box_tuple, emotion_name, probabilities
from ferstream.v1 import emotion_pb2

# BGR, saturated and far apart so each emotion reads at a glance (and is unlikely in a photo).
EMOTION_COLOURS: dict[str, tuple[int, int, int]] = {
    "angry": (0, 0, 255),
    "disgust": (0, 160, 0),
    "fear": (255, 0, 255),
    "happy": (0, 255, 255),
    "sad": (255, 0, 0),
    "surprise": (0, 128, 255),
    "neutral": (255, 255, 0),
}
UNKNOWN_COLOUR = (255, 255, 255)
BOX_THICKNESS = 2

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_LABEL_SCALE = 0.5
_BAR_ROW_PX = 12
_BAR_PANEL_W = 110
_BAR_LABEL_W = 30
_BAR_PANEL_H = _BAR_ROW_PX * len(EMOTIONS) + 4


def colour_of(emotion: str) -> tuple[int, int, int]:
    return EMOTION_COLOURS.get(emotion, UNKNOWN_COLOUR)


def draw_annotations(
    image: np.ndarray, faces: Sequence[emotion_pb2.Face], scale: float = 1.0, bars: bool = True
) -> np.ndarray:
    """A copy of `image` resized by `scale`, with each face drawn at its box scaled the same way."""
    if scale == 1.0:
        canvas = image.copy()
    else:
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        canvas = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    if canvas.ndim == 2:
        canvas = cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)
    for face in faces:
        _draw_face(canvas, face, scale, bars)
    return canvas


def scaled_box(face: emotion_pb2.Face, scale: float) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) of the face on an image resized by `scale`."""
    x, y, width, height = box_tuple(face)
    return (round(x * scale), round(y * scale), round((x + width) * scale), round((y + height) * scale))


def _draw_face(canvas: np.ndarray, face: emotion_pb2.Face, scale: float, bars: bool) -> None:
    emotion = emotion_name(face.emotion)
    colour = colour_of(emotion)
    x1, y1, x2, y2 = scaled_box(face, scale)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, BOX_THICKNESS)
    probs = probabilities(face)
    top = probs[EMOTIONS.index(emotion)] if emotion in EMOTIONS else 0.0
    _draw_label(canvas, f"{emotion} {top:.0%}", (x1, y1), colour)
    if bars:
        _draw_bars(canvas, probs, (x1, y1, x2, y2))


def _draw_label(canvas: np.ndarray, text: str, corner: tuple[int, int], colour: tuple[int, int, int]) -> None:
    (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, _LABEL_SCALE, 1)
    x = min(max(corner[0], 0), max(0, canvas.shape[1] - text_w - 4))
    # Above the box when there is room, else just inside its top edge.
    top = corner[1] - text_h - baseline - 4 if corner[1] - text_h - baseline - 4 >= 0 else corner[1]
    cv2.rectangle(canvas, (x, top), (x + text_w + 4, top + text_h + baseline + 4), colour, cv2.FILLED)
    cv2.putText(canvas, text, (x + 2, top + text_h + 2), _FONT, _LABEL_SCALE, (0, 0, 0), 1, cv2.LINE_AA)


def _draw_bars(canvas: np.ndarray, probs: Sequence[float], box: tuple[int, int, int, int]) -> None:
    height, width = canvas.shape[:2]
    if width < _BAR_PANEL_W or height < _BAR_PANEL_H:
        return
    x1, y1, x2, y2 = box
    # Under the box (usually clothes), else above its label, else beside it: the face stays visible.
    label_h = 22
    left = min(max(x1, 0), width - _BAR_PANEL_W)
    if y2 + 4 + _BAR_PANEL_H <= height:
        top = y2 + 4
    elif y1 - label_h - _BAR_PANEL_H >= 0:
        top = y1 - label_h - _BAR_PANEL_H
    elif x2 + 4 + _BAR_PANEL_W <= width or x1 - 4 - _BAR_PANEL_W >= 0:
        top = min(max(y1, 0), height - _BAR_PANEL_H)
        left = x2 + 4 if x2 + 4 + _BAR_PANEL_W <= width else x1 - 4 - _BAR_PANEL_W
    else:
        return  # no room that leaves the face visible: the label alone says enough
    panel = canvas[top : top + _BAR_PANEL_H, left : left + _BAR_PANEL_W]
    panel[:] = (panel * 0.35).astype(np.uint8)  # darken so bars and text read on any background
    bar_span = _BAR_PANEL_W - _BAR_LABEL_W - 4
    for row, (emotion, probability) in enumerate(zip(EMOTIONS, probs)):
        y = top + 2 + row * _BAR_ROW_PX
        cv2.putText(
            canvas, emotion[:3], (left + 2, y + _BAR_ROW_PX - 3), _FONT, 0.35, (255, 255, 255), 1, cv2.LINE_AA
        )
        bar_end = left + _BAR_LABEL_W + max(1, round(probability * bar_span))
        cv2.rectangle(
            canvas, (left + _BAR_LABEL_W, y + 2), (bar_end, y + _BAR_ROW_PX - 2), colour_of(emotion), cv2.FILLED
        )
