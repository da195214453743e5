"""Face boxes to the classifier's input: square, with a margin, grey, 48x48."""

from __future__ import annotations

import cv2
import numpy as np

from .detectors import Detection

CROP_SIZE = 48
# FER2013 faces include some forehead and chin; detector boxes are tighter than that.
MARGIN = 0.15


def square_with_margin(box: Detection, width: int, height: int, margin: float = MARGIN) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a square around the box, grown by margin per side, clamped to the frame."""
    side = max(box.width, box.height) * (1.0 + 2.0 * margin)
    centre_x, centre_y = box.x + box.width / 2.0, box.y + box.height / 2.0
    left = max(0, int(round(centre_x - side / 2.0)))
    top = max(0, int(round(centre_y - side / 2.0)))
    right = min(width, int(round(centre_x + side / 2.0)))
    bottom = min(height, int(round(centre_y + side / 2.0)))
    return left, top, right, bottom


def face_crops(frame: np.ndarray, boxes: list[Detection]) -> np.ndarray:
    """(N, 48, 48) uint8 grey crops of a BGR frame, one per box."""
    crops = np.empty((len(boxes), CROP_SIZE, CROP_SIZE), dtype=np.uint8)
    if not boxes:
        return crops
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    height, width = grey.shape
    for index, box in enumerate(boxes):
        left, top, right, bottom = square_with_margin(box, width, height)
        crops[index] = cv2.resize(grey[top:bottom, left:right], (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)
    return crops
