"""fer-bench classifier: faces/s of the emotion CNN alone, in the serving runtime and in PyTorch.

One run times, each labelled "MODEL, RUNTIME":
  shipped                  the served form: the shipped model (or --model) in the default runtime, as
                           the server runs it (the JSON's `shipped` entry): on OpenVINO its int8 IR
  shipped f32, RUNTIME     with an int8 IR served: the f32 ONNX it was quantized from, in each runtime
  shipped, RUNTIME         otherwise: the served ONNX graph in the other installed runtime
  shipped, pytorch         the same weights in PyTorch eager, batch norm folded, channels-last (how the
                           server ran it before the runtime; --unfolded adds "shipped, unfolded")
  vgg ×0.25, RUNTIME       the first shipped model's architecture (random weights): a served model's cost
  vgg ×0.25, pytorch       budget is "no slower than this in PyTorch"
  reference                the reference demo's 13.1 M-parameter VGG in PyTorch (random weights)
Random weights time the same as trained ones. Batches are tiled from the real face crops of the test
frames (hand-drawn boxes, the server's own crop function), and each call is the full classifier call
the server makes: uint8 crops in, preprocessing, probabilities out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from ferstream.model.architectures import ArchSpec, build_model, count_multiply_adds
from ferstream.model.labels import EMOTIONS
from ferstream.model.modelfile import EmotionClassifier, load_model, weights_sha256
from ferstream.model.onnxexport import onnx_bytes
from ferstream.model.preprocess import Preprocessing
from ferstream.model.runtime import (IR_SUFFIX, RUNTIMES, ServedClassifier, default_runtime, default_served_path,
                                     int8_source, load_classifier, open_classifier)
from ferstream.pipeline.crops import face_crops
from ferstream.pipeline.detectors import Detection

from .photos import TestFrame
from .report import markdown_table
from .timing import repeat_for

BATCH_SIZES = (1, 8, 32, 128)
THREAD_COUNTS = (1, 2)
# The 13.1 M-parameter model of the reference demo.
REFERENCE_SPEC = ArchSpec(name="vgg", width=1.0, dropout=0.3)
# The first shipped model's architecture (47 M multiply-adds per face), whose PyTorch time is the budget.
FIRST_SHIPPED_SPEC = ArchSpec(name="vgg", width=0.25, dropout=0.1)
PYTORCH = "pytorch"
# Slices each measurement is cut into; the models take turns slice by slice (run_classifier_bench).
ROUNDS = 5

Classify = Callable[[np.ndarray], np.ndarray]


def random_weights(spec: ArchSpec, label: str) -> EmotionClassifier:
    """A network of spec with seeded random weights and the first model's preprocessing, for timing only."""
    torch.manual_seed(0)
    network = build_model(spec).eval()
    meta = {"class_names": list(EMOTIONS), "weights_sha256": weights_sha256(network.state_dict())}
    return EmotionClassifier(network=network, spec=spec, meta=meta, path=f"{label} (random weights)",
                             preprocessing=Preprocessing(equalize=False))


def reference_vgg() -> EmotionClassifier:
    """The reference demo's VGG (REFERENCE_SPEC) in PyTorch with random weights."""
    return random_weights(REFERENCE_SPEC, "reference VGG")


def real_face_crops(frames: Sequence[TestFrame]) -> np.ndarray:
    """(N, 48, 48) grey crops of every hand-boxed face, cut as the server cuts them."""
    crops = [face_crops(frame.pixels, [Detection(x, y, w, h, 1.0) for x, y, w, h in frame.boxes]) for frame in frames]
    return np.concatenate(crops)


def tiled(crops: np.ndarray, count: int) -> np.ndarray:
    """count crops, repeating crops in order as often as needed."""
    return np.ascontiguousarray(crops[np.arange(count) % len(crops)])


@dataclass(frozen=True)
class ModelDescription:
    """One timed model: its label, runtime, where it came from and its size per face."""

    label: str
    runtime: str  # "openvino", "onnxruntime" or "pytorch"
    source: str
    architecture: str
    width: float
    channels: list[int]
    parameters: int
    multiply_adds: int  # per face, convolutions and dense layers
    summary: str


@dataclass(frozen=True)
class ClassifierTiming:
    """One (model, threads, batch) measurement; ms_per_face = 1000 / faces_per_s (wall clock).

    cpu_ms_per_face: the process's CPU time per face over the same calls, every thread counted: what a
    face costs a fully loaded server, and, unlike wall time, barely moved by other processes' load.
    """

    model: str
    threads: int
    batch: int
    calls: int
    faces_per_s: float
    ms_per_face: float
    ms_per_batch: float
    cpu_ms_per_face: float


@dataclass(frozen=True)
class ClassifierBench:
    """Every model's description and every timing (the fastest of ROUNDS slices), plus the runtimes' versions."""

    models: list[ModelDescription]
    timings: list[ClassifierTiming]
    runtime_versions: dict[str, str]


@dataclass(frozen=True)
class Candidate:
    """A model to time: make(threads) gives its classifier call with that many threads."""

    description: ModelDescription
    make: Callable[[int], Classify]


def describe(label: str, runtime: str, source: str, spec: ArchSpec, parameters: int) -> ModelDescription:
    """The description of a model of spec (multiply-adds counted on a fresh network of spec)."""
    return ModelDescription(label, runtime, source, spec.name, spec.width, spec.block_channels(), parameters,
                            count_multiply_adds(build_model(spec)), spec.summary())


def pytorch_candidate(label: str, classifier: EmotionClassifier) -> Candidate:
    """classifier in PyTorch eager; threads set with torch.set_num_threads before each measurement."""

    def make(threads: int) -> Classify:
        torch.set_num_threads(threads)
        return classifier

    return Candidate(describe(label, PYTORCH, classifier.path, classifier.spec, classifier.parameters), make)


def runtime_candidate(label: str, model: bytes | Path, served: ServedClassifier) -> Candidate:
    """served's graph (ONNX bytes, or an IR's path) in served.runtime, compiled afresh for each thread count."""

    def make(threads: int) -> Classify:
        return open_classifier(model, served.path, served.runtime, threads)

    return Candidate(describe(label, served.runtime, served.path, served.spec, served.parameters), make)


def installed_runtimes() -> dict[str, str]:
    """{runtime: version} of the serving runtimes installed here, the default first."""
    versions = {}
    for runtime in sorted(RUNTIMES, key=lambda name: name != default_runtime()):
        try:
            versions[runtime] = metadata.version(runtime)
        except metadata.PackageNotFoundError:
            pass
    return versions


def pytorch_form(served: ServedClassifier) -> EmotionClassifier:
    """The served model's weights in PyTorch: its own file if PyTorch's, else the .pt beside the .onnx when
    its weights are the ones exported, else random weights of the recorded architecture."""
    path = Path(served.path)
    for candidate in (path, path.with_suffix(".pt")):
        if candidate.suffix != ".onnx" and candidate.is_file():
            classifier = load_model(candidate)
            if classifier.meta["weights_sha256"] == served.source_weights_sha256:
                return classifier
    return random_weights(served.spec, f"{served.spec.summary()} of {path.name}")


def candidates(model_path: Path | None, unfolded: bool) -> list[Candidate]:
    """The models the bench times (see the module docstring), served forms first.

    PyTorch's idle OpenMP threads spin for a while after each call, so the runtimes are timed before it.
    """
    path = model_path or default_served_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    int8 = path.suffix == IR_SUFFIX
    graph = int8_source(path) if int8 else path
    model = graph.read_bytes() if graph.suffix == ".onnx" else onnx_bytes(load_model(graph))
    served = open_classifier(model, str(graph))
    if int8:
        timed = [runtime_candidate("shipped", path, load_classifier(path))]
        others = [(f"shipped f32, {runtime}", runtime) for runtime in installed_runtimes()]
    else:
        timed = [runtime_candidate("shipped", model, served)]
        others = [(f"shipped, {runtime}", runtime) for runtime in list(installed_runtimes())[1:]]
    for label, runtime in others:
        timed.append(runtime_candidate(label, model, open_classifier(model, served.path, runtime)))
    first = random_weights(FIRST_SHIPPED_SPEC, "the first shipped model's architecture")
    first_model = onnx_bytes(first)
    label = f"vgg ×{FIRST_SHIPPED_SPEC.width:g}"
    timed.append(runtime_candidate(f"{label}, {served.runtime}", first_model,
                                   open_classifier(first_model, first.path, served.runtime)))
    shipped_pytorch = pytorch_form(served)
    timed.append(pytorch_candidate("shipped, pytorch", shipped_pytorch.for_inference()))
    if unfolded:
        timed.append(pytorch_candidate("shipped, unfolded", shipped_pytorch))
    timed.append(pytorch_candidate(f"{label}, pytorch", first.for_inference()))
    timed.append(pytorch_candidate("reference", reference_vgg()))
    return timed


def time_classifier(label: str, classify: Classify, crops: np.ndarray, threads: int, batch: int,
                    seconds: float) -> ClassifierTiming:
    """Calls classify on a batch of crops for about seconds, after one warm-up call."""
    inputs = tiled(crops, batch)
    classify(inputs)  # warm-up: first calls allocate and pick kernels
    cpu_start = time.process_time()
    measured = repeat_for(lambda: classify(inputs), seconds)
    cpu_ms_per_face = (time.process_time() - cpu_start) * 1000.0 / (measured.calls * batch)
    faces_per_s = measured.calls_per_s * batch
    return ClassifierTiming(label, threads, batch, measured.calls, faces_per_s, 1000.0 / faces_per_s,
                            measured.ms_per_call, cpu_ms_per_face)


def fastest(rounds: Sequence[ClassifierTiming]) -> ClassifierTiming:
    """The fastest round's rates (wall and CPU each at its own best), with the calls of every round counted."""
    best = max(rounds, key=lambda timing: timing.faces_per_s)
    return replace(best, calls=sum(timing.calls for timing in rounds),
                   cpu_ms_per_face=min(timing.cpu_ms_per_face for timing in rounds))


def run_classifier_bench(frames: Sequence[TestFrame], model_path: Path | None, batch_sizes: Sequence[int],
                         thread_counts: Sequence[int], seconds: float, unfolded: bool = False) -> ClassifierBench:
    """Every (model, threads, batch) combination, each timed for about `seconds` in ROUNDS slices.

    The models take turns, slice by slice, and each keeps its fastest slice: on a machine shared with
    other work (training on the same cores), load then slows every model alike instead of whichever
    model it happened to coincide with, and the fastest slice is closest to the machine's capacity.
    model_path: the served model (.onnx, or a PyTorch file exported in memory); default the shipped one.
    unfolded: also time the shipped weights in PyTorch with batch norm as trained.
    """
    crops = real_face_crops(frames)
    timed = candidates(model_path, unfolded)
    timings = []
    for threads in thread_counts:
        # Made per thread count (runtimes fix theirs when compiling); PyTorch's is set here, process-wide.
        classifiers = [(candidate.description.label, candidate.make(threads)) for candidate in timed]
        for batch in batch_sizes:
            rounds: dict[str, list[ClassifierTiming]] = {label: [] for label, _ in classifiers}
            for _ in range(ROUNDS):
                for label, classify in classifiers:
                    rounds[label].append(time_classifier(label, classify, crops, threads, batch, seconds / ROUNDS))
            timings += [fastest(rounds[label]) for label, _ in classifiers]
    return ClassifierBench([candidate.description for candidate in timed], timings, installed_runtimes())


def classifier_table(bench: ClassifierBench) -> str:
    """Markdown: the models, then one row per timing grouped by threads and batch so the runtimes sit
    side by side. `vs pytorch`: "shipped, pytorch"'s ms/face over the row's (above 1: faster), wall and CPU."""
    models = markdown_table(("model", "runtime", "network", "parameters", "multiply-adds / face"),
                            [(m.label, m.runtime, m.summary, f"{m.parameters / 1e6:.2f} M",
                              f"{m.multiply_adds / 1e6:.0f} M") for m in bench.models])
    baseline = {(t.threads, t.batch): t for t in bench.timings if t.model == "shipped, pytorch"}
    rows = []
    for t in sorted(bench.timings, key=lambda t: (t.threads, t.batch)):
        pytorch = baseline[t.threads, t.batch]
        rows.append((t.model, t.threads, t.batch, t.faces_per_s, t.ms_per_face, t.cpu_ms_per_face,
                     pytorch.ms_per_face / t.ms_per_face, pytorch.cpu_ms_per_face / t.cpu_ms_per_face))
    timings = markdown_table(("model", "threads", "batch", "faces/s", "ms/face", "CPU ms/face", "vs pytorch",
                              "vs pytorch, CPU"), rows)
    return f"{models}\n\n{timings}"
