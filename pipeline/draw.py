"""Drawing annotations onto a BGR frame: a box and the top emotion per face."""

from __future__ import annotations

import cv2
import numpy as np

from .framepath import AnnotatedFrame

BOX_COLOUR = (0, 200, 255)
TEXT_COLOUR = (0, 0, 0)


def draw_annotations(frame: np.ndarray, annotated: AnnotatedFrame) -> np.ndarray:
    """A copy of frame with each face's box and "emotion probability" label."""
    canvas = frame.copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    scale = max(0.4, max(canvas.shape[:2]) / 1200)
    for face in annotated.faces:
        box = face.box
        cv2.rectangle(canvas, (box.x, box.y), (box.x + box.width, box.y + box.height), BOX_COLOUR, thickness)
        label = f"{face.top_name} {float(np.max(face.probabilities)):.2f}"
        (text_width, text_height), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = max(0, box.y - text_height - baseline - 2)
        cv2.rectangle(canvas, (box.x, top), (box.x + text_width + 2, top + text_height + baseline + 2), BOX_COLOUR, -1)
        cv2.putText(canvas, label, (box.x + 1, top + text_height + 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    TEXT_COLOUR, 1, cv2.LINE_AA)
    return canvas
