"""The accurate tier's expression model: OpenCV Zoo's facial-expression MobileFaceNet, int8 and f32 forms.

The model ("Progressive Teacher", Jiang & Deng, IEEE TIP 2021; MobileFaceNet backbone) was trained on
RAF-DB's real-world photos and reaches 88.27 % there as reported by OpenCV Zoo. It is shipped unchanged as
model/shipped/facial_expression_recognition_mobilefacenet_2022july_int8.onnx (Apache-2.0; licence text and
provenance beside it, ZOO_SHA256 below) with an f32 form of the same weights, ..._f32.onnx, which
`python -m ferstream.model.zoo` writes from it (`dequantize`: every QLinear node becomes its float
operator with the weights multiplied back out, the activations' quantize/dequantize pairs are dropped,
the batch is made dynamic). The int8 graph (QLinearConv) is slow on CPUs without VNNI; which form is
served is measured at load (`load_zoo`), as for the fast CNN.

Input: faces aligned by pipeline/align.py's ARCFACE_TEMPLATE to 112x112 colour; preprocessing here:
RGB, (x / 255 - 0.5) / 0.5, NCHW. Output: 7 logits in ZOO_CLASSES order, turned into probabilities in
the project's EMOTIONS order.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .labels import EMOTIONS
from .formchoice import choose
from .onnxmeta import INPUT_NAME, OUTPUT_NAME
from .runtime import (OnnxRuntimeSession, OpenVinoSession, Session, inference_threads, last_line, median_ms,
                      resolve_runtime)

SHIPPED_DIR = Path(__file__).parent / "shipped"
ZOO_INT8 = SHIPPED_DIR / "facial_expression_recognition_mobilefacenet_2022july_int8.onnx"
ZOO_F32 = SHIPPED_DIR / "facial_expression_recognition_mobilefacenet_2022july_f32.onnx"
# sha256 of the int8 file as OpenCV Zoo publishes it (the Git LFS pointer at opencv/opencv_zoo 7c18c21).
ZOO_SHA256 = "f0d7093aff10e2638c734c5f18a6a7eabd2b9239b20bdb9b8090865a6f69a1ed"
ZOO_SOURCE = ("OpenCV Zoo models/facial_expression_recognition (opencv/opencv_zoo 7c18c21), "
              "Apache-2.0; MobileFaceNet trained on RAF-DB")
# The int8 graph's own tensor names; the f32 form uses the project's (onnxmeta.py).
ZOO_INPUT, ZOO_OUTPUT = "data", "label"
ZOO_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
INPUT_SIZE = 112
# Columns of the model's output in EMOTIONS order.
TO_EMOTIONS = [ZOO_CLASSES.index(name) for name in EMOTIONS]
# Faces per call of the load-time comparison of the forms (the int8 graph takes one face per run).
CHOICE_BATCH = 8
CHOICE_RUNS = 5

log = logging.getLogger("ferstream.model")


def preprocess(faces: np.ndarray) -> np.ndarray:
    """(N, 112, 112, 3) uint8 BGR faces -> (N, 3, 112, 112) float32 RGB in [-1, 1], the model's input.

    ValueError for another shape or dtype."""
    if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
        raise ValueError(f"expected (N, {INPUT_SIZE}, {INPUT_SIZE}, 3) uint8 BGR faces, "
                         f"got {faces.shape} {faces.dtype}")
    rgb = faces[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32)
    return rgb * np.float32(2.0 / 255.0) - np.float32(1.0)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits, float32."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


class ZooClassifier:
    """The served expression model: call it on (N, 112, 112, 3) uint8 BGR aligned faces for (N, 7) float32
    probabilities in EMOTIONS order (softmax of the logits). Attributes: path, runtime, form ("int8" or
    "f32"), form_costs (file name -> ms per face measured when the form was chosen; empty when not
    compared). Safe to call from several threads."""

    def __init__(self, session: Session, path: Path, runtime: str, single: bool) -> None:
        self.session = session
        self.path = path
        self.runtime = runtime
        # The int8 graph's batch is fixed at 1: one run per face.
        self.single = single
        self.form = "int8" if single else "f32"
        self.form_costs: dict[str, float] = {}

    def logits(self, faces: np.ndarray) -> np.ndarray:
        """(N, 7) float32 logits in ZOO_CLASSES order for (N, 112, 112, 3) uint8 BGR faces."""
        x = preprocess(faces)
        if len(x) == 0:
            return np.zeros((0, len(ZOO_CLASSES)), np.float32)
        if self.single:
            return np.concatenate([self.session.run(np.ascontiguousarray(x[i:i + 1])) for i in range(len(x))])
        return self.session.run(np.ascontiguousarray(x))

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        """(N, 7) float32 probabilities in EMOTIONS order; ValueError for input of another shape or dtype."""
        return softmax(self.logits(faces))[:, TO_EMOTIONS]


def open_zoo(path: Path, runtime: str | None = None, threads: int | None = None) -> ZooClassifier:
    """One form of the zoo model (the int8 file or its f32 form) in runtime; FileNotFoundError when missing,
    ValueError (one line naming the file) when the runtime cannot load or run it."""
    runtime = resolve_runtime(runtime)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    threads = inference_threads() if threads is None else threads
    single = path != ZOO_F32 and "int8" in path.name
    try:
        if runtime == "openvino":
            session: Session = OpenVinoSession(path, threads)
        else:
            names = (ZOO_INPUT, ZOO_OUTPUT) if single else (INPUT_NAME, OUTPUT_NAME)
            session = OnnxRuntimeSession(path.read_bytes(), threads, *names)
        classifier = ZooClassifier(session, path, runtime, single)
        classifier(np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), np.uint8))
    except ImportError as error:
        raise ValueError(f"{path}: runtime {runtime} is not installed ({error})") from None
    except Exception as error:  # each runtime has its own error types for a damaged graph
        raise ValueError(f"{path}: {runtime} cannot run this model ({last_line(error)})") from None
    return classifier


def ms_per_face(classifier: ZooClassifier, batch: int = CHOICE_BATCH, runs: int = CHOICE_RUNS) -> float:
    """Median wall milliseconds per face of `runs` calls on `batch` blank faces, after one unmeasured call."""
    faces = np.zeros((batch, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    return median_ms(lambda: classifier(faces), runs) / batch


def load_zoo(runtime: str | None = None, threads: int | None = None,
             forms: tuple[Path, ...] = (ZOO_F32, ZOO_INT8)) -> ZooClassifier:
    """Of the zoo model's forms whose files exist, the one that runs fastest on this CPU, timed once per
    machine (ms_per_face), remembered (formchoice.py) and logged. Why measure: the int8 graph pays only
    where the CPU multiplies int8 fast (VNNI); elsewhere it runs several times slower than the f32 form
    (docs/performance.md#design-measurements). FileNotFoundError when none exists; ValueError as open_zoo."""
    found = {path.name: path for path in forms if path.is_file()}
    if not found:
        raise FileNotFoundError(f"{forms[0]}: no such model file")
    opened = {name: open_zoo(path, runtime, threads) for name, path in found.items()}
    choice = choose({name: [path] for name, path in found.items()}, lambda name: ms_per_face(opened[name]),
                    f"{resolve_runtime(runtime)} threads={threads if threads is not None else inference_threads()}")
    chosen = opened[choice.name]
    log.info("serving %s: %s per face on this CPU%s", choice.name,
             ", ".join(f"{name} {ms:.2f} ms" for name, ms in choice.costs.items()),
             " (timed earlier, remembered)" if choice.remembered else "")
    chosen.form_costs = dict(choice.costs)
    return chosen


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Dequantized:
    """What `dequantize` did: QLinear nodes turned into float ones, quantize/dequantize nodes dropped."""

    converted: int
    dropped: int


def dequantize(model):  # onnx.ModelProto -> (onnx.ModelProto, Dequantized)
    """The f32 graph of an int8 ONNX graph made by ONNX Runtime's static quantizer (QOperator format):
    QLinearConv -> Conv, QLinearMatMul -> MatMul, QLinearAdd -> Add with their weights and biases
    dequantized ((q - zero_point) * scale; a QLinearConv's int32 bias at scale input_scale * weight_scale),
    activations' QuantizeLinear/DequantizeLinear pairs dropped, the batch made dynamic and the input and
    output renamed to onnxmeta's INPUT_NAME / OUTPUT_NAME. Needs the onnx package. ValueError for an
    operator it does not know."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    rename = {graph.input[0].name: INPUT_NAME, graph.output[0].name: OUTPUT_NAME}
    alias: dict[str, str] = {}

    def name(tensor: str) -> str:
        tensor = alias.get(tensor, tensor)
        return rename.get(tensor, tensor)

    def real(q: str, scale: str, zero: str) -> np.ndarray:
        values = inits[q].astype(np.float32) - inits[zero].astype(np.float32)
        scales = inits[scale].astype(np.float32)
        if scales.ndim == 1 and values.ndim > 1:  # per output channel
            scales = scales.reshape((-1,) + (1,) * (values.ndim - 1))
        return (values * scales).astype(np.float32)

    nodes, new_inits = [], {}
    converted = dropped = 0
    for node in graph.node:
        op, inputs, output = node.op_type, list(node.input), node.output[0]
        if op == "QuantizeLinear" and inputs[0] not in inits:
            alias[output] = inputs[0]
            dropped += 1
        elif op == "DequantizeLinear" and inputs[0] not in inits:
            alias[output] = alias.get(inputs[0], inputs[0])
            dropped += 1
        elif op == "QLinearConv":
            x, x_scale, _, w, w_scale, w_zero = inputs[:6]
            weight = real(w, w_scale, w_zero)
            names = [name(x), output + "_weight"]
            new_inits[names[1]] = weight
            if len(inputs) > 8 and inputs[8]:
                scale = inits[x_scale].astype(np.float32) * inits[w_scale].astype(np.float32)
                new_inits[output + "_bias"] = (inits[inputs[8]].astype(np.float32) * scale).astype(np.float32)
                names.append(output + "_bias")
            nodes.append(helper.make_node("Conv", names, [output + "_f"], name=node.name, **attributes(node)))
            alias[output] = output + "_f"
            converted += 1
        elif op == "QLinearMatMul":
            a, _, _, b, b_scale, b_zero = inputs[:6]
            new_inits[output + "_weight"] = real(b, b_scale, b_zero)
            nodes.append(helper.make_node("MatMul", [name(a), output + "_weight"], [output + "_f"], name=node.name))
            alias[output] = output + "_f"
            converted += 1
        elif op == "QLinearAdd":
            a, a_scale, a_zero, b, b_scale, b_zero = inputs[:6]
            operands = []
            for tensor, scale, zero in ((a, a_scale, a_zero), (b, b_scale, b_zero)):
                if tensor in inits:
                    new_inits[tensor + "_f"] = real(tensor, scale, zero)
                    operands.append(tensor + "_f")
                else:
                    operands.append(name(tensor))
            nodes.append(helper.make_node("Add", operands, [output + "_f"], name=node.name))
            alias[output] = output + "_f"
            converted += 1
        elif op in ("Conv", "PRelu", "Flatten", "Relu", "Add", "MatMul", "Gemm", "Reshape", "Mul"):
            nodes.append(helper.make_node(op, [name(tensor) for tensor in inputs], [name(output)],
                                          name=node.name, **attributes(node)))
            for tensor in inputs:
                if tensor in inits:
                    new_inits[tensor] = inits[tensor]
        else:
            raise ValueError(f"dequantize: no float form for {op} (node {node.name or output})")
    # The graph's output is produced under its aliased name: route it to OUTPUT_NAME.
    final = alias.get(graph.output[0].name, graph.output[0].name)
    if final != graph.output[0].name:
        nodes.append(helper.make_node("Identity", [final], [OUTPUT_NAME]))
    size = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim][1:]
    classes = [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim][1:]
    float_graph = helper.make_graph(
        nodes, graph.name or "mobilefacenet_f32",
        [helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, ["N", *size])],
        [helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["N", *classes])],
        [numpy_helper.from_array(np.asarray(value), key) for key, value in new_inits.items()])
    result = helper.make_model(float_graph, opset_imports=[helper.make_opsetid("", 13)],
                               producer_name="ferstream.model.zoo")
    result.ir_version = 8
    onnx.checker.check_model(result)
    return result, Dequantized(converted, dropped)


def attributes(node) -> dict:
    """A node's attributes as keyword arguments for onnx.helper.make_node."""
    from onnx import helper

    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def write_f32(source: Path = ZOO_INT8, out: Path = ZOO_F32) -> Dequantized:
    """Writes the f32 form of the int8 file at source to out, with the source's sha256 and provenance in
    its metadata. ValueError when source is not the published file (its sha256 differs from ZOO_SHA256)."""
    import onnx

    digest = sha256_of(source)
    if digest != ZOO_SHA256:
        raise ValueError(f"{source}: sha256 {digest}, not the published model's {ZOO_SHA256}")
    model, report = dequantize(onnx.load(str(source)))
    for key, value in {"source": ZOO_SOURCE, "source_sha256": digest, "classes": ",".join(ZOO_CLASSES),
                       "derivation": "int8 weights dequantized into a float graph by ferstream.model.zoo"}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(out))
    return report


def main(argv: list[str] | None = None) -> int:
    """python -m ferstream.model.zoo [OUT]: writes the f32 form of the shipped int8 model (needs onnx)."""
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else ZOO_F32
    try:
        report = write_f32(ZOO_INT8, out)
    except (ImportError, ValueError, OSError) as error:
        print(f"ferstream.model.zoo: {error}", file=sys.stderr)
        return 2
    print(f"{out}: {report.converted} operators made float, {report.dropped} quantize/dequantize nodes dropped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
