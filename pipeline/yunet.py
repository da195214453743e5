"""YuNet's network run by ONNX Runtime, decoded as cv2.FaceDetectorYN decodes it.

Why not cv2.FaceDetectorYN: YuNet is the largest cost of a served frame (the profile in docs/history.md, 2026-12-01),
and the same ONNX graph runs faster in a real runtime: ONNX Runtime, with any input size, beat OpenCV's DNN module and
OpenVINO (docs/performance.md#design-measurements). The decoding below is OpenCV's
(modules/objdetect/src/face_detect.cpp, YuNet 2023mar and later): the image padded to multiples of 32 at its bottom and
right, BGR as float without scaling; for each stride s of 8, 16 and 32 and each cell (row, col) of the s-pixel grid,
score = sqrt(clip(cls) * clip(obj)), box centre ((col, row) + bbox[:2]) * s, size exp(bbox[2:]) * s, landmarks
((col, row) + kps) * s; then non-maximum suppression. A test checks the rows against cv2.FaceDetectorYN on the shared
photos.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

STRIDES = (8, 16, 32)
# The network's input sides must be multiples of its coarsest stride.
DIVISOR = 32
# cv2.FaceDetectorYN's default cap on faces kept by non-maximum suppression.
TOP_K = 5000
# The outputs the decoding reads, per stride: cls_8, obj_8, bbox_8, kps_8, cls_16, ...
OUTPUT_NAMES = tuple(f"{kind}_{stride}" for stride in STRIDES for kind in ("cls", "obj", "bbox", "kps"))


def padded_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) rounded up to multiples of DIVISOR."""
    return -(-width // DIVISOR) * DIVISOR, -(-height // DIVISOR) * DIVISOR


class YuNetNetwork:
    """YuNet's ONNX file in ONNX Runtime on the CPU, for any input size. threads: ONNX Runtime's threads
    (0: its default, every core); they sleep between calls instead of spinning. Not thread-safe by
    contract (each detection thread loads its own detectors), though ONNX Runtime would allow it.

    ONNX Runtime's memory arena keeps the memory of the largest image it has searched for the next one
    (about 0.14 GB after a 1024x1024 tile, the largest a detector searches: detectors.TILE_SIDE). Runs on
    images above SHRINK_ABOVE_PIXELS shrink the arena back when they end, so a burst of 4K or 12 MP frames
    leaves nothing behind, while the usual small copies keep reusing it.
    """

    # 640x480: larger inputs are the exception (fine levels and tiles of large frames).
    SHRINK_ABOVE_PIXELS = 640 * 480

    def __init__(self, model_path: Path, threads: int, nms_iou: float) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning would take CPU from the other detection threads and the classifier between calls.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.nms_iou = nms_iou
        self.shrinking = onnxruntime.RunOptions()
        self.shrinking.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def run(self, image: np.ndarray, threshold: float) -> np.ndarray:
        """(N, 15) float64 rows, all finite, for the faces in one (H, W, 3) uint8 BGR image scored at least
        threshold, in its pixels: x0, y0, x1, y1, score, then the five landmarks' x, y (right eye, left eye,
        nose tip, right and left mouth corner)."""
        height, width = image.shape[:2]
        pad_w, pad_h = padded_size(width, height)
        padded = cv2.copyMakeBorder(image, 0, pad_h - height, 0, pad_w - width, cv2.BORDER_CONSTANT, value=0)
        planes = np.ascontiguousarray(padded.transpose(2, 0, 1), dtype=np.float32)[None]
        options = self.shrinking if pad_w * pad_h > self.SHRINK_ABOVE_PIXELS else None
        outputs = dict(zip(OUTPUT_NAMES, self.session.run(OUTPUT_NAMES, {self.input_name: planes}, options)))
        found = decode(outputs, pad_w, pad_h, threshold)
        # Hostile images (the fuzz test's) can make the network emit NaN or infinite values; they are no faces.
        found = found[np.isfinite(found).all(axis=1)]
        if len(found) < 2:
            return found
        boxes = np.column_stack([found[:, :2], found[:, 2:4] - found[:, :2]]).tolist()
        kept = cv2.dnn.NMSBoxes(boxes, found[:, 4].tolist(), threshold, self.nms_iou, top_k=TOP_K)
        return found[np.asarray(kept, dtype=int).reshape(-1)]


@functools.lru_cache(maxsize=16)
def cell_grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(column, row, stride) of every output cell of a width x height padded input, strides in STRIDES
    order and each stride's cells row by row (the order of the concatenated outputs), as (N, 1) float64."""
    columns, rows, strides = [], [], []
    for stride in STRIDES:
        row, column = np.divmod(np.arange((width // stride) * (height // stride)), width // stride)
        columns.append(column)
        rows.append(row)
        strides.append(np.full(len(row), stride))
    return tuple(np.concatenate(parts).astype(np.float64)[:, None] for parts in (columns, rows, strides))


def decode(outputs: dict[str, np.ndarray], width: int, height: int, threshold: float) -> np.ndarray:
    """(N, 15) rows (as YuNetNetwork.run) of the grid cells of every stride scoring at least threshold, for
    a width x height padded input: one pass over the cells of all strides together."""
    def joined(kind: str, size: int) -> np.ndarray:
        return np.concatenate([outputs[f"{kind}_{stride}"].reshape(-1, size) for stride in STRIDES])

    cls = np.minimum(np.maximum(joined("cls", 1)[:, 0], 0.0), 1.0)
    obj = np.minimum(np.maximum(joined("obj", 1)[:, 0], 0.0), 1.0)
    score = np.sqrt(cls * obj)
    cells = np.flatnonzero(score >= threshold)
    column, row, stride = (axis[cells] for axis in cell_grid(width, height))
    bbox = joined("bbox", 4)[cells].astype(np.float64)
    kps = joined("kps", 10)[cells].astype(np.float64)
    centre = (np.hstack([column, row]) + bbox[:, :2]) * stride
    half = np.exp(bbox[:, 2:]) * stride / 2.0
    rows = np.empty((len(cells), 15))
    rows[:, 0:2] = centre - half
    rows[:, 2:4] = centre + half
    rows[:, 4] = score[cells]
    rows[:, 5::2] = (kps[:, 0::2] + column) * stride
    rows[:, 6::2] = (kps[:, 1::2] + row) * stride
    return rows
