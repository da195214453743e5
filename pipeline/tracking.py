"""Face tracks within a stream: which face of this frame is which face of the frames before, and each
track's emotion probabilities smoothed over frame time.

Matching. Every frame, the faces found are assigned to the live tracks by the Hungarian method
(scipy.optimize.linear_sum_assignment) on the cost (1 - IoU) + centre shift, where the centre shift is the
distance between the box centres in face sizes (the mean of the two boxes' sqrt(width * height)). Only
pairs that overlap (IoU >= MIN_IOU) or lie close (centre shift <= MAX_CENTRE_SHIFT) may be assigned; a face
left without a track starts a new one. A track whose face is not found keeps its last box and survives
MAX_MISSED_FRAMES frames that way, so a detector missing a face for a frame or two does not renumber it.

Scene cuts. A cut (an edited video, a camera switch) ends every track, so that the smoothed emotion of the
person before it never fades into the person after it, nor does their number carry over, however close their
boxes lie. A cut is a change of the whole picture: the mean absolute difference between the frame's grey
thumbnail and the previous one's (SCENE_SIZE, each less its mean brightness) above SCENE_CUT grey levels.
The picture, not the boxes, decides: boxes of different people at the same place would match, and a face that
moved fast would not. The frame path makes the thumbnail while it has the pixels (FaceResult.scene).

Smoothing. Each track keeps an exponential moving average of its face's probabilities in frame time, with
time constant tau (milliseconds):

    s <- s + (1 - exp(-dt / tau)) * (p - s)        dt: frame time since the track's previous face

This is the exact solution of ds/dt = (p - s) / tau over dt with p, the frame's probabilities, taken to
hold since the track's previous frame, so it does not depend on the frame rate or on frames skipped:
after a step change in p, s has covered 1 - exp(-t / tau) of it at time t (63.2 % at t = tau) however
many frames came in between. A new track starts at its first probabilities; tau = 0 turns smoothing off.

Plain numpy, SciPy and OpenCV: no gRPC here (the server, fer-annotate and the tests use it alike).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

if TYPE_CHECKING:  # framepath loads the model runtime; tracking needs only the type
    from .framepath import FaceResult

# (x, y, width, height) in pixels of the frame.
Box = tuple[int, int, int, int]

# A pair overlapping at least this much may be assigned: SORT's threshold (Bewley et al. 2016, "Simple
# Online and Realtime Tracking", iou_threshold = 0.3).
MIN_IOU = 0.3
# ... or whose centres lie at most this many face sizes apart: a face that moved by up to its own width
# since its track's last frame (IoU 0 for equal boxes), as a turning head does between the answered frames
# of a slow live stream.
MAX_CENTRE_SHIFT = 1.0
# Frames a track survives without its face. SORT drops a track after 1 missed frame, ByteTrack keeps lost
# tracks for 30 (its track_buffer); 5 bridges a detector's short dropouts (motion blur, a head turned for
# 0.2 s at 25 fps) while a face that left is forgotten before another is likely to appear in its place.
MAX_MISSED_FRAMES = 5
# The server's default time constant in milliseconds (fer-server --track-smoothing-ms): below the shortest
# span of an ordinary expression (macro-expressions last 0.5-4 s; Ekman 2003, "Emotions Revealed"), which
# track_scores thus follow to 1 - exp(-500 / 300) = 81 % within it, while a one-frame flicker at 25-30 fps
# (40-33 ms) moves them only 1 - exp(-40 / 300) = 12.5 % to 10 % of the way.
DEFAULT_SMOOTHING_MS = 300.0
# The scene thumbnail: (width, height) in pixels, whatever the frame's size. Coarse on purpose, so that
# motion within a scene changes it little: measured on the 14 shared test photos at 640x480, any two
# different photos differ by at least 26.2 grey levels (5th percentile 29.1), while one photo differs from
# itself shifted by 24 + 12 px (a pan of 720 px/s at 30 fps) by at most 18.7, zoomed in 10 % by 17.5,
# brightened (x1.2 + 10) by 8.1 and JPEG-compressed at quality 50 by 0.6.
SCENE_SIZE = (8, 6)
# A frame differing from the previous one by more than this (mean absolute grey levels, 0-255) is a cut:
# between the 18.7 of a fast pan and the 26.2 of the closest pair of different photos above.
SCENE_CUT = 22.0
# The thumbnail samples about this many pixels along the frame's shorter side before averaging them down,
# at the same small cost for any frame size (docs/performance.md#design-measurements).
SCENE_SAMPLES = 48
# Cost of a pair that may not be assigned: far above any allowed pair's (about 2 at most).
_FORBIDDEN = 1e6


@dataclass(frozen=True)
class TrackedFace:
    """One face's place on its track.

    track_id: 1, 2, 3... in order of first sight within the tracker. smoothed: (C,) float64 probabilities
    in the order of the probabilities given to `update`, summing to 1 (up to rounding); None when
    smoothing is off.
    """

    track_id: int
    smoothed: np.ndarray | None


@dataclass
class Track:
    """A face followed over frames: its last box, smoothed probabilities, and frame time of its last face."""

    track_id: int
    box: Box
    # (C,) float64, the exponential moving average of the face's probabilities.
    smoothed: np.ndarray
    # Frame time of the last face assigned, in milliseconds.
    time_ms: float
    # Frames since that face (0: found on the latest frame).
    missed: int = 0

    def follow(self, box: Box, probabilities: np.ndarray, time_ms: float, smoothing_ms: float) -> None:
        """Moves the track to this frame's face: box, (C,) probabilities, frame time in ms, tau in ms."""
        if smoothing_ms == 0 or probabilities.shape != self.smoothed.shape:
            self.smoothed = probabilities
        else:
            weight = smoothing_weight(time_ms - self.time_ms, smoothing_ms)
            self.smoothed = self.smoothed + weight * (probabilities - self.smoothed)
        self.box, self.time_ms, self.missed = box, time_ms, 0


def scene_thumbnail(frame: np.ndarray) -> np.ndarray:
    """(6, 8) float32 grey thumbnail of a BGR uint8 (height, width, 3) frame, less its mean brightness: what
    scene_change compares. Samples every k-th pixel first (SCENE_SAMPLES), so its cost does not grow with the
    frame."""
    step = max(1, min(frame.shape[:2]) // SCENE_SAMPLES)
    small = cv2.resize(frame[::step, ::step], SCENE_SIZE, interpolation=cv2.INTER_AREA)
    grey = (cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small).astype(np.float32)
    return grey - grey.mean()


def scene_change(previous: np.ndarray, current: np.ndarray) -> float:
    """Mean absolute difference, in grey levels (0-255), between two scene_thumbnail results; above
    SCENE_CUT the frames are taken for a cut."""
    return float(np.abs(current - previous).mean())


def smoothing_weight(elapsed_ms: float, smoothing_ms: float) -> float:
    """The share of the gap to the new probabilities that an average with time constant smoothing_ms closes
    in elapsed_ms of frame time: 1 - exp(-elapsed / tau). Time running backwards counts as no time (0); a
    time constant of 0 closes the whole gap (1)."""
    if smoothing_ms <= 0:
        return 1.0
    return 1.0 - math.exp(-max(0.0, elapsed_ms) / smoothing_ms)


def check_smoothing_ms(value: float) -> float:
    """value when it is a usable time constant (finite, >= 0 milliseconds); ValueError saying why otherwise."""
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"the track smoothing time constant must be a finite number of milliseconds >= 0, "
                         f"got {value}")
    return value


def iou_matrix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(N, M) intersection over union of (N, 4) and (M, 4) boxes given as x, y, width, height; 0 for
    boxes without area."""
    x1 = np.maximum(first[:, None, 0], second[None, :, 0])
    y1 = np.maximum(first[:, None, 1], second[None, :, 1])
    x2 = np.minimum(first[:, None, 0] + first[:, None, 2], second[None, :, 0] + second[None, :, 2])
    y2 = np.minimum(first[:, None, 1] + first[:, None, 3], second[None, :, 1] + second[None, :, 3])
    intersection = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = (first[:, None, 2] * first[:, None, 3]) + (second[None, :, 2] * second[None, :, 3]) - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def centre_shift_matrix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(N, M) distance between the centres of (N, 4) and (M, 4) x, y, width, height boxes, in face sizes
    (the mean of the two boxes' sqrt(width * height)); inf for two boxes without area."""
    centres_first = first[:, :2] + first[:, 2:] / 2
    centres_second = second[:, :2] + second[:, 2:] / 2
    distance = np.linalg.norm(centres_first[:, None, :] - centres_second[None, :, :], axis=2)
    size = (np.sqrt(first[:, None, 2] * first[:, None, 3]) + np.sqrt(second[None, :, 2] * second[None, :, 3])) / 2
    return np.divide(distance, size, out=np.full_like(distance, np.inf), where=size > 0)


def match(track_boxes: Sequence[Box], boxes: Sequence[Box]) -> list[tuple[int, int]]:
    """(track index, box index) pairs of the cheapest assignment of boxes to track boxes (module docstring):
    each index at most once, only pairs with IoU >= MIN_IOU or centre shift <= MAX_CENTRE_SHIFT."""
    if not track_boxes or not boxes:
        return []
    tracks = np.asarray(track_boxes, dtype=np.float64)
    faces = np.asarray(boxes, dtype=np.float64)
    iou = iou_matrix(tracks, faces)
    shift = centre_shift_matrix(tracks, faces)
    allowed = (iou >= MIN_IOU) | (shift <= MAX_CENTRE_SHIFT)
    cost = np.where(allowed, (1.0 - iou) + np.where(allowed, shift, 0.0), _FORBIDDEN)
    rows, columns = linear_sum_assignment(cost)
    return [(int(row), int(column)) for row, column in zip(rows, columns) if allowed[row, column]]


class FaceTracker:
    """The face tracks of one stream. Not thread-safe: one stream's frames are given to it in order.

    max_missed: frames a track survives without its face (MAX_MISSED_FRAMES).
    """

    def __init__(self, max_missed: int = MAX_MISSED_FRAMES) -> None:
        self.max_missed = max_missed
        self.tracks: list[Track] = []
        self._ids = itertools.count(1)
        # The scene thumbnail of the latest frame that came with one, and the cuts seen so far.
        self._scene: np.ndarray | None = None
        self.cuts = 0

    def update(self, boxes: Sequence[Box], probabilities: np.ndarray | Sequence[Sequence[float]], time_ms: float,
               smoothing_ms: float = DEFAULT_SMOOTHING_MS, scene: np.ndarray | None = None) -> list[TrackedFace]:
        """The track of each face of the next frame, in the order of boxes.

        boxes: N (x, y, width, height) in pixels; probabilities: (N, C), one row per box, each summing to 1;
        time_ms: the frame's time in milliseconds (any origin, increasing along the stream); smoothing_ms:
        the time constant tau in milliseconds, 0 for no smoothing (TrackedFace.smoothed None). Tracks not
        found on this frame count one more missed frame and end after max_missed. scene: the frame's
        scene_thumbnail; when it differs from the previous one's by more than SCENE_CUT, every track ends
        first (the faces start new tracks). None: no cut is looked for on this frame. ValueError when the
        rows of probabilities do not match the boxes or smoothing_ms is negative or not finite.
        """
        check_smoothing_ms(smoothing_ms)
        rows = np.array(probabilities, dtype=np.float64)  # a copy: the tracks keep its rows
        if len(boxes) == 0 and rows.size == 0:
            rows = rows.reshape(0, 0)
        if rows.ndim != 2 or len(rows) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes need ({len(boxes)}, C) probabilities, got shape {rows.shape}")
        if scene is not None:
            if self._scene is not None and scene_change(self._scene, scene) > SCENE_CUT:
                self.tracks = []
                self.cuts += 1
            self._scene = scene
        assigned = {face: track for track, face in match([track.box for track in self.tracks], boxes)}
        faces, new = [], []
        for index, box in enumerate(boxes):
            box = tuple(int(value) for value in box)
            if index in assigned:
                track = self.tracks[assigned[index]]
                track.follow(box, rows[index], time_ms, smoothing_ms)
            else:
                track = Track(next(self._ids), box, rows[index], time_ms)
                new.append(track)
            faces.append(TrackedFace(track.track_id, track.smoothed if smoothing_ms > 0 else None))
        found = set(assigned.values())
        for number, track in enumerate(self.tracks):
            if number not in found:
                track.missed += 1
        self.tracks = [track for track in self.tracks if track.missed <= self.max_missed] + new
        return faces

    def track(self, faces: Sequence[FaceResult], time_ms: float,
              smoothing_ms: float = DEFAULT_SMOOTHING_MS) -> list[TrackedFace]:
        """`update` with the frame path's faces of one frame (FaceResult: box, probabilities and the frame's
        scene thumbnail), in their order. A frame without faces brings no thumbnail: the next frame with
        faces is compared with the last one that had some."""
        boxes = [(face.box.x, face.box.y, face.box.width, face.box.height) for face in faces]
        scene = faces[0].scene if faces else None
        return self.update(boxes, [face.probabilities for face in faces], time_ms, smoothing_ms, scene)
