"""What a ferstream ONNX file holds besides its graph, and the names of its input and output.

Shared by the export (onnxexport.py, which writes it; needs torch) and the serving runtime (runtime.py,
which reads it; no torch), so neither imports the other for it. The int8 IR keeps the same metadata.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from .archspec import ArchSpec
from .calibration import Calibration
from .preprocess import Preprocessing

ONNX_FORMAT = "ferstream-emotion-onnx-v1"
# The graph's input, (N, 1, S, S) float32 after the declared preprocessing, and output, (N, classes)
# probabilities.
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


@dataclass(frozen=True)
class OnnxMetadata:
    """What a ferstream ONNX file records besides its graph (ONNX metadata_props, all strings).

    source_weights_sha256: weights_sha256 of the PyTorch weights the graph was exported from.
    meta: the PyTorch model file's meta (training command, metrics, ...).
    """

    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    spec: ArchSpec
    parameters: int
    source_weights_sha256: str
    meta: dict[str, Any]
    calibration: Calibration | None = None

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
            )
        except KeyError as error:
            raise ValueError(f"{path}: ONNX metadata lacks {error.args[0]!r}") from None
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from None
