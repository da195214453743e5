"""The ONNX form of a PyTorch model file: the graph the serving runtime (runtime.py) runs, with its metadata.

Graph: input "input", (batch, 1, S, S) float32, the output of the model's declared
Preprocessing.apply (equalisation, if any, and normalisation happen before the graph, in NumPy and
OpenCV, exactly as in training); output "probabilities", (batch, classes) float32 softmax(logits / T),
T = 1 unless the export is calibrated (calibration.py: T fitted by fer-export --calibrate). The batch
dimension is dynamic. Metadata (ONNX metadata_props): see onnxmeta.OnnxMetadata. Needs the [train]
extra (torch, onnx, onnxscript): written with PyTorch's torch.export-based exporter, the TorchScript
one being deprecated.
"""

from __future__ import annotations

import copy
import logging
import warnings

import torch
from torch import nn

from .calibration import Calibration
from .tta import check_tta
from .modelfile import EmotionClassifier
from .onnxmeta import INPUT_NAME, OUTPUT_NAME, OnnxMetadata

# Opset 18: supported by ONNX Runtime >= 1.14 and OpenVINO >= 2023.0, and PyTorch's exporter's default.
OPSET = 18
# The dynamic batch dimension's range in the graph; the server batches at most a few hundred faces.
MAX_BATCH = 65536


class ProbabilityNetwork(nn.Module):
    """network followed by a softmax at temperature T: preprocessed (N, 1, S, S) input -> (N, classes)
    probabilities softmax(logits / T). T = 1 adds no division to the graph."""

    def __init__(self, network: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.network = network
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.network(x)
        if self.temperature != 1.0:
            logits = logits / self.temperature
        return torch.softmax(logits, dim=1)


def metadata_of(classifier: EmotionClassifier, calibration: Calibration | None = None,
                flip_calibration: Calibration | None = None, tta: str = "none") -> OnnxMetadata:
    """What the ONNX file records about classifier: classes, preprocessing, arch, its weights' sha256, the
    calibrations (None: uncalibrated) and the test-time augmentation served by default (model/tta.py)."""
    return OnnxMetadata(class_names=classifier.class_names, preprocessing=classifier.preprocessing,
                        spec=classifier.spec, parameters=classifier.parameters,
                        source_weights_sha256=classifier.meta["weights_sha256"], meta=classifier.meta,
                        calibration=calibration, flip_calibration=flip_calibration, tta=check_tta(tta))


def onnx_bytes(classifier: EmotionClassifier, calibration: Calibration | None = None,
               flip_calibration: Calibration | None = None, tta: str = "none") -> bytes:
    """The serialised ONNX model of classifier (weights embedded, a few MB for the shipped model), its
    softmax at calibration's temperature (None: T = 1); the calibrations and tta recorded in the metadata.

    classifier must come from load_model (its meta holds the weights' sha256). Takes a few seconds:
    the exporter traces the network with torch.export.
    """
    temperature = calibration.temperature if calibration else 1.0
    size = classifier.preprocessing.input_size
    example = torch.zeros(2, 1, size, size)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it warns that torchvision's operators are not registered
    try:
        with warnings.catch_warnings():
            # PyTorch's own internals warn about each other's deprecations while tracing.
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            network = ProbabilityNetwork(copy.deepcopy(classifier.network), temperature).eval()
            program = torch.onnx.export(network, (example,),
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        dynamic_shapes=({0: batch},), opset_version=OPSET, dynamo=True,
                                        verbose=False)
    finally:
        exporter_log.setLevel(level)
    program.model.metadata_props.update(metadata_of(classifier, calibration, flip_calibration, tta).to_props())
    program.model.producer_name = "ferstream"
    return program.model_proto.SerializeToString()
