"""fer-bench reference: the reference demo's per-frame pipeline, re-created in-process, against our server.

Per frame, as the reference did it: decode, resize to 700x400, the ResNet-10 SSD on a 300x300
blob, then a Python loop over its detections that crops each face, shrinks it to 48x48 and runs
the 13.1 M-parameter VGG on it alone (batch 1). Our side is `fer-bench stream` on the same frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ferstream.pipeline import weights
from ferstream.pipeline.detectors import load_ssd
from ferstream.model.modelfile import EmotionClassifier

from .classifier import reference_vgg
from .report import markdown_table
from .server_process import BenchError
from .stream import StreamBench, StreamSettings, run_stream_bench
from .timing import repeat_for

DISPLAY_SIZE = (700, 400)  # width, height
SSD_INPUT = (300, 300)
SSD_MEAN = (104.0, 177.0, 123.0)
SSD_THRESHOLD = 0.5


class ReferencePipeline:
    """The reference demo's per-frame pipeline: SSD on a 700x400 copy, then the VGG on each face alone."""

    def __init__(self, ssd: cv2.dnn.Net, classifier: EmotionClassifier) -> None:
        self.ssd = ssd
        self.classifier = classifier

    def process(self, jpeg: bytes) -> int:
        """One frame through the reference pipeline; the number of faces classified."""
        frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        frame = cv2.resize(frame, DISPLAY_SIZE)
        height, width = frame.shape[:2]
        blob = cv2.dnn.blobFromImage(cv2.resize(frame, SSD_INPUT), 1.0, SSD_INPUT, SSD_MEAN)
        self.ssd.setInput(blob)
        detections = self.ssd.forward()
        faces = 0
        for index in range(detections.shape[2]):
            if detections[0, 0, index, 2] < SSD_THRESHOLD:
                continue
            x0, y0, x1, y1 = (detections[0, 0, index, 3:7] * np.array([width, height, width, height])).astype(int)
            x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            grey = cv2.cvtColor(frame[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
            self.classifier(cv2.resize(grey, (48, 48))[np.newaxis])
            faces += 1
        return faces


def load_reference_pipeline(models_dir: Path) -> ReferencePipeline:
    """The reference pipeline with the Caffe SSD; BenchError when its weights are missing."""
    ssd = load_ssd(weights.search_folders(models_dir))
    if not ssd.available:
        raise BenchError(f"the reference pipeline needs the SSD: {ssd.detail}")
    return ReferencePipeline(ssd.detector.network, reference_vgg())


@dataclass(frozen=True)
class ReferenceRun:
    """The reference pipeline's frames per second at one thread count."""

    threads: int
    frames: int
    faces_per_frame: float
    fps: float
    ms_per_frame: float


@dataclass(frozen=True)
class ReferenceBench:
    """The reference run and our served run on the same frames."""

    reference: ReferenceRun
    served: StreamBench
    # Our served answered fps over the reference pipeline's fps.
    speedup: float


def run_reference_pipeline(frames: Sequence[bytes], models_dir: Path, threads: int, seconds: float) -> ReferenceRun:
    """Every test frame through the reference pipeline, repeated for `seconds`."""
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    pipeline = load_reference_pipeline(models_dir)
    pipeline.process(frames[0])  # warm-up: first calls allocate and pick kernels
    faces_per_pass: list[int] = []

    def one_pass() -> None:
        faces_per_pass.append(sum(pipeline.process(jpeg) for jpeg in frames))

    measured = repeat_for(one_pass, seconds)
    fps = measured.calls_per_s * len(frames)
    return ReferenceRun(threads, len(frames), faces_per_pass[0] / len(frames), fps, 1000.0 / fps)


def run_reference_bench(frames: Sequence[bytes], models_dir: Path, threads: int, settings: StreamSettings,
                        server: str | None, server_threads: int | None) -> ReferenceBench:
    """The reference pipeline first, then our server on the same frames (never both at once)."""
    reference = run_reference_pipeline(frames, models_dir, threads, settings.seconds)
    served = run_stream_bench(frames, settings, server, models_dir, server_threads)
    return ReferenceBench(reference, served, served.answered_fps / reference.fps)


def reference_table(bench: ReferenceBench) -> str:
    """The two pipelines side by side as a Markdown table."""
    ref, served = bench.reference, bench.served
    offered = "as fast as answered" if served.settings.fps == 0 else f"{served.settings.fps:g} fps offered each"
    rows = [
        (f"reference: 700×400, SSD 300×300, VGG 13.1 M per face ({ref.threads} threads)", ref.fps, ref.ms_per_frame,
         None, "1.0×"),
        (f"ferstream served: {served.settings.streams} stream(s) {offered}, detector {served.detector}",
         served.answered_fps, 1000.0 / served.answered_fps if served.answered_fps else None, served.latency.p99_ms,
         f"{bench.speedup:.1f}×"),
    ]
    return markdown_table(("pipeline", "frames/s", "ms/frame", "p99 latency ms", "vs reference"), rows)
