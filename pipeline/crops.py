"""Face detections to the classifier's input: grey, 48x48, framed as FER2013 frames faces, never stretched.

Two ways to cut a face, both an affine map from frame pixels to crop pixels:
- aligned (detections with landmarks, YuNet, when align is on): the similarity transform that puts the
  five landmarks on FER2013's (align.py), so rolled faces come out upright at FER2013's scale;
- box (Haar, SSD, or align off): a square of the box's longer side times (1 + 2 MARGIN) on its centre.
Where the map reaches outside the frame the crop is filled (FILL), so the face keeps its proportions and
its place: with the frame cut just beyond a face box (`fer-eval-path border`) the top emotion stays far
more often than when a cut-short square is stretched to 48x48 (docs/model-card.md#design-measurements).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .align import ARCFACE_SIZE, Point, arcface_matrix, template_matrix, transform_points
from .detectors import Detection

CROP_SIZE = 48
# FER2013's framing is the detector box's longer side itself: on FER2013 Training faces placed in frames
# (training/fullpath.py) FER2013's side is within 6 % of the box's longer side for YuNet, the SSD and Haar,
# and the margin of 0.15 used before cost accuracy (docs/model-card.md#design-measurements).
MARGIN = 0.0


class Fill(enum.Enum):
    """What fills the part of a crop that lies outside the frame."""

    # The frame's edge pixels carried outwards (cv2.BORDER_REPLICATE).
    REPLICATE = "replicate"
    # Mid grey, NEUTRAL_GREY (cv2.BORDER_CONSTANT).
    NEUTRAL = "neutral"


# The middle of the models' input range (Preprocessing.mean 0.5 of 255).
NEUTRAL_GREY = 128
# Chosen by measurement (`fer-eval-path border` and `faces`), though the two fills differ by less than their
# noise (docs/model-card.md#design-measurements).
FILL = Fill.REPLICATE


@dataclass(frozen=True)
class CropMap:
    """How one crop is cut: `matrix` maps frame pixels to the pixels of a side x side image at about the
    frame's own resolution (side >= CROP_SIZE), which is then shrunk to CROP_SIZE by area averaging."""

    matrix: np.ndarray
    side: int

    def to_crop(self, size: int = CROP_SIZE) -> np.ndarray:
        """(2, 3) map from frame pixels to the pixels of the size x size crop (pixel centres at whole numbers)."""
        ratio = size / self.side
        return self.matrix * ratio + np.array([[0.0, 0.0, 0.5 * ratio - 0.5]] * 2)


def box_map(box: Detection, margin: float = MARGIN) -> CropMap:
    """The square of the box's longer side times (1 + 2 margin), centred on the box, at the frame's
    resolution: whole-pixel aligned (an exact copy) unless smaller than CROP_SIZE, then scaled up."""
    side = max(box.width, box.height) * (1.0 + 2.0 * margin)
    centre_x, centre_y = box.x + box.width / 2.0, box.y + box.height / 2.0
    native = int(round(side))
    if native >= CROP_SIZE:
        left, top = int(round(centre_x - native / 2.0)), int(round(centre_y - native / 2.0))
        return CropMap(np.array([[1.0, 0.0, -left], [0.0, 1.0, -top]]), native)
    scale = CROP_SIZE / side
    shift_x = (CROP_SIZE - 1) / 2.0 - scale * (centre_x - 0.5)
    shift_y = (CROP_SIZE - 1) / 2.0 - scale * (centre_y - 0.5)
    return CropMap(np.array([[scale, 0.0, shift_x], [0.0, scale, shift_y]]), CROP_SIZE)


def aligned_map(landmarks: Sequence[Point]) -> CropMap | None:
    """The map putting the landmarks on align.FER_TEMPLATE, at the frame's resolution (never below
    CROP_SIZE); None for degenerate landmarks."""
    matrix = template_matrix(landmarks, CROP_SIZE)
    if matrix is None:
        return None
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))  # crop pixels per frame pixel
    native = max(CROP_SIZE, int(round(CROP_SIZE / scale)))
    ratio = native / CROP_SIZE
    # Pixel centres: crop pixel c covers native pixels around (c + 0.5) * ratio - 0.5.
    return CropMap(matrix * ratio + np.array([[0.0, 0.0, 0.5 * ratio - 0.5]] * 2), native)


def crop_map(box: Detection, align: bool = True) -> CropMap:
    """Aligned when align is set and the detection has usable landmarks, else the box square."""
    if align and box.landmarks:
        aligned = aligned_map(box.landmarks)
        if aligned is not None:
            return aligned
    return box_map(box)


def cut(grey: np.ndarray, where: CropMap, fill: Fill = FILL) -> np.ndarray:
    """(CROP_SIZE, CROP_SIZE) uint8 crop of an (H, W) uint8 grey frame; parts outside the frame are filled.

    Cut at the frame's own resolution first (bilinear; a whole-pixel box map is an exact copy), then
    shrunk by area averaging, so no detail aliases.
    """
    border = cv2.BORDER_REPLICATE if fill is Fill.REPLICATE else cv2.BORDER_CONSTANT
    region = cv2.warpAffine(grey, where.matrix, (where.side, where.side), flags=cv2.INTER_LINEAR,
                            borderMode=border, borderValue=NEUTRAL_GREY)
    if where.side == CROP_SIZE:
        return region
    return cv2.resize(region, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)


def face_crops(frame: np.ndarray, boxes: Sequence[Detection], align: bool = True, fill: Fill = FILL) -> np.ndarray:
    """(N, 48, 48) uint8 grey crops of an (H, W, 3) BGR or (H, W) grey uint8 frame, one per box, in order."""
    crops = np.empty((len(boxes), CROP_SIZE, CROP_SIZE), dtype=np.uint8)
    if not boxes:
        return crops
    grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    for index, box in enumerate(boxes):
        crops[index] = cut(grey, crop_map(box, align), fill)
    return crops


def landmarks_in_crop(box: Detection, align: bool = True) -> tuple[Point, ...]:
    """The detection's landmarks in pixels of its 48x48 crop (empty when it has none)."""
    return transform_points(box.landmarks, crop_map(box, align).to_crop())


# The accurate tier's crops (model/zoo.py): 112x112 colour, aligned on the ArcFace template (align.py).
COLOUR_SIZE = ARCFACE_SIZE
# Fallback for a detection without landmarks (SSD, Haar, or YuNet's degenerate ones): where YuNet's box
# lies in the aligned crop, measured (median of 224 faces: the shared photos and 150 realfaces-dev photos):
# centre (55.9, 63.7) px, 80.7 x 100.7 px, whose geometric mean side is BOX_SIDE. The box is mapped there
# upright, its geometric mean side to BOX_SIDE.
BOX_CENTRE = (55.9, 63.7)
BOX_SIDE = 90.1


def colour_matrix(box: Detection) -> np.ndarray:
    """(2, 3) map from frame pixels to the pixels of the box's 112x112 colour crop: the ArcFace alignment
    when the box has usable landmarks, else the box fallback (BOX_CENTRE, BOX_SIDE)."""
    if box.landmarks:
        matrix = arcface_matrix(box.landmarks)
        if matrix is not None:
            return matrix
    scale = BOX_SIDE / max(float(np.sqrt(box.width * box.height)), 1.0)
    centre_x, centre_y = box.x + box.width / 2.0, box.y + box.height / 2.0
    # The same point convention as the measurement of BOX_CENTRE (the box centre at x + width / 2).
    return np.array([[scale, 0.0, BOX_CENTRE[0] - scale * centre_x],
                     [0.0, scale, BOX_CENTRE[1] - scale * centre_y]])


def cut_colour(bgr: np.ndarray, matrix: np.ndarray, fill: Fill = FILL) -> np.ndarray:
    """(112, 112, 3) uint8 crop of an (H, W, 3) BGR frame through matrix (frame -> crop pixels). Cut at the
    frame's own resolution first (bilinear), then shrunk by area averaging, as `cut` does."""
    border = cv2.BORDER_REPLICATE if fill is Fill.REPLICATE else cv2.BORDER_CONSTANT
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))  # crop pixels per frame pixel
    native = max(COLOUR_SIZE, int(round(COLOUR_SIZE / scale)))
    ratio = native / COLOUR_SIZE
    region = cv2.warpAffine(bgr, matrix * ratio + np.array([[0.0, 0.0, 0.5 * ratio - 0.5]] * 2), (native, native),
                            flags=cv2.INTER_LINEAR, borderMode=border, borderValue=(NEUTRAL_GREY,) * 3)
    if native == COLOUR_SIZE:
        return region
    return cv2.resize(region, (COLOUR_SIZE, COLOUR_SIZE), interpolation=cv2.INTER_AREA)


def colour_crops(frame: np.ndarray, boxes: Sequence[Detection], fill: Fill = FILL) -> np.ndarray:
    """(N, 112, 112, 3) uint8 BGR crops of an (H, W, 3) BGR or (H, W) grey uint8 frame, one per box, in order,
    aligned on the ArcFace template (colour_matrix)."""
    crops = np.empty((len(boxes), COLOUR_SIZE, COLOUR_SIZE, 3), dtype=np.uint8)
    if not boxes:
        return crops
    bgr = frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    for index, box in enumerate(boxes):
        crops[index] = cut_colour(bgr, colour_matrix(box), fill)
    return crops
