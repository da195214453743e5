"""The serving runtime: the emotion model's ONNX export, run by OpenVINO (default) or ONNX Runtime.

The server, fer-annotate, fer-eval and fer-bench classify through `load_classifier`, which needs no
PyTorch: the shipped model is committed as model/shipped/ferstream-emotion.onnx beside its PyTorch
file, written by `fer-export` (see onnxexport.py for what the graph holds), and as its int8 form
ferstream-emotion-int8.xml/.bin (quantize.py), which OpenVINO serves where it keeps the f32 graph's
PublicTest accuracy within 0.2 points and runs faster (choose_form); ONNX Runtime serves the .onnx.
Its ONNX metadata (kept in the IR) carries what serving needs besides the graph: class names, the
declared preprocessing, the architecture, the parameter count, the PyTorch file's meta, the sha256 of
the PyTorch weights it came from and, for an export with --calibrate, the temperature baked into the
graph's softmax (calibration.py), the one fitted for mirrored views and the test-time augmentation
served by default (tta.py).

Why OpenVINO by default: it ran the shipped network with less CPU per face than ONNX Runtime and PyTorch
at the batch sizes the server uses (docs/performance.md: the classifier tables and its design
measurements). Both reproduce PyTorch's probabilities within 1e-4 on all of PublicTest. ONNX Runtime stays
selectable (FER_RUNTIME=onnxruntime or --runtime) because it is the reference ONNX implementation, which
the tests check every export against.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .calibration import Calibration
from .formchoice import cache_dir, choose
from .onnxmeta import INPUT_NAME, OUTPUT_NAME, OnnxMetadata
from .tta import check_tta, combine_mirrored, with_mirror_images

SHIPPED_ONNX = Path(__file__).parent / "shipped" / "ferstream-emotion.onnx"
# OpenVINO's IR of a model: the .xml graph with a .bin of the same stem beside it.
IR_SUFFIX = ".xml"
RUNTIMES = ("openvino", "onnxruntime")
DEFAULT_RUNTIME = "openvino"

log = logging.getLogger("ferstream.model")

# Batch of the start-up comparison of the shipped model's forms: the batch the server's classifier
# thread typically runs at with several streams open (fer-bench stream), and the one docs compare at.
CHOICE_BATCH = 32
CHOICE_RUNS = 5
# Most PublicTest accuracy the int8 form may lose against the f32 one and still be served (0.2 points).
INT8_TOLERANCE = 0.002

# Threads of the runtimes loaded from now on; 0 lets the runtime use every core (set_inference_threads).
_threads = 0


def set_inference_threads(threads: int) -> None:
    """Threads each classifier loaded after this call may use (0: the runtime's default, all cores)."""
    global _threads
    if threads < 0:
        raise ValueError(f"threads cannot be negative, got {threads}")
    _threads = threads


def inference_threads() -> int:
    """The thread count set by set_inference_threads (0: the runtime's default)."""
    return _threads


def default_runtime() -> str:
    """$FER_RUNTIME when set, else DEFAULT_RUNTIME; ValueError for a name not in RUNTIMES."""
    runtime = os.environ.get("FER_RUNTIME", DEFAULT_RUNTIME)
    if runtime not in RUNTIMES:
        raise ValueError(f"FER_RUNTIME={runtime!r}: expected one of {', '.join(RUNTIMES)}")
    return runtime


def resolve_runtime(runtime: str | None) -> str:
    """runtime, or default_runtime() when None; ValueError for a name not in RUNTIMES."""
    runtime = runtime or default_runtime()
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
    return runtime


def int8_path(onnx_path: Path) -> Path:
    """Where fer-export --int8 writes the int8 IR of the ONNX file at onnx_path: STEM-int8.xml beside it."""
    return onnx_path.with_name(onnx_path.stem + "-int8" + IR_SUFFIX)


def int8_source(xml_path: Path) -> Path:
    """The ONNX file whose int8 IR int8_path names xml_path (STEM.onnx beside STEM-int8.xml)."""
    return xml_path.with_name(xml_path.stem.removesuffix("-int8") + ".onnx")


def default_served_path(runtime: str | None = None) -> Path:
    """$FER_MODEL when set (a .onnx, an OpenVINO .xml, or a PyTorch model file when torch is installed);
    else the shipped model's int8 IR when runtime (default: default_runtime()) is OpenVINO, its ONNX file
    otherwise."""
    if "FER_MODEL" in os.environ:
        return Path(os.environ["FER_MODEL"])
    return int8_path(SHIPPED_ONNX) if resolve_runtime(runtime) == "openvino" else SHIPPED_ONNX


class Session(Protocol):
    """One runtime's compiled graph: (N, 1, S, S) float32 input -> (N, classes) float32 probabilities."""

    def run(self, x: np.ndarray) -> np.ndarray: ...


def last_line(error: BaseException) -> str:
    """The informative line of a runtime's error (OpenVINO puts it last, after source locations)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


class OpenVinoSession:
    """OpenVINO on the CPU, f32, latency hint, unpinned; one infer request per calling thread (a request
    is not thread-safe). model: serialised ONNX, or the path of an IR .xml (its .bin beside it)."""

    def __init__(self, model: bytes | Path, threads: int) -> None:
        import openvino

        core = openvino.Core()
        # f32 explicitly: on CPUs with AVX512-BF16 or AMX OpenVINO would otherwise run bf16 and miss parity.
        # No pinning: the server's cores are shared with decoding, detection and other processes, and a
        # thread pinned to a busy core cannot move to an idle one.
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                                  "ENABLE_CPU_PINNING": False}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.model = core.read_model(str(model) if isinstance(model, Path) else model)
        self.compiled = core.compile_model(self.model, "CPU", config)
        self.local = threading.local()

    def metadata(self) -> dict[str, str]:
        """The ONNX file's metadata_props, which OpenVINO keeps under rt_info["framework"]."""
        if not self.model.has_rt_info(["framework"]):
            return {}
        framework = self.model.get_rt_info(["framework"]).astype(dict)
        return {str(key): value.astype(str) if hasattr(value, "astype") else str(value)
                for key, value in framework.items()}

    def run(self, x: np.ndarray) -> np.ndarray:
        request = getattr(self.local, "request", None)
        if request is None:
            request = self.local.request = self.compiled.create_infer_request()
        request.infer({0: x})
        # The request reuses its output buffer on the next call: hand back a copy.
        return request.get_output_tensor(0).data.copy()


class OnnxRuntimeSession:
    """ONNX Runtime's CPU execution provider; its threads sleep between calls instead of spinning.
    input_name / output_name: the graph's (a ferstream export's by default)."""

    def __init__(self, model: bytes, threads: int, input_name: str = INPUT_NAME,
                 output_name: str = OUTPUT_NAME) -> None:
        self.input_name, self.output_name = input_name, output_name
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning would take CPU from the detectors and other streams between classifier calls.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def metadata(self) -> dict[str, str]:
        """The ONNX file's metadata_props."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]


SESSIONS = {"openvino": OpenVinoSession, "onnxruntime": OnnxRuntimeSession}


class ServedClassifier:
    """The served emotion model: call it on (N, S, S) uint8 grey crops for (N, classes) float32 probabilities.

    S is preprocessing.input_size (48). Applies the model's declared preprocessing, then runs the ONNX
    graph, on each face and, with tta "flip", on its mirror image too in the same batch (model/tta.py).
    Attributes: path, runtime ("openvino" or "onnxruntime"), tta, preprocessing, spec (ArchSpec),
    parameters (of the trained PyTorch network), meta (the PyTorch file's meta, with its
    weights_sha256), source_weights_sha256, class_names, calibration (or None) and temperature. Safe to
    call from several threads. ValueError for a tta not in model.tta.SERVED_TTA.
    """

    def __init__(self, session: Session, metadata: OnnxMetadata, path: str, runtime: str,
                 tta: str | None = None) -> None:
        self.session = session
        self.metadata = metadata
        self.path = path
        self.runtime = runtime
        self.tta = check_tta(tta or metadata.tta)
        self.preprocessing = metadata.preprocessing
        self.spec = metadata.spec
        self.parameters = metadata.parameters
        self.meta = metadata.meta
        self.source_weights_sha256 = metadata.source_weights_sha256
        # File name -> measured ms per face of each form compared when this one was chosen (choose_form).
        self.form_costs: dict[str, float] = {}

    @property
    def class_names(self) -> tuple[str, ...]:
        """The output classes in order (EMOTIONS for every model we train)."""
        return self.metadata.class_names

    @property
    def calibration(self) -> Calibration | None:
        """The temperature scaling of what is served (where and how it was fitted), None without one: the
        graph's own, or with tta "flip" the one fitted on the mirrored views' mean logits."""
        if self.tta == "flip":
            return self.metadata.flip_calibration
        return self.metadata.calibration

    @property
    def graph_temperature(self) -> float:
        """T of the graph's softmax(logits / T), 1.0 for an uncalibrated export."""
        return self.metadata.calibration.temperature if self.metadata.calibration else 1.0

    @property
    def temperature(self) -> float:
        """T of the served probabilities, softmax(logits / T) with logits averaged over the served views:
        the graph's T, or with tta "flip" the mirrored views' (the graph's when none was fitted)."""
        if self.tta == "flip" and self.metadata.flip_calibration is not None:
            return self.metadata.flip_calibration.temperature
        return self.graph_temperature

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S) uint8 crops -> (N, classes) float32 probabilities; ValueError for another shape or dtype."""
        return self.run(self.preprocessing.apply(crops))

    def run(self, x: np.ndarray) -> np.ndarray:
        """(N, 1, S, S) float32 input, already preprocessed -> (N, classes) float32 probabilities of the served
        views (tta)."""
        if len(x) == 0:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        if self.tta == "flip":
            probabilities = self.session.run(np.ascontiguousarray(with_mirror_images(x), dtype=np.float32))
            return combine_mirrored(probabilities, self.graph_temperature, self.temperature)
        return self.session.run(np.ascontiguousarray(x, dtype=np.float32))


def pytorch_to_onnx(path: Path) -> bytes:
    """The ONNX export of a PyTorch model file, made in memory; needs the [train] extra (torch, onnxscript).

    ValueError naming the file, with the fer-export command, when torch is not installed.
    """
    try:
        from .modelfile import load_model
        from .onnxexport import onnx_bytes
    except ImportError as error:
        raise ValueError(f"{path}: a PyTorch model file, and {error.name or 'torch'} is not installed; serve its "
                         f"ONNX export (fer-export {path} --out {path.with_suffix('.onnx')})") from None
    return onnx_bytes(load_model(path))


def load_classifier(path: str | os.PathLike | None = None, runtime: str | None = None,
                    threads: int | None = None, tta: str | None = None) -> ServedClassifier:
    """The served model at path in runtime (default: default_runtime()).

    Without a path: $FER_MODEL when set; else in OpenVINO the shipped model in the form choose_form picks
    on this CPU (int8 IR or f32 ONNX file); else the shipped ONNX file.
    path: a ferstream .onnx file, its int8 OpenVINO IR (.xml, OpenVINO only), or a PyTorch model file
    (exported in memory first; needs torch). threads: runtime threads (default: inference_threads()).
    tta: "none" or "flip" (model/tta.py); None: the model's declared default.
    Loads completely or not at all: FileNotFoundError when the file is missing, ValueError (one line
    naming the file) when the runtime cannot read it or its metadata is missing or unknown.
    """
    runtime = resolve_runtime(runtime)
    if path is None and runtime == "openvino" and "FER_MODEL" not in os.environ:
        return choose_form(SHIPPED_ONNX, threads, tta)
    path = Path(path) if path is not None else default_served_path(runtime)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    if path.suffix == IR_SUFFIX:
        if runtime != "openvino":
            raise ValueError(f"{path}: an OpenVINO IR, which {runtime} cannot run; serve the .onnx file instead")
        if not path.with_suffix(".bin").is_file():
            raise FileNotFoundError(f"{path.with_suffix('.bin')}: no such file (the IR's weights)")
        return open_classifier(path, str(path), runtime, threads, tta)
    model = path.read_bytes() if path.suffix == ".onnx" else pytorch_to_onnx(path)
    return open_classifier(model, str(path), runtime, threads, tta)


def median_ms(call: Callable[[], object], runs: int = CHOICE_RUNS) -> float:
    """Median wall milliseconds of `runs` calls of call(), after one unmeasured call (the warm-up)."""
    call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000.0


def ms_per_face(classifier: ServedClassifier, batch: int = CHOICE_BATCH, runs: int = CHOICE_RUNS) -> float:
    """Median wall milliseconds per face of `runs` calls on a batch of blank crops, after one unmeasured call.
    The graph's cost does not depend on the pixels."""
    size = classifier.preprocessing.input_size
    x = classifier.preprocessing.apply(np.zeros((batch, size, size), dtype=np.uint8))
    return median_ms(lambda: classifier.run(x), runs) / batch


def choose_form(onnx_path: Path, threads: int | None = None, tta: str | None = None) -> ServedClassifier:
    """The model at onnx_path in OpenVINO, as its int8 IR (int8_path) or its f32 ONNX file: accuracy first,
    then speed. The int8 form competes only when its metadata records that, with the served tta, it scored
    within INT8_TOLERANCE of the f32 form's accuracy (fer-export --int8 measures it on PublicTest); then the
    faster on this CPU is served, timed once per machine (ms_per_face) and remembered (formchoice.py), so
    every process of a machine serves the same form. Both figures are logged.

    Why measure the speed: int8 pays only where the CPU multiplies int8 fast (AVX-512 VNNI, AVX-VNNI, AMX),
    and on some AVX2 CPUs too (docs/performance.md). The accuracy measured on one CPU holds on every CPU
    because the int8 graph is quantized with 7-bit weights (model/quantize.py): its integer arithmetic
    cannot saturate on CPUs without VNNI, so every CPU computes the same sums. FileNotFoundError when
    the ONNX file is missing; an int8 IR that is missing or fails its check is left out.
    """
    f32 = load_classifier(onnx_path, "openvino", threads, tta)
    candidates = {onnx_path.name: f32}
    files = {onnx_path.name: [onnx_path]}
    xml = int8_path(onnx_path)
    check = None
    if xml.is_file():
        int8 = load_classifier(xml, "openvino", threads, f32.tta)
        check = int8.metadata.int8_check(f32.tta)
        if check is not None and check.loss <= INT8_TOLERANCE:
            candidates[xml.name], files[xml.name] = int8, [xml, xml.with_suffix(".bin")]
    choice = choose(files, lambda name: ms_per_face(candidates[name]),
                    f"openvino threads={threads if threads is not None else inference_threads()} tta={f32.tta}")
    chosen = candidates[choice.name]
    accuracy = (f"int8 {check.int8_accuracy:.2%} against f32 {check.f32_accuracy:.2%} on {check.faces} faces "
                f"of {Path(check.data.get('path', '?')).name}" if check else "int8 accuracy not measured")
    log.info("serving %s (tta %s): %s (tolerance %.1f points); %s at batch %d on this CPU%s",
             choice.name, chosen.tta, accuracy, INT8_TOLERANCE * 100,
             ", ".join(f"{name} {ms:.3f} ms/face" for name, ms in choice.costs.items()), CHOICE_BATCH,
             " (timed earlier, remembered in " + str(cache_dir()) + ")" if choice.remembered else "")
    chosen.form_costs = dict(choice.costs)
    return chosen


def open_classifier(model: bytes | Path, path: str, runtime: str | None = None,
                    threads: int | None = None, tta: str | None = None) -> ServedClassifier:
    """A ServedClassifier from serialised ONNX bytes (or an IR .xml's path, OpenVINO only); path names the
    model in errors and reports.

    Same defaults and errors as load_classifier.
    """
    runtime = resolve_runtime(runtime)
    try:
        session = SESSIONS[runtime](model, inference_threads() if threads is None else threads)
    except ImportError as error:
        raise ValueError(f"{path}: runtime {runtime} is not installed ({error})") from None
    except Exception as error:  # each runtime has its own error types for a damaged graph
        raise ValueError(f"{path}: {runtime} cannot load this model ({last_line(error)})") from None
    metadata = OnnxMetadata.from_props(session.metadata(), path)
    classifier = ServedClassifier(session, metadata, path, runtime, tta)
    check_runs(classifier)
    return classifier


def check_runs(classifier: ServedClassifier) -> None:
    """One blank crop through the graph, so a graph that disagrees with its metadata fails at load, not later.

    ValueError naming the file when the graph does not run on the declared input size or does not
    return one probability per class.
    """
    size = classifier.preprocessing.input_size
    try:
        probabilities = classifier(np.zeros((1, size, size), dtype=np.uint8))
    except Exception as error:
        raise ValueError(f"{classifier.path}: the graph does not run on {size} px crops "
                         f"({last_line(error)})") from None
    if probabilities.shape != (1, len(classifier.class_names)):
        raise ValueError(f"{classifier.path}: the graph returns {probabilities.shape[1:]} values per face "
                         f"for {len(classifier.class_names)} classes")
