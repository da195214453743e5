"""What a ferstream ONNX file holds besides its graph, and the names of its input and output.

Shared by the export (onnxexport.py, which writes it; needs torch) and the serving runtime (runtime.py,
which reads it; no torch), so neither imports the other for it. The int8 IR keeps the same metadata.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

from .archspec import ArchSpec
from .calibration import Calibration
from .preprocess import Preprocessing
from .tta import check_tta

ONNX_FORMAT = "ferstream-emotion-onnx-v1"
# The graph's input, (N, 1, S, S) float32 after the declared preprocessing, and output, (N, classes)
# probabilities.
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"
# The metadata key of an int8 IR's accuracy checks, added to the IR after quantization (training/export.py).
INT8_CHECKS = "int8_checks"


@dataclass(frozen=True)
class FormCheck:
    """How an int8 graph scored against the f32 graph it was quantized from, on the same labelled faces
    with the same test-time augmentation (fer-export --int8 measures it; runtime.choose_form reads it).

    data: where the faces came from (training.provenance.data_sha256); faces: how many; accuracies in
    [0, 1]; agreement: the share of faces given the same top class by both.
    """

    data: dict[str, Any]
    faces: int
    tta: str
    f32_accuracy: float
    int8_accuracy: float
    agreement: float

    @property
    def loss(self) -> float:
        """Accuracy the int8 graph loses against f32 (negative when it scores higher), in [0, 1]."""
        return self.f32_accuracy - self.int8_accuracy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> FormCheck:
        """The inverse of to_dict; ValueError for missing or unknown fields."""
        try:
            return cls(**fields)
        except TypeError as error:
            raise ValueError(f"int8_checks: {error}") from None


def int8_checks_prop(checks: tuple[FormCheck, ...]) -> str:
    """The metadata string that records checks under INT8_CHECKS."""
    return json.dumps([check.to_dict() for check in checks])


@dataclass(frozen=True)
class OnnxMetadata:
    """What a ferstream ONNX file records besides its graph (ONNX metadata_props, all strings).

    source_weights_sha256: weights_sha256 of the PyTorch weights the graph was exported from.
    meta: the PyTorch model file's meta (training command, metrics, ...).
    calibration: the temperature the graph's softmax applies (None: T = 1); flip_calibration: the one
    fitted on the mean of a face's and its mirror image's logits (model/tta.py), None when not fitted.
    tta: the test-time augmentation served by default ("none" or "flip").
    int8_checks: in an int8 IR only, its accuracy against the f32 graph it came from, one per served
    test-time augmentation measured (none: never measured).
    """

    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    spec: ArchSpec
    parameters: int
    source_weights_sha256: str
    meta: dict[str, Any]
    calibration: Calibration | None = None
    flip_calibration: Calibration | None = None
    tta: str = "none"
    int8_checks: tuple[FormCheck, ...] = ()

    def int8_check(self, tta: str) -> FormCheck | None:
        """The int8 check measured with tta, None when there is none."""
        return next((check for check in self.int8_checks if check.tta == tta), None)

    def to_props(self) -> dict[str, str]:
        """The metadata_props key/value strings written into the ONNX file; ValueError when meta is not JSON."""
        try:
            meta = json.dumps(self.meta)
        except TypeError as error:
            raise ValueError(f"the model's meta cannot be written as JSON ({error})") from None
        props = {
            "ferstream_format": ONNX_FORMAT,
            "class_names": json.dumps(list(self.class_names)),
            "preprocessing": json.dumps(self.preprocessing.to_dict()),
            "arch": json.dumps(self.spec.to_dict()),
            "parameters": str(self.parameters),
            "source_weights_sha256": self.source_weights_sha256,
            "meta": meta,
        }
        if self.calibration is not None:
            props["calibration"] = json.dumps(self.calibration.to_dict())
        if self.flip_calibration is not None:
            props["flip_calibration"] = json.dumps(self.flip_calibration.to_dict())
        if self.tta != "none":
            props["tta"] = self.tta
        if self.int8_checks:
            props[INT8_CHECKS] = int8_checks_prop(self.int8_checks)
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], path: str | os.PathLike) -> OnnxMetadata:
        """The inverse of to_props; ValueError naming path for a missing, unknown or malformed entry."""
        found = props.get("ferstream_format")
        if found != ONNX_FORMAT:
            raise ValueError(f"{path}: not a ferstream ONNX model (metadata ferstream_format is {found!r}, "
                             f"expected {ONNX_FORMAT!r}; write one with fer-export)")
        try:
            return cls(
                class_names=tuple(json.loads(props["class_names"])),
                preprocessing=Preprocessing.from_dict(json.loads(props["preprocessing"])),
                spec=ArchSpec.from_dict(json.loads(props["arch"])),
                parameters=int(props["parameters"]),
                source_weights_sha256=props["source_weights_sha256"],
                meta=json.loads(props["meta"]),
                calibration=Calibration.from_dict(json.loads(props["calibration"])) if "calibration" in props
                else None,
                flip_calibration=Calibration.from_dict(json.loads(props["flip_calibration"]))
                if "flip_calibration" in props else None,
                tta=check_tta(props.get("tta", "none")),
                int8_checks=tuple(FormCheck.from_dict(fields) for fields in json.loads(props.get(INT8_CHECKS, "[]"))),
            )
        except KeyError as error:
            raise ValueError(f"{path}: ONNX metadata lacks {error.args[0]!r}") from None
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from None
