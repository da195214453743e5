"""Face detectors (Haar, ResNet-10 SSD, YuNet) behind one interface, and which of them can run here.

Every detector keeps a stated minimum face size whatever the frame size. A detector's network finds faces
within a range of heights in the image it sees (its `FaceSizes`, measured). `plan_levels` picks the
resolutions to search from the frame size and `min_face_px` (pixels of the frame): the finest brings a
`min_face_px` face up to the network's smallest face (never above the frame's own resolution, and never
coarser than the detector's usual whole-frame copy, so small frames cost what they always did), then
coarser levels, each LEVEL_STEP times coarser, until one covers the largest face the frame can hold.
A level larger than TILE_SIDE is cut into overlapping tiles so memory stays bounded: YuNet on one 4096x4096
image peaks at 1.4 GB, on 1024x1024 at 0.14 GB. Detections of all levels and tiles are merged by
non-maximum suppression. The cost grows with the finest level's pixels: on a 1920x1080 frame at the default
40 px YuNet searches 960x540 plus 320x180 instead of 320x180 (`fer-bench detectors` measures it).
The finest level is capped at each detector's MAX_SEARCH_PIXELS, so no frame costs more than that budget
(plus its coarser levels and tile overlaps): on frames larger than the budget allows for min_face_px, the
smallest face found grows with the frame (by sqrt(finest level's pixels / budget)). Frames whose shorter
side is below a detector's smallest face hold no face it can find and are not searched. SSD also searches
the whole frame shrunk onto a padded square (`Padding`), for close-up faces too tall for its coarsest level.
A `stop` callable, checked before each network run (level or tile), lets the caller give up on a frame
nobody waits for: `Abandoned` is raised at the next run.

Detectors are not thread-safe: give each thread its own (load_detectors builds a fresh set).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from . import weights
from .errors import Abandoned
from .yunet import YuNetNetwork


class DetectorKind(enum.IntEnum):
    """Same numbers as the proto's Detector enum."""

    HAAR = 1
    SSD = 2
    YUNET = 3


# Most accurate first: the default is the first one available.
PREFERENCE = (DetectorKind.YUNET, DetectorKind.SSD, DetectorKind.HAAR)

# Height in pixels of the sent frame of the smallest face every detector keeps finding, whatever the frame
# size (a tight box, brows to chin, as the hand-drawn boxes of the test photos; detector boxes are taller).
# 40 px puts it at YuNet's smallest (20 px) on the same half-size copy YuNet has always searched 640x480
# frames at, so 640x480 frames cost what they did; the smallest faces of the test photos, 37 px, are found
# at any frame size (tests/test_server_detection.py).
DEFAULT_MIN_FACE_PX = 40

# Each coarser level is this many times coarser (1/16 of the pixels: all coarser levels together cost at
# most 7 % of the finest); it also bounds the tile overlap of fine levels to LEVEL_STEP smallest faces.
LEVEL_STEP = 4.0
# Levels wider or taller than this (pixels of the detector's input) are cut into tiles.
TILE_SIDE = 1024
# Boxes that come this close (px of the detector's input) to a tile edge inside the frame are dropped:
# the tiles overlap enough for that face to lie whole in a neighbouring tile.
TILE_EDGE = 4
# Boxes of different levels or tiles overlapping more than this are one face (YuNet's own NMS threshold).
MERGE_IOU = 0.3
# A box with at least this fraction of its area inside a higher-scored box of another level or tile is a part
# of that face (an eye, a mouth: a fine level sees a close-up face's parts at the sizes of whole faces), not a
# second face. A real face is never mostly inside another face's box.
PART_OF_FACE = 0.7

# Boxes this much inside (fraction of their area) a box at least PART_HEIGHT_RATIO times taller are parts of
# that face, whatever the scores (Search.drop_parts detectors): beside a close-up face filling 70-90 % of
# the frame's height, SSD's finer level reports an eye or a cheek as a face, scored up to 0.9 and above the
# whole face's own box, lying 60-100 % inside the face's box (a size sweep of the shared photos' faces from
# 640x480 to 4032x3024). Of the shared photos' faces at 1-4x their size, none overlaps a box 1.5 times taller.
PART_INSIDE = 0.5
PART_HEIGHT_RATIO = 2.0

# A level other than the coarsest keeps boxes at most this many times its largest face (px of its input; a
# detector's box is taller than a tight hand-drawn box): taller faces lie whole in a coarser level, while this
# level's network sees their parts (an eye, a cheek) at the sizes of whole faces and reports them as faces.
LEVEL_FACE_SLACK = 2.0

# OpenCV's cascade and DNN module keep buffers sized for the largest image they have searched (the cascade
# about 0.2 GB after a 1448x1448 image, SSD about 0.1 GB after 1024x1024 tiles); after a frame whose search
# saw an image larger than this (px: 1280x720) Haar and SSD load their model again (40 ms), which lets them go.
RELEASE_ABOVE_PIXELS = 1280 * 720

# Called before each network run; True: nobody waits for this frame any more (raise Abandoned).
Stop = Callable[[], bool]

# YuNet's landmark order: the person's right eye (left in the image of a frontal face), left eye, nose tip,
# right mouth corner, left mouth corner.
LANDMARK_NAMES = ("right_eye", "left_eye", "nose_tip", "right_mouth_corner", "left_mouth_corner")


@dataclass(frozen=True)
class Detection:
    """One face: a box in pixels of the frame, clamped to it, with the detector's score (0-1).

    landmarks: five (x, y) points in pixels of the frame, in LANDMARK_NAMES order, not clamped (a point may
    lie just outside the frame); empty for detectors without landmarks (Haar, SSD).
    """

    x: int
    y: int
    width: int
    height: int
    score: float
    landmarks: tuple[tuple[float, float], ...] = ()


class FaceDetector(Protocol):
    """What the frame path needs of a detector."""

    # Used when a request leaves min_detection_score at 0.
    default_threshold: float

    def detect(self, frame: np.ndarray, threshold: float, min_face_px: int = DEFAULT_MIN_FACE_PX,
               stop: Stop | None = None) -> list[Detection]:
        """Faces in an (H, W, 3) uint8 BGR frame scored at least threshold, down to min_face_px tall, any order.

        Abandoned when stop() turns true before one of the network runs.
        """


@dataclass(frozen=True)
class FaceSizes:
    """Face heights, in pixels of the image a detector's network sees, that it finds reliably.

    smallest: below it recall falls; largest: above it recall falls (math.inf: the detector searches every
    larger size itself). Both are read off `python -m ferstream.bench.detectors --face-sizes` (some minutes):
    the 43 hand-boxed faces of the shared photos scaled to each height (hand-drawn box heights).
    """

    smallest: float
    largest: float


@dataclass(frozen=True)
class Level:
    """One resolution to search: pixels of the detector's input per pixel of the frame, per axis, and the
    tallest face (px of this input) that must lie whole in one tile (taller ones a coarser level finds)."""

    scale_x: float
    scale_y: float
    largest_face: float = math.inf


def plan_levels(width: int, height: int, whole: Level, sizes: FaceSizes, min_face_px: int,
                max_pixels: float = math.inf) -> list[Level]:
    """The levels, finest first, a width x height frame is searched at to find faces min_face_px tall and up.

    `whole` is the detector's usual whole-frame level, the coarsest ever searched. The finest level brings
    min_face_px up to sizes.smallest, at most at the frame's own resolution (upsampling adds cost, not
    detail: faces below sizes.smallest frame pixels are not found) and at most max_pixels pixels (the
    detector's cost budget: larger frames then find faces from sizes.smallest / scale frame pixels up).
    Coarser levels follow, LEVEL_STEP apart (LEVEL_STEP <= largest/smallest, so their face-size ranges
    touch), until one covers faces as tall as the frame's shorter side, or the whole level is reached.
    No levels when the frame's shorter side is below sizes.smallest: no face the detector finds fits in it
    (networks may also fail on such slivers: SSD on a 1-pixel-wide image). ValueError if min_face_px < 1.
    """
    if min_face_px < 1:
        raise ValueError(f"min_face_px must be at least 1, got {min_face_px}")
    biggest_face = min(width, height)
    if biggest_face < sizes.smallest:
        return []
    levels = []
    scale = min(1.0, sizes.smallest / min_face_px, math.sqrt(max_pixels / (width * height)))
    while scale > whole.scale_y:
        if sizes.largest / scale >= biggest_face:
            return levels + [Level(scale, scale, sizes.largest)]
        levels.append(Level(scale, scale, sizes.smallest * LEVEL_STEP))
        scale /= LEVEL_STEP
    return levels + [Level(whole.scale_x, whole.scale_y, sizes.largest)]


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, size) of the fewest equal tiles at most `tile` px covering 0..length, neighbours sharing at
    least `overlap` px (less one for rounding); one span when length fits. Needs overlap < tile."""
    if length <= tile:
        return [(0, length)]
    count = math.ceil((length - overlap) / (tile - overlap))
    size = math.ceil((length + (count - 1) * overlap) / count)
    return [(round(index * (length - size) / (count - 1)), size) for index in range(count)]


# Rows of detections in one image: x0, y0, x1, y1, score, then landmark x, y pairs (none for Haar and SSD).
Rows = np.ndarray
RunNetwork = Callable[[np.ndarray, float], Rows]


def rescale(image: np.ndarray, level: Level, interpolation: int) -> np.ndarray:
    """image resized by the level's scales with an OpenCV interpolation flag; the image itself at 1x1."""
    if level.scale_x == 1.0 and level.scale_y == 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * level.scale_x)), max(1, round(height * level.scale_y)))
    return cv2.resize(image, size, interpolation=interpolation)


def map_rows(rows: Rows, offset_x: float, offset_y: float, scale_x: float, scale_y: float) -> Rows:
    """Rows moved by the offset (px of the scaled image), then divided by the scales: frame coordinates."""
    mapped = rows.astype(np.float64, copy=True)
    mapped[:, [0, 2]] = (mapped[:, [0, 2]] + offset_x) / scale_x
    mapped[:, [1, 3]] = (mapped[:, [1, 3]] + offset_y) / scale_y
    mapped[:, 5::2] = (mapped[:, 5::2] + offset_x) / scale_x
    mapped[:, 6::2] = (mapped[:, 6::2] + offset_y) / scale_y
    return mapped


def away_from_inner_edges(rows: Rows, left: int, top: int, tile_w: int, tile_h: int, width: int, height: int) -> Rows:
    """Rows of one tile (tile coordinates) not touching a tile edge that lies inside the scaled image."""
    keep = np.ones(len(rows), dtype=bool)
    if left > 0:
        keep &= rows[:, 0] > TILE_EDGE
    if top > 0:
        keep &= rows[:, 1] > TILE_EDGE
    if left + tile_w < width:
        keep &= rows[:, 2] < tile_w - TILE_EDGE
    if top + tile_h < height:
        keep &= rows[:, 3] < tile_h - TILE_EDGE
    return rows[keep]


@dataclass(frozen=True)
class Padding:
    """A view of the whole frame shrunk, its aspect ratio kept, to `fill` of a `side` x `side` square whose
    rest is `colour` (BGR): a face filling the frame is `fill` of that view at most, within the network's
    face sizes. Boxes with less than `min_inside` of their area on the frame's own pixels are dropped."""

    side: int
    fill: float
    colour: tuple[float, float, float]
    min_inside: float
    run: RunNetwork


@dataclass(frozen=True)
class Search:
    """How a detector searches a level: its network on one image at that image's resolution (rows in its
    pixels), the resize interpolation, whether large levels are cut into tiles, and whether finer levels
    drop boxes taller than LEVEL_FACE_SLACK times their largest face (SSD reports a close-up face's parts as
    faces there; YuNet does not, and its finer level's box of a large face carries the better landmarks:
    dropping it halved the roll its landmarks follow, tests/test_align.py)."""

    run: RunNetwork
    interpolation: int
    tiled: bool
    drop_parts: bool = True
    # Also search the frame on a padded view (SSD: faces taller than its coarsest level finds).
    padding: Padding | None = None


def check(stop: Stop | None) -> None:
    """Abandoned when stop says nobody waits for the frame any more."""
    if stop is not None and stop():
        raise Abandoned("the caller stopped waiting")


def search_level(frame: np.ndarray, level: Level, search: Search, threshold: float,
                 stop: Stop | None = None) -> list[Rows]:
    """Rows in frame coordinates from one level, one array per network run (tiles when the search is tiled
    and the level is larger than TILE_SIDE); stop is checked before each run (Abandoned)."""
    run = search.run
    check(stop)
    image = rescale(frame, level, search.interpolation)
    height, width = image.shape[:2]
    if not search.tiled or max(height, width) <= TILE_SIDE:
        return [map_rows(run(image, threshold), 0, 0, level.scale_x, level.scale_y)]
    overlap = min(TILE_SIDE // 2, math.ceil(level.largest_face) + 2 * TILE_EDGE)
    found = []
    for top, tile_h in tile_spans(height, TILE_SIDE, overlap):
        for left, tile_w in tile_spans(width, TILE_SIDE, overlap):
            check(stop)
            tile = image[top:top + tile_h, left:left + tile_w]
            rows = away_from_inner_edges(run(tile, threshold), left, top, tile_w, tile_h, width, height)
            found.append(map_rows(rows, left, top, level.scale_x, level.scale_y))
    return found


def search_padded(frame: np.ndarray, padding: Padding, search: Search, threshold: float,
                  stop: Stop | None = None) -> Rows:
    """Rows in frame coordinates from one network run on the frame's padded view (Padding); stop is checked
    before the run (Abandoned)."""
    check(stop)
    height, width = frame.shape[:2]
    scale = padding.fill * padding.side / max(width, height)
    size_x, size_y = max(1, round(width * scale)), max(1, round(height * scale))
    left, top = (padding.side - size_x) // 2, (padding.side - size_y) // 2
    view = cv2.copyMakeBorder(cv2.resize(frame, (size_x, size_y), interpolation=search.interpolation),
                              top, padding.side - size_y - top, left, padding.side - size_x - left,
                              cv2.BORDER_CONSTANT, value=padding.colour)
    rows = map_rows(padding.run(view, threshold), -left, -top, size_x / width, size_y / height)
    return rows[inside_fraction(rows, width, height) >= padding.min_inside]


def merge(rows: Rows, drop_parts: bool = False) -> Rows:
    """One row per face: non-maximum suppression at MERGE_IOU, highest score kept, then boxes lying mostly
    (PART_OF_FACE) inside a kept higher-scored box dropped. drop_parts: also drop, whatever their scores,
    boxes with PART_INSIDE of their area inside a box PART_HEIGHT_RATIO times taller (a close-up face's
    parts, see PART_INSIDE)."""
    if len(rows) < 2:
        return rows
    boxes = [(float(x0), float(y0), float(x1 - x0), float(y1 - y0)) for x0, y0, x1, y1 in rows[:, :4]]
    kept = cv2.dnn.NMSBoxes(boxes, rows[:, 4].astype(float).tolist(), 0.0, MERGE_IOU)
    rows = rows[np.asarray(kept, dtype=int).reshape(-1)]  # highest score first
    if drop_parts:
        rows = rows[[not is_part(row, rows) for row in rows[:, :4].tolist()]]
    faces: list[int] = []
    for index, (x0, y0, x1, y1) in enumerate(rows[:, :4].tolist()):
        area = max(x1 - x0, 1e-9) * max(y1 - y0, 1e-9)
        if all(overlap_area((x0, y0, x1, y1), rows[face, :4].tolist()) < PART_OF_FACE * area for face in faces):
            faces.append(index)
    return rows[faces]


def is_part(box: Sequence[float], rows: Rows) -> bool:
    """True when the (x0, y0, x1, y1) box has at least PART_INSIDE of its area inside one of rows' boxes
    that is at least PART_HEIGHT_RATIO times taller: a part of that face, not a face beside it."""
    x0, y0, x1, y1 = box
    area = max(x1 - x0, 1e-9) * max(y1 - y0, 1e-9)
    taller = rows[rows[:, 3] - rows[:, 1] >= PART_HEIGHT_RATIO * (y1 - y0)]
    return any(overlap_area(box, other) >= PART_INSIDE * area for other in taller[:, :4].tolist())


def overlap_area(box: Sequence[float], other: Sequence[float]) -> float:
    """Area (px²) shared by two (x0, y0, x1, y1) boxes."""
    width = min(box[2], other[2]) - max(box[0], other[0])
    height = min(box[3], other[3]) - max(box[1], other[1])
    return max(width, 0.0) * max(height, 0.0)


def inside_fraction(rows: Rows, width: int, height: int) -> np.ndarray:
    """(N,) fraction of each row's box area inside a width x height image, before any clamping (0 for
    empty boxes)."""
    x0, y0, x1, y1 = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    inside = (np.clip(np.minimum(x1, width) - np.maximum(x0, 0), 0, None)
              * np.clip(np.minimum(y1, height) - np.maximum(y0, 0), 0, None))
    area = (x1 - x0) * (y1 - y0)
    return np.divide(inside, area, out=np.zeros(len(rows)), where=area > 0)


def to_detection(row: Sequence[float], width: int, height: int) -> Detection | None:
    """A Detection clamped to a width x height frame from one row as plain floats (rows.tolist(): cheaper
    than numpy scalars, a row at a time); None for degenerate or non-finite rows.

    A corrupted frame can make a network emit inf or NaN coordinates (and so a sum that is not finite).
    """
    if not math.isfinite(sum(row)):
        return None
    x0, y0, x1, y1, score = row[:5]
    left, top = max(0, round(x0)), max(0, round(y0))
    right, bottom = min(width, round(x1)), min(height, round(y1))
    if right - left < 2 or bottom - top < 2:
        return None
    return Detection(left, top, right - left, bottom - top, score, tuple(zip(row[5::2], row[6::2])))


def detect_in_levels(frame: np.ndarray, levels: list[Level], search: Search, threshold: float,
                     stop: Stop | None = None) -> list[Detection]:
    """Every level searched, clamped to the frame; the runs' rows merged when there were several (a single
    run's rows are the network's own, already suppressed). No levels: no faces. Abandoned when stop()
    turns true before a network run."""
    height, width = frame.shape[:2]
    runs = []
    for index, level in enumerate(levels):
        found = search_level(frame, level, search, threshold, stop)
        if search.drop_parts and index < len(levels) - 1:
            tallest = LEVEL_FACE_SLACK * level.largest_face / level.scale_y
            found = [rows[rows[:, 3] - rows[:, 1] <= tallest] for rows in found]
        runs.extend(found)
    if levels and search.padding is not None:
        runs.append(search_padded(frame, search.padding, search, threshold, stop))
    if not runs:
        return []
    rows = merge(np.concatenate(runs), search.drop_parts) if len(runs) > 1 else runs[0]
    found = (to_detection(row, width, height) for row in rows.tolist())
    return [box for box in found if box is not None]


def fit_level(width: int, height: int, side: int) -> Level:
    """The uniform level whose longer side is at most `side` px (never above 1)."""
    scale = min(1.0, side / max(width, height))
    return Level(scale, scale)


class HaarDetector:
    """OpenCV's frontal-face cascade on a grey copy with a contrast-limited histogram equalisation, its
    longer side WORK_SIDE px unless min_face_px needs a finer one.

    A cascade has no calibrated confidence, so every face it finds scores 1.0. Its own image pyramid covers
    every face size from its window up, so one level is searched, never tiled. The equalisation is global
    (one CLAHE tile) with each histogram bin clipped at CLIP_LIMIT times the mean bin: a plain
    equalizeHist is dominated by whatever fills most of the frame, and a group photo on a plain 1920x1080
    canvas lost all seven of its faces to it.
    """

    default_threshold = 0.0
    WORK_SIDE = 480
    # detectMultiScale's minSize; the cascade's own window is 24 px.
    MIN_SIZE = 20
    # The hand-boxed faces of the shared photos, each photo alone and on grey and white 1920x1080 canvases
    # (129 faces, 37-109 px), at 0.7x: equalizeHist found 46 (50 at 0.85x: the scale was not the cause),
    # clipped at 4x the mean bin 104 (109 at 0.85x, for 1.5x the cost; local 8x8 CLAHE 102, and it lost
    # close-up faces of 640x480 frames).
    CLIP_LIMIT = 4.0
    # Measured (FaceSizes): 34 of the 37 faces it ever finds at 28 px, 31 at 24.
    SIZES = FaceSizes(smallest=28.0, largest=math.inf)
    # The finest level's budget: a 1920x1080 frame is searched at 40 px in full (1344x756); a 4000x3000 one
    # as about 1448x1448 instead of 2800x2100 and finds faces from about 67 px up (28 px / 0.42).
    MAX_SEARCH_PIXELS = 2 ** 21

    def __init__(self, cascade_path: Path) -> None:
        self.cascade_path = cascade_path
        self.cascade = self.load()
        self.equalise = cv2.createCLAHE(self.CLIP_LIMIT, (1, 1))
        self.searched_large = False

    def load(self) -> cv2.CascadeClassifier:
        """The cascade read from cascade_path; ValueError when it cannot be read."""
        cascade = cv2.CascadeClassifier(str(self.cascade_path))
        if cascade.empty():
            raise ValueError(f"{self.cascade_path}: not a readable cascade")
        return cascade

    def run(self, image: np.ndarray, threshold: float) -> Rows:
        """Faces in one grey (or BGR) image at its own resolution, as rows (x0, y0, x1, y1, 1.0)."""
        self.searched_large |= image.shape[0] * image.shape[1] > RELEASE_ABOVE_PIXELS
        grey = self.equalise.apply(image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        boxes = self.cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                              minSize=(self.MIN_SIZE, self.MIN_SIZE))
        rows = [(x, y, x + w, y + h, 1.0) for x, y, w, h in boxes]
        return np.asarray(rows, dtype=np.float64).reshape(-1, 5)

    def detect(self, frame: np.ndarray, threshold: float, min_face_px: int = DEFAULT_MIN_FACE_PX,
               stop: Stop | None = None) -> list[Detection]:
        height, width = frame.shape[:2]
        levels = plan_levels(width, height, fit_level(width, height, self.WORK_SIDE), self.SIZES, min_face_px,
                             self.MAX_SEARCH_PIXELS)
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        try:
            return detect_in_levels(grey, levels, Search(self.run, cv2.INTER_AREA, tiled=False), threshold, stop)
        finally:
            if self.searched_large:  # RELEASE_ABOVE_PIXELS
                self.cascade, self.searched_large = self.load(), False


class SsdDetector:
    """OpenCV's ResNet-10 SSD (Caffe or TensorFlow uint8 weights) on a 300x300 view of the whole frame, plus
    finer levels at the frame's aspect ratio when min_face_px needs them (the network is fully convolutional:
    its prior boxes are 30-315 px of its input whatever the input size).

    Boxes mostly outside the image the network saw are dropped: beside a face taller than about a third of
    that image the network emits further boxes, scored up to 1.0, that lie wholly or largely outside it (a
    close-up portrait gave 1-3 such phantom faces once clamped into the frame's edge). Of the shared photos'
    boxes, real faces lie 80-100 % inside; phantoms 0-54 %.

    The network loses faces taller than about three quarters of its input (SIZES.largest), as a close-up face
    is even in the 300x300 view: of the shared photos' faces each filling 85 % of a frame's height, it found
    7 of 43 in 480x640 frames, 31 in square crops, 40 in 640x480 frames. So the whole frame is also searched
    shrunk, its aspect ratio kept, onto a padded square (Padding: PADDED_SIDE, PADDED_FILL, the border the
    network's mean colour, so zero after the mean is subtracted), where such a face is small enough; its
    boxes join the levels' in the merge. With it all 43 are found in each (the TensorFlow weights: 42 or 43).
    """

    # 0.5, the usual cut, misses small faces in group photos; 0.4 finds them with few false faces.
    default_threshold = 0.4
    INPUT = (300, 300)
    MEAN = (104.0, 177.0, 123.0)
    # Measured (FaceSizes): 41 of 43 faces at 24 px, all from 32 to 192, 39 at 224, 17 at 256.
    SIZES = FaceSizes(smallest=24.0, largest=224.0)
    # Boxes with less of their area inside the network's image are phantoms (see above).
    MIN_INSIDE = 2 / 3
    # The finest level's budget: a 1920x1080 frame is searched at 40 px in full (1152x648); a 4000x3000 one
    # as about 1448x1448 in tiles instead of 2400x1800 (SSD costs about 10x YuNet per pixel) and finds
    # faces from about 57 px up (24 px / 0.42).
    MAX_SEARCH_PIXELS = 2 ** 21
    # The padded view (see the class docstring): the frame's longer side is 2/3 of a 160 px square, so a face
    # filling the frame is at most about 107 px there, well within SIZES. Each hand-boxed face of the shared
    # photos as a frame it fills 80-95 % of the height of (640x480, 480x640, 1280x720, 320x240 and square
    # crops): all 43 found at every fill and size with 160 and 200 px squares, 40-42 in some with 96-120 px.
    # Its run costs about a third of the 300x300 view's (+14 ms CPU on 37 for a 640x480 frame, on a busy
    # 2-core machine).
    PADDED_SIDE = 160
    PADDED_FILL = 2 / 3

    def __init__(self, load: Callable[[], cv2.dnn.Net]) -> None:
        """load: reads the network (again after large searches: RELEASE_ABOVE_PIXELS)."""
        self.load = load
        self.network = load()
        self.padded_network = load()
        self.searched_large = False

    def run(self, image: np.ndarray, threshold: float) -> Rows:
        """Faces in one BGR image at its own resolution, as rows (x0, y0, x1, y1, score), boxes mostly
        outside the image dropped."""
        height, width = image.shape[:2]
        self.searched_large |= height * width > RELEASE_ABOVE_PIXELS
        return self.forward(self.network, image, threshold)

    def run_padded(self, image: np.ndarray, threshold: float) -> Rows:
        """run for the padded view (PADDED_SIDE square), by a network of its own: OpenCV sets a network up
        again whenever its input size changes, which cost more than the padded view's own run."""
        return self.forward(self.padded_network, image, threshold)

    def forward(self, network: cv2.dnn.Net, image: np.ndarray, threshold: float) -> Rows:
        """Rows of network on one BGR image, in its pixels, boxes with less than MIN_INSIDE of their area
        inside it dropped."""
        height, width = image.shape[:2]
        network.setInput(cv2.dnn.blobFromImage(image, 1.0, (width, height), self.MEAN, swapRB=False, crop=False))
        rows = network.forward().reshape(-1, 7)
        rows = rows[rows[:, 2] >= threshold]
        rows = np.column_stack([rows[:, 3] * width, rows[:, 4] * height, rows[:, 5] * width, rows[:, 6] * height,
                                rows[:, 2]]).astype(np.float64)
        return rows[inside_fraction(rows, width, height) >= self.MIN_INSIDE]

    def detect(self, frame: np.ndarray, threshold: float, min_face_px: int = DEFAULT_MIN_FACE_PX,
               stop: Stop | None = None) -> list[Detection]:
        height, width = frame.shape[:2]
        whole = Level(self.INPUT[0] / width, self.INPUT[1] / height)
        levels = plan_levels(width, height, whole, self.SIZES, min_face_px, self.MAX_SEARCH_PIXELS)
        # Bilinear, as blobFromImage resized for the 300x300 view before levels existed.
        try:
            search = Search(self.run, cv2.INTER_LINEAR, tiled=True,
                            padding=Padding(self.PADDED_SIDE, self.PADDED_FILL, self.MEAN, self.MIN_INSIDE,
                                            self.run_padded))
            return detect_in_levels(frame, levels, search, threshold, stop)
        finally:
            if self.searched_large:  # RELEASE_ABOVE_PIXELS
                self.network, self.searched_large = self.load(), False


class YuNetDetector:
    """YuNet, with five landmarks per face, on a copy whose longer side is at most WORK_SIDE px, plus finer
    levels when min_face_px needs them. Its network runs in ONNX Runtime with cv2.FaceDetectorYN's decoding
    (yunet.py: the same rows, in less time), on as many threads as OpenCV is set to use.

    At 320 px YuNet finds every boxed face of the 640x480 test frames, several times faster than on the
    full frame (`fer-bench detectors` measures both speed and recall; docs/performance.md).
    """

    default_threshold = 0.6
    WORK_SIDE = 320
    # Measured (FaceSizes): 41 of 43 faces at 20 px (36 at 18, 32 at 16), all from 24 to 400, 40 at 512.
    SIZES = FaceSizes(smallest=20.0, largest=400.0)
    # The finest level's budget: the largest frame accepted by default (settings.MAX_PIXELS, 16 MP) in
    # full; at about a tenth of SSD's cost per pixel (1.5 s against 23 s on a 4000x3000 photo) YuNet needs
    # no tighter bound.
    MAX_SEARCH_PIXELS = 4096 * 4096

    def __init__(self, model_path: Path) -> None:
        self.network = YuNetNetwork(model_path, cv2.getNumThreads(), MERGE_IOU)

    def run(self, image: np.ndarray, threshold: float) -> Rows:
        """Faces in one BGR image at its own resolution, as rows (x0, y0, x1, y1, score, 5 landmark x, y pairs)."""
        return self.network.run(image, threshold)

    def detect(self, frame: np.ndarray, threshold: float, min_face_px: int = DEFAULT_MIN_FACE_PX,
               stop: Stop | None = None) -> list[Detection]:
        height, width = frame.shape[:2]
        levels = plan_levels(width, height, fit_level(width, height, self.WORK_SIDE), self.SIZES, min_face_px,
                             self.MAX_SEARCH_PIXELS)
        return detect_in_levels(frame, levels, Search(self.run, cv2.INTER_AREA, tiled=True, drop_parts=False),
                                threshold, stop)


@dataclass(frozen=True)
class DetectorStatus:
    """A detector kind, the loaded detector (None when unavailable) and where its weights came from or why
    it is unavailable."""

    kind: DetectorKind
    detector: FaceDetector | None
    detail: str

    @property
    def available(self) -> bool:
        return self.detector is not None


def load_haar() -> DetectorStatus:
    """The cascade that ships with OpenCV."""
    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    try:
        return DetectorStatus(DetectorKind.HAAR, HaarDetector(path), str(path))
    except ValueError as error:
        return DetectorStatus(DetectorKind.HAAR, None, str(error))


def load_ssd(folders: list[Path]) -> DetectorStatus:
    """The Caffe weights if present and intact, else the TensorFlow uint8 twin."""
    caffe = [weights.locate(weights.SSD_CAFFE_MODEL, folders), weights.locate(weights.SSD_CAFFE_CONFIG, folders)]
    if all(found.ok for found in caffe):
        detector = SsdDetector(lambda: cv2.dnn.readNetFromCaffe(str(caffe[1].path), str(caffe[0].path)))
        return DetectorStatus(DetectorKind.SSD, detector, f"Caffe {caffe[0].path}")
    tensorflow = [weights.locate(weights.SSD_TF_GRAPH, folders), weights.locate(weights.SSD_TF_CONFIG, folders)]
    if all(found.ok for found in tensorflow):
        detector = SsdDetector(lambda: cv2.dnn.readNetFromTensorflow(str(tensorflow[0].path), str(tensorflow[1].path)))
        return DetectorStatus(DetectorKind.SSD, detector, f"TensorFlow uint8 {tensorflow[0].path}")
    problems = "; ".join(found.describe() for found in caffe + tensorflow if not found.ok)
    return DetectorStatus(DetectorKind.SSD, None, f"no intact weights ({problems}); run `fer-models download`")


def load_yunet(folders: list[Path]) -> DetectorStatus:
    """YuNet from the first folder holding an intact copy."""
    found = weights.locate(weights.YUNET, folders)
    if not found.ok:
        return DetectorStatus(DetectorKind.YUNET, None, f"{found.describe()}; run `fer-models download`")
    return DetectorStatus(DetectorKind.YUNET, YuNetDetector(found.path), str(found.path))


def load_detectors(models_dir: Path) -> dict[DetectorKind, DetectorStatus]:
    """Every detector, loaded when its weights are found (never downloaded)."""
    folders = weights.search_folders(models_dir)
    statuses = [load_haar(), load_ssd(folders), load_yunet(folders)]
    return {status.kind: status for status in statuses}


def default_detector(statuses: dict[DetectorKind, DetectorStatus]) -> DetectorKind:
    """The most accurate available kind (PREFERENCE order); RuntimeError when none is available."""
    for kind in PREFERENCE:
        if statuses[kind].available:
            return kind
    raise RuntimeError("no face detector is available")
