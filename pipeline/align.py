"""Face alignment: the similarity transform that puts a face's five landmarks where FER2013's faces have them.

The classifier learned from FER2013's 48x48 crops, whose faces are upright and framed alike. A detected
face is cut (crops.py) through the rotation, scale and shift that best maps its landmarks onto
FER_TEMPLATE (least squares, Umeyama 1991), so a rolled face comes out upright with its eyes level and
at FER2013's scale. Only roll is undone: yaw and pitch cannot be in 2D.

FER_TEMPLATE was measured, not guessed: 1500 FER2013 Training faces (seed 1) upscaled 3x into 640x480
frames (training/fullpath.py: place_face), YuNet's landmarks mapped back to 48x48 crop pixels, median per
point, mirrored pairs averaged about their mean x (training flips faces, so the template is symmetric).

What it does (`fer-eval-path faces`; the figures are in docs/model-card.md#design-measurements): aligned
crops score above box crops, upright and rolled, mostly through framing, since YuNet's landmarks follow
only part of a roll in small faces. Refining them by running YuNet again on a larger face window changed
the accuracy too little to pay for itself, so it is not done.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from .detectors import LANDMARK_NAMES

Point = tuple[float, float]

# Where FER2013 faces have YuNet's five landmarks (LANDMARK_NAMES order), in pixels of a 48x48 crop with
# pixel centres at whole numbers (OpenCV's warpAffine convention): the eyes level 17.9 px apart.
FER_TEMPLATE = np.array([
    (14.9, 18.2),  # right eye (the person's; left in the image)
    (32.8, 18.2),  # left eye
    (23.9, 28.3),  # nose tip
    (16.4, 36.4),  # right mouth corner
    (31.4, 36.4),  # left mouth corner
])
TEMPLATE_SIZE = 48

# Where the accurate tier's expression model (model/zoo.py) was trained to see the five landmarks: the
# ArcFace template of InsightFace, used by OpenCV Zoo's facial-expression model, in pixels of a 112x112
# crop (LANDMARK_NAMES order). Faces are mapped onto it by the least-squares similarity transform.
ARCFACE_TEMPLATE = np.array([
    (38.2946, 51.6963),  # right eye (the person's; left in the image)
    (73.5318, 51.5014),  # left eye
    (56.0252, 71.7366),  # nose tip
    (41.5493, 92.3655),  # right mouth corner
    (70.7299, 92.2041),  # left mouth corner
])
ARCFACE_SIZE = 112
ARCFACE_POINTS: tuple[Point, ...] = tuple((float(x), float(y)) for x, y in ARCFACE_TEMPLATE)
RIGHT_EYE = LANDMARK_NAMES.index("right_eye")
LEFT_EYE = LANDMARK_NAMES.index("left_eye")


def eye_roll_degrees(landmarks: Sequence[Point]) -> float:
    """Angle in degrees of the line from the person's right eye to their left eye, in image coordinates
    (x right, y down): 0 for level eyes, positive when the face is turned clockwise on screen.

    landmarks: in LANDMARK_NAMES order. ValueError when there are fewer than LANDMARK_NAMES.
    """
    if len(landmarks) < len(LANDMARK_NAMES):
        raise ValueError(f"expected {len(LANDMARK_NAMES)} landmarks in {LANDMARK_NAMES} order, got {len(landmarks)}")
    (right_x, right_y), (left_x, left_y) = landmarks[RIGHT_EYE], landmarks[LEFT_EYE]
    return math.degrees(math.atan2(left_y - right_y, left_x - right_x))


def similarity_to(source: Sequence[Point] | np.ndarray, target: Sequence[Point] | np.ndarray) -> np.ndarray | None:
    """(2, 3) rotation + uniform scale + shift mapping the (N, 2) source points onto the (N, 2) target points
    with the least squared error (no reflection; Umeyama 1991). None when the source points coincide.

    Plain floats, not numpy: for five points numpy's cost per call is most of the work (about 45 against
    10 us a face).
    """
    source = source.tolist() if isinstance(source, np.ndarray) else source
    target = target.tolist() if isinstance(target, np.ndarray) else target
    count = len(source)
    source_x, source_y = sum(x for x, _ in source) / count, sum(y for _, y in source) / count
    target_x, target_y = sum(x for x, _ in target) / count, sum(y for _, y in target) / count
    # For 2D, the optimal rotation and scale come from the summed dot and cross products of the centred points.
    spread = dot = cross = 0.0
    for (x, y), (u, v) in zip(source, target):
        x, y, u, v = x - source_x, y - source_y, u - target_x, v - target_y
        spread += x * x + y * y
        dot += x * u + y * v
        cross += x * v - y * u
    if not math.isfinite(spread) or spread < 1e-9:
        return None
    a, b = dot / spread, cross / spread
    return np.array([[a, -b, target_x - (a * source_x - b * source_y)],
                     [b, a, target_y - (b * source_x + a * source_y)]])


@functools.cache
def template_points(size: int) -> tuple[Point, ...]:
    """FER_TEMPLATE scaled to a size x size crop (pixel centres at whole numbers)."""
    scale = size / TEMPLATE_SIZE
    return tuple((float(x), float(y)) for x, y in (FER_TEMPLATE + 0.5) * scale - 0.5)


def template_matrix(landmarks: Sequence[Point], size: int = TEMPLATE_SIZE) -> np.ndarray | None:
    """(2, 3) map from frame pixels to the pixels of a size x size crop that puts the landmarks on
    FER_TEMPLATE (scaled to size); None for degenerate or non-finite landmarks. ValueError for fewer than 5."""
    if len(landmarks) < len(LANDMARK_NAMES):
        raise ValueError(f"expected {len(LANDMARK_NAMES)} landmarks in {LANDMARK_NAMES} order, got {len(landmarks)}")
    points = [(float(x), float(y)) for x, y in landmarks[:len(LANDMARK_NAMES)]]
    if not math.isfinite(sum(x + y for x, y in points)):  # inf or NaN anywhere makes the sum so
        return None
    return similarity_to(points, template_points(size))


def arcface_matrix(landmarks: Sequence[Point]) -> np.ndarray | None:
    """(2, 3) map from frame pixels to the pixels of a 112x112 crop that puts the landmarks on
    ARCFACE_TEMPLATE (least squares, no reflection); None for degenerate or non-finite landmarks.
    ValueError for fewer than 5."""
    if len(landmarks) < len(LANDMARK_NAMES):
        raise ValueError(f"expected {len(LANDMARK_NAMES)} landmarks in {LANDMARK_NAMES} order, got {len(landmarks)}")
    points = [(float(x), float(y)) for x, y in landmarks[:len(LANDMARK_NAMES)]]
    if not math.isfinite(sum(x + y for x, y in points)):
        return None
    return similarity_to(points, ARCFACE_POINTS)


def transform_points(points: Sequence[Point], matrix: np.ndarray) -> tuple[Point, ...]:
    """points (x, y) mapped by a (2, 3) affine matrix, as OpenCV's warpAffine maps pixel positions."""
    if not len(points):
        return ()
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    mapped = xy @ matrix[:, :2].T + matrix[:, 2]
    return tuple((float(x), float(y)) for x, y in mapped)
