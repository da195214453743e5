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

from pathlib import Path

import cv2
import numpy as np

STRIDES = (8, 16, 32)
# The network's input sides must be multiples of its coarsest stride.
DIVISOR = 32
# cv2.FaceDetectorYN's default cap on faces kept by non-maximum suppression.
TOP_K = 5000


def padded_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) rounded up to multiples of DIVISOR."""
    return -(-width // DIVISOR) * DIVISOR, -(-height // DIVISOR) * DIVISOR


class YuNetNetwork:
    """YuNet's ONNX file compiled by OpenVINO on the CPU for any input size; not thread-safe (one infer
    request). threads: OpenVINO's threads (0: its default, every core)."""

    def __init__(self, model_path: Path, threads: int, nms_iou: float) -> None:
        import openvino

        core = openvino.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "ENABLE_CPU_PINNING": False}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = core.compile_model(core.read_model(str(model_path)), "CPU", config)
        self.request = compiled.create_infer_request()
        # An output can carry several tensor names ("291" and "cls_8"): index them by the decoding's names.
        self.outputs = {name: port for port in compiled.outputs for name in port.get_names()
                        if name.split("_")[0] in ("cls", "obj", "bbox", "kps")}
        self.nms_iou = nms_iou

    def run(self, image: np.ndarray, threshold: float) -> np.ndarray:
        """(N, 15) float64 rows, all finite, for the faces in one (H, W, 3) uint8 BGR image scored at least
        threshold, in its pixels: x0, y0, x1, y1, score, then the five landmarks' x, y (right eye, left eye,
        nose tip, right and left mouth corner)."""
        height, width = image.shape[:2]
        pad_w, pad_h = padded_size(width, height)
        padded = cv2.copyMakeBorder(image, 0, pad_h - height, 0, pad_w - width, cv2.BORDER_CONSTANT, value=0)
        self.request.infer({0: padded.transpose(2, 0, 1)[None].astype(np.float32)})
        outputs = {name: self.request.get_tensor(port).data for name, port in self.outputs.items()}
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
    cls = np.clip(outputs[f"cls_{stride}"].reshape(-1), 0.0, 1.0)
    obj = np.clip(outputs[f"obj_{stride}"].reshape(-1), 0.0, 1.0)
    score = np.sqrt(cls * obj)
    cells = np.flatnonzero(score >= threshold)
    bbox = outputs[f"bbox_{stride}"].reshape(-1, 4)[cells].astype(np.float64)
    kps = outputs[f"kps_{stride}"].reshape(-1, 10)[cells].astype(np.float64)
    col, row = (cells % columns).astype(np.float64), (cells // columns).astype(np.float64)
    centre_x, centre_y = (col + bbox[:, 0]) * stride, (row + bbox[:, 1]) * stride
    half_w, half_h = np.exp(bbox[:, 2]) * stride / 2.0, np.exp(bbox[:, 3]) * stride / 2.0
    landmarks = np.empty_like(kps)
    landmarks[:, 0::2] = (kps[:, 0::2] + col[:, None]) * stride
    landmarks[:, 1::2] = (kps[:, 1::2] + row[:, None]) * stride
    return np.column_stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h,
                            score[cells], landmarks])
