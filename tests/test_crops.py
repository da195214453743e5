"""Honest crops: where a face's crop leaves the frame it is padded, at every edge, never stretched."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferstream.pipeline.crops import CROP_SIZE, NEUTRAL_GREY, Fill, crop_map, face_crops
from ferstream.pipeline.detectors import Detection, DetectorKind, load_detectors

SIDES = ("left", "top", "right", "bottom")


@pytest.fixture(scope="module")
def faces(fer_models_dir: Path, faces_dir: Path) -> tuple[np.ndarray, list[Detection]]:
    """A photo with three large frontal faces, and YuNet's detections (with landmarks) in it."""
    photo = cv2.imread(str(faces_dir / "2008_002506.jpg"))
    yunet = load_detectors(fer_models_dir)[DetectorKind.YUNET].detector
    found = yunet.detect(photo, yunet.default_threshold)
    assert len(found) == 3
    return photo, found


def cut_through(photo: np.ndarray, box: Detection, side: str) -> tuple[np.ndarray, int, int]:
    """The photo with the frame edge moved a quarter of the box into the face on one side, and the cut
    frame's origin in the photo."""
    height, width = photo.shape[:2]
    left, top, right, bottom = 0, 0, width, height
    if side == "left":
        left = box.x + box.width // 4
    elif side == "top":
        top = box.y + box.height // 4
    elif side == "right":
        right = box.x + box.width - box.width // 4
    else:
        bottom = box.y + box.height - box.height // 4
    return np.ascontiguousarray(photo[top:bottom, left:right]), left, top


def moved(box: Detection, dx: int, dy: int) -> Detection:
    return replace(box, x=box.x + dx, y=box.y + dy, landmarks=tuple((x + dx, y + dy) for x, y in box.landmarks))


def coverage(frame: np.ndarray, box: Detection, align: bool) -> np.ndarray:
    """(48, 48) share, 0-255, of each crop pixel that comes from inside the frame."""
    where = crop_map(box, align)
    inside = cv2.warpAffine(np.full(frame.shape[:2], 255, np.uint8), where.matrix, (where.side, where.side),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return cv2.resize(inside, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("align", [False, True], ids=["box", "aligned"])
@pytest.mark.parametrize("fill", list(Fill), ids=[fill.value for fill in Fill])
@pytest.mark.parametrize("side", SIDES)
def test_a_crop_leaving_the_frame_is_padded_not_stretched(faces, side: str, fill: Fill, align: bool) -> None:
    photo, boxes = faces
    for box in boxes:
        whole = face_crops(photo, [box], align=align, fill=fill)[0]
        frame, left, top = cut_through(photo, box, side)
        shifted = moved(box, -left, -top)
        crop = face_crops(frame, [shifted], align=align, fill=fill)[0]
        share = coverage(frame, shifted, align)
        inside, outside = share == 255, share == 0
        assert outside.sum() >= 0.1 * CROP_SIZE ** 2  # a real part of the crop lies beyond the frame edge
        # What the frame still shows is where it was, at the same scale: unchanged pixel for pixel (a turned
        # crop within OpenCV's 1/32-pixel fixed-point rounding of the shifted map).
        assert np.abs(crop[inside].astype(int) - whole[inside]).max() <= (2 if align else 0)
        if fill is Fill.NEUTRAL:
            assert (crop[outside] == NEUTRAL_GREY).all()
        elif not align:  # the edge carried outwards: constant across the cut, row by row or column by column
            rows = side in ("left", "right")
            lines, masks = (crop, outside) if rows else (crop.T, outside.T)
            for line, mask in zip(lines, masks):
                if mask.any():
                    assert np.ptp(line[mask]) <= 1


def test_a_face_in_a_corner_is_padded_on_two_sides(faces) -> None:
    photo, boxes = faces
    box = boxes[0]
    frame = np.ascontiguousarray(photo[box.y + box.height // 3:, box.x + box.width // 3:])
    shifted = moved(box, -(box.x + box.width // 3), -(box.y + box.height // 3))
    crop = face_crops(frame, [shifted], align=False, fill=Fill.NEUTRAL)[0]
    share = coverage(frame, shifted, align=False)
    assert (crop[share == 0] == NEUTRAL_GREY).all()
    assert (share[0] == 0).all() and (share[:, 0] == 0).all()  # the top rows and the left columns are fill
