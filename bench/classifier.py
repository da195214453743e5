"""fer-bench classifier: faces/s of the emotion CNN alone, shipped model against the reference VGG.

Batches are tiled from the real face crops of the test frames (hand-drawn boxes, the server's own
crop function), and each call is the full classifier call the server makes: uint8 crops in,
probabilities out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ferstream.pipeline.crops import face_crops
from ferstream.pipeline.detectors import Detection
from ferstream.model.modelfile import EmotionClassifier, load_model
from ferstream.model.labels import EMOTIONS
from ferstream.model.architectures import ArchSpec, build_model, count_multiply_adds

from .photos import TestFrame
from .report import markdown_table
from .timing import repeat_for

BATCH_SIZES = (1, 8, 32, 128)
THREAD_COUNTS = (1, 2)
# The 13.1 M-parameter model of the reference demo; random weights time the same as trained ones.
REFERENCE_SPEC = ArchSpec(name="vgg", width=1.0, dropout=0.3)


def reference_vgg() -> EmotionClassifier:
    torch.manual_seed(0)
    network = build_model(REFERENCE_SPEC).eval()
    return EmotionClassifier(network=network, spec=REFERENCE_SPEC, meta={"class_names": list(EMOTIONS)},
                             path="reference VGG (random weights)")


def real_face_crops(frames: Sequence[TestFrame]) -> np.ndarray:
    """(N, 48, 48) grey crops of every hand-boxed face, cut as the server cuts them."""
    crops = [face_crops(frame.pixels, [Detection(x, y, w, h, 1.0) for x, y, w, h in frame.boxes]) for frame in frames]
    return np.concatenate(crops)


def tiled(crops: np.ndarray, count: int) -> np.ndarray:
    return np.ascontiguousarray(crops[np.arange(count) % len(crops)])


@dataclass(frozen=True)
class ModelDescription:
    label: str
    source: str
    architecture: str
    width: float
    channels: list[int]
    parameters: int
    multiply_adds: int  # per face
    summary: str


@dataclass(frozen=True)
class ClassifierTiming:
    model: str
    threads: int
    batch: int
    calls: int
    faces_per_s: float
    ms_per_face: float
    ms_per_batch: float


@dataclass(frozen=True)
class ClassifierBench:
    models: list[ModelDescription]
    timings: list[ClassifierTiming]


def describe(label: str, classifier: EmotionClassifier) -> ModelDescription:
    spec = classifier.spec
    return ModelDescription(label, str(classifier.path), spec.name, spec.width, spec.block_channels(),
                            classifier.parameters, count_multiply_adds(classifier.network), spec.summary())


def time_classifier(label: str, classifier: EmotionClassifier, crops: np.ndarray, threads: int, batch: int,
                    seconds: float) -> ClassifierTiming:
    torch.set_num_threads(threads)
    inputs = tiled(crops, batch)
    classifier(inputs)  # warm-up: first calls allocate and pick kernels
    measured = repeat_for(lambda: classifier(inputs), seconds)
    faces_per_s = measured.calls_per_s * batch
    return ClassifierTiming(label, threads, batch, measured.calls, faces_per_s, 1000.0 / faces_per_s,
                            measured.ms_per_call)


def run_classifier_bench(frames: Sequence[TestFrame], model_path: Path | None, batch_sizes: Sequence[int],
                         thread_counts: Sequence[int], seconds: float, unfolded: bool = False) -> ClassifierBench:
    """Every (model, threads, batch) combination, each timed for about `seconds`.

    unfolded: also time the shipped weights with batch norm as trained, to show what folding saves.
    """
    crops = real_face_crops(frames)
    shipped = load_model(model_path)
    # The shipped model as the server runs it; the reference as its demo ran it, batch norm unfolded.
    models = {"shipped": shipped.for_inference()} | ({"shipped, unfolded": shipped} if unfolded else {})
    models["reference"] = reference_vgg()
    timings = [time_classifier(label, classifier, crops, threads, batch, seconds)
               for label, classifier in models.items() for threads in thread_counts for batch in batch_sizes]
    return ClassifierBench([describe(label, classifier) for label, classifier in models.items()], timings)


def classifier_table(bench: ClassifierBench) -> str:
    models = {model.label: model for model in bench.models}
    rows = [(f"{t.model} ({models[t.model].summary}, {models[t.model].parameters / 1e6:.2f} M parameters, "
             f"{models[t.model].multiply_adds / 1e6:.0f} M multiply-adds)",
             t.threads, t.batch, t.faces_per_s, t.ms_per_face) for t in bench.timings]
    return markdown_table(("model", "threads", "batch", "faces/s", "ms/face"), rows)
