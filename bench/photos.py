"""The bench's test frames: every annotated photo in testdata/faces, resized to 640x480, or placed at its
own resolution in a larger canvas (`load_canvas_frames`, for small faces in large frames).

Each frame keeps its hand-drawn face boxes (scaled or moved with it) and a JPEG copy, encoded once, which
is what the stream bench sends: clients pay for encoding once, not per frame.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

FRAME_SIZE = (640, 480)  # width, height
JPEG_QUALITY = 85  # the client library's default
BOX_FILES = ("testing.xml", "training.xml")

Box = tuple[int, int, int, int]  # left, top, width, height


@dataclass(frozen=True)
class TestFrame:
    __test__ = False  # not a pytest class, despite the name

    name: str
    # (H, W, 3) uint8 BGR: 640x480, or the canvas size.
    pixels: np.ndarray
    jpeg: bytes
    boxes: tuple[Box, ...]


def read_boxes(faces_dir: Path) -> dict[str, list[Box]]:
    """Hand-drawn boxes per photo file name, from testing.xml and training.xml."""
    boxes: dict[str, list[Box]] = {}
    for name in BOX_FILES:
        path = faces_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: face boxes not found (set FER_DATA_DIR to the shared/ folder)")
        for image in ElementTree.parse(path).getroot().iter("image"):
            boxes.setdefault(image.get("file"), []).extend(
                (int(box.get("left")), int(box.get("top")), int(box.get("width")), int(box.get("height")))
                for box in image.iter("box"))
    return boxes


def scale_box(box: Box, scale_x: float, scale_y: float) -> Box:
    x, y, width, height = box
    return round(x * scale_x), round(y * scale_y), round(width * scale_x), round(height * scale_y)


def load_test_frames(faces_dir: Path) -> list[TestFrame]:
    """The annotated photos as 640x480 frames, in file name order; FileNotFoundError when missing."""
    frames = []
    for name, boxes in sorted(read_boxes(faces_dir).items()):
        photo = cv2.imread(str(faces_dir / name), cv2.IMREAD_COLOR)
        if photo is None:
            raise FileNotFoundError(f"{faces_dir / name}: listed in the box files but not a readable image")
        scale_x, scale_y = FRAME_SIZE[0] / photo.shape[1], FRAME_SIZE[1] / photo.shape[0]
        pixels = cv2.resize(photo, FRAME_SIZE, interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError(f"{name}: cannot JPEG-encode")
        frames.append(TestFrame(name, pixels, jpeg.tobytes(), tuple(scale_box(box, scale_x, scale_y) for box in boxes)))
    return frames


def canvas(photo: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, int, int]:
    """The photo at its own resolution in the middle of a width x height canvas whose surroundings are the
    photo mirrored (content everywhere, as in a camera's frame; a flat fill skews Haar's histogram
    equalisation), and the photo's (left, top) in it. ValueError when the photo is larger than the canvas."""
    width, height = size
    if photo.shape[1] > width or photo.shape[0] > height:
        raise ValueError(f"a {photo.shape[1]}x{photo.shape[0]} photo does not fit a {width}x{height} canvas")
    left, top = (width - photo.shape[1]) // 2, (height - photo.shape[0]) // 2
    pixels = cv2.copyMakeBorder(photo, top, height - photo.shape[0] - top, left, width - photo.shape[1] - left,
                                cv2.BORDER_REFLECT)
    return pixels, left, top


def load_canvas_frames(faces_dir: Path, size: tuple[int, int]) -> list[TestFrame]:
    """The annotated photos that fit a width x height canvas, each at its own resolution in one (`canvas`),
    boxes moved with it, in file name order; FileNotFoundError when missing."""
    frames = []
    for name, boxes in sorted(read_boxes(faces_dir).items()):
        photo = cv2.imread(str(faces_dir / name), cv2.IMREAD_COLOR)
        if photo is None:
            raise FileNotFoundError(f"{faces_dir / name}: listed in the box files but not a readable image")
        if photo.shape[1] > size[0] or photo.shape[0] > size[1]:
            continue
        pixels, left, top = canvas(photo, size)
        ok, jpeg = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError(f"{name}: cannot JPEG-encode")
        frames.append(TestFrame(name, pixels, jpeg.tobytes(), tuple((x + left, y + top, w, h) for x, y, w, h in boxes)))
    return frames
