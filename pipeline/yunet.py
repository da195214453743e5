"""YuNet's network run by OpenVINO, decoded as cv2.FaceDetectorYN decodes it.

Why not cv2.FaceDetectorYN: YuNet is the largest cost of a served frame (README's profile: 43 % of the
server's CPU), and the same ONNX graph runs in OpenVINO, which the server already loads for the emotion
model, in about 55 % of the time of OpenCV's DNN module: 2.7 against 4.8 ms for a 320x240 copy on one
thread, decoding included (the development machine, an AVX-512 Xeon). The decoding below is OpenCV's
(modules/objdetect/src/face_detect.cpp, YuNet 2023mar and later): the image padded to multiples of 32 at
its bottom and right, BGR as float without scaling; for each stride s of 8, 16 and 32 and each cell (row,
col) of the s-pixel grid, score = sqrt(clip(cls) * clip(obj)), box centre ((col, row) + bbox[:2]) * s,
size exp(bbox[2:]) * s, landmarks ((col, row) + kps) * s; then non-maximum suppression. A test checks the
rows against cv2.FaceDetectorYN on the shared photos.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from openvino import InferRequest, Model

STRIDES = (8, 16, 32)
# The network's input sides must be multiples of its coarsest stride.
DIVISOR = 32
# cv2.FaceDetectorYN's default cap on faces kept by non-maximum suppression.
TOP_K = 5000
# The network compiled for one input size runs faster than the one compiled for any size (1.92 against
# 2.20 ms for 320x256 on one thread, the development machine), but each compilation takes about 100 ms: a
# size gets its own network once this many images of it have come, so one-off sizes never pay for it.
FIXED_AFTER = 8
# Sizes with a network of their own, the most recently used kept.
FIXED_SIZES = 8
# Sizes counted towards FIXED_AFTER before the count starts over, so odd sizes cannot fill memory.
COUNTED_SIZES = 256


def padded_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) rounded up to multiples of DIVISOR."""
    return -(-width // DIVISOR) * DIVISOR, -(-height // DIVISOR) * DIVISOR


class YuNetNetwork:
    """YuNet's ONNX file compiled by OpenVINO on the CPU: once for any input size, and once more for each
    size that keeps coming (FIXED_AFTER); not thread-safe (one infer request per compiled network).

    The uint8 BGR image goes in as it is (N, H, W, 3): OpenVINO converts it to the float planes the network
    takes inside the graph. threads: OpenVINO's threads (0: its default, every core).
    """

    def __init__(self, model_path: Path, threads: int, nms_iou: float) -> None:
        import openvino
        from openvino.preprocess import PrePostProcessor

        self.core = openvino.Core()
        self.config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "ENABLE_CPU_PINNING": False}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        steps = PrePostProcessor(self.core.read_model(str(model_path)))
        steps.input().tensor().set_element_type(openvino.Type.u8).set_layout(openvino.Layout("NHWC"))
        steps.input().model().set_layout(openvino.Layout("NCHW"))
        self.model = steps.build()
        # An output can carry several tensor names ("291" and "cls_8"): keep the decoding's names.
        self.output_names = [name for output in self.model.outputs for name in output.get_names()
                             if name.split("_")[0] in ("cls", "obj", "bbox", "kps")]
        self.any_size = self.compile(self.model)
        self.fixed: collections.OrderedDict[tuple[int, int], InferRequest] = collections.OrderedDict()
        self.seen: collections.Counter[tuple[int, int]] = collections.Counter()
        self.nms_iou = nms_iou

    def compile(self, model: Model) -> InferRequest:
        """One infer request of model compiled on the CPU with this network's settings."""
        return self.core.compile_model(model, "CPU", self.config).create_infer_request()

    def request_for(self, width: int, height: int) -> InferRequest:
        """The infer request for padded images of width x height: the size's own network once it has come
        FIXED_AFTER times (compiled then, about 100 ms), else the one for any size."""
        size = (width, height)
        if size in self.fixed:
            self.fixed.move_to_end(size)
            return self.fixed[size]
        if len(self.seen) >= COUNTED_SIZES:
            self.seen.clear()
        self.seen[size] += 1
        if self.seen[size] < FIXED_AFTER:
            return self.any_size
        model = self.model.clone()
        model.reshape([1, height, width, 3])
        self.fixed[size] = self.compile(model)
        if len(self.fixed) > FIXED_SIZES:
            self.fixed.popitem(last=False)
        return self.fixed[size]

    def run(self, image: np.ndarray, threshold: float) -> np.ndarray:
        """(N, 15) float64 rows, all finite, for the faces in one (H, W, 3) uint8 BGR image scored at least
        threshold, in its pixels: x0, y0, x1, y1, score, then the five landmarks' x, y (right eye, left eye,
        nose tip, right and left mouth corner)."""
        height, width = image.shape[:2]
        pad_w, pad_h = padded_size(width, height)
        padded = cv2.copyMakeBorder(image, 0, pad_h - height, 0, pad_w - width, cv2.BORDER_CONSTANT, value=0)
        request = self.request_for(pad_w, pad_h)
        request.infer({0: padded[None]})
        outputs = {name: request.get_tensor(name).data for name in self.output_names}
        found = np.concatenate([decode(outputs, stride, pad_w // stride, threshold) for stride in STRIDES])
        # Hostile images (the fuzz test's) can make the network emit NaN or infinite values; they are no faces.
        found = found[np.isfinite(found).all(axis=1)]
        if len(found) < 2:
            return found
        boxes = np.column_stack([found[:, :2], found[:, 2:4] - found[:, :2]]).tolist()
        kept = cv2.dnn.NMSBoxes(boxes, found[:, 4].tolist(), threshold, self.nms_iou, top_k=TOP_K)
        return found[np.asarray(kept, dtype=int).reshape(-1)]


def decode(outputs: dict[str, np.ndarray], stride: int, columns: int, threshold: float) -> np.ndarray:
    """(N, 15) rows (as YuNetNetwork.run) of one stride's grid cells scoring at least threshold."""
    cls = np.minimum(np.maximum(outputs[f"cls_{stride}"].reshape(-1), 0.0), 1.0)
    obj = np.minimum(np.maximum(outputs[f"obj_{stride}"].reshape(-1), 0.0), 1.0)
    score = np.sqrt(cls * obj)
    cells = np.flatnonzero(score >= threshold)
    rows = np.empty((len(cells), 15))
    if not len(cells):
        return rows
    bbox = outputs[f"bbox_{stride}"].reshape(-1, 4)[cells].astype(np.float64)
    kps = outputs[f"kps_{stride}"].reshape(-1, 10)[cells].astype(np.float64)
    col, row = (cells % columns)[:, None], (cells // columns)[:, None]
    centre = (np.hstack([col, row]) + bbox[:, :2]) * stride
    half = np.exp(bbox[:, 2:]) * (stride / 2.0)
    rows[:, 0:2] = centre - half
    rows[:, 2:4] = centre + half
    rows[:, 4] = score[cells]
    rows[:, 5::2] = (kps[:, 0::2] + col) * stride
    rows[:, 6::2] = (kps[:, 1::2] + row) * stride
    return rows
