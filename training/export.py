"""fer-export: a PyTorch model file as the ONNX model the server runs, checked against PyTorch.

  fer-export MODEL.pt --out MODEL.onnx

The ONNX file takes the output of the model's declared preprocessing ((N, 1, 48, 48) float32) and
returns (N, 7) probabilities in EMOTIONS order; its metadata records the class names, the
preprocessing, the architecture and the sha256 of the PyTorch weights it came from, so the server
needs nothing else (and no PyTorch). Before anything is written, the export runs in the serving
runtime on sample crops and must match PyTorch within 1e-4. Re-run it whenever the .pt changes:
a test fails when the shipped .onnx no longer matches the shipped .pt.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ferstream.model.modelfile import EmotionClassifier, default_model_path, load_model
from ferstream.model.runtime import RUNTIMES, default_runtime, open_classifier
from ferstream.pipeline.commandline import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, add_version_argument, print_error

PROG = "fer-export"

# Largest difference in any probability the export may show against PyTorch (issue 16's parity bound).
PARITY_TOLERANCE = 1e-4


class ExportMismatch(ValueError):
    """The exported graph's probabilities differ from PyTorch's by more than PARITY_TOLERANCE."""


@dataclass(frozen=True)
class ExportResult:
    """Where the ONNX went and how far its probabilities were from PyTorch's on the sample crops."""

    onnx: Path
    runtime: str
    max_difference: float
    source_weights_sha256: str


def sample_crops(size: int, n: int = 64, seed: int = 0) -> np.ndarray:
    """(n, size, size) uint8 crops for the self-check: smooth random blobs and uniform noise, half each.

    Noise alone saturates few units; smooth images reach the ranges faces do. The tests check real faces.
    """
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (n - n // 2, size, size), dtype=np.uint8)
    coarse = rng.integers(0, 256, (n // 2, 6, 6), dtype=np.uint8)
    smooth = [cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR) for image in coarse]
    return np.concatenate([noise, np.stack(smooth)])


def export(classifier: EmotionClassifier, out: Path, runtime: str | None = None) -> ExportResult:
    """Writes classifier's ONNX model to out (atomically) once it matches PyTorch in runtime.

    Nothing is written on an error: ExportMismatch when the runtime's probabilities differ by more than
    PARITY_TOLERANCE, ValueError when it cannot load the export.
    """
    from ferstream.model.onnxexport import onnx_bytes

    model = onnx_bytes(classifier)
    served = open_classifier(model, str(out), runtime)
    crops = sample_crops(classifier.preprocessing.input_size)
    difference = float(np.abs(served(crops) - classifier(crops)).max())
    if not difference <= PARITY_TOLERANCE:
        raise ExportMismatch(f"{out}: {served.runtime} differs from PyTorch by {difference:.2e} "
                         f"(allowed {PARITY_TOLERANCE:g}); nothing written")
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    temporary.write_bytes(model)
    temporary.replace(out)
    return ExportResult(out, served.runtime, difference, served.source_weights_sha256)


def main(argv: list[str] | None = None) -> int:
    """fer-export's command line: exit 0 once written; 1 (one line on stderr, nothing written) for an unreadable
    model file or an export that does not match PyTorch; 2 for bad usage; 130 on Ctrl-C."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", type=Path, default=None,
                        help=f"PyTorch model file (default: {default_model_path()})")
    parser.add_argument("--out", type=Path, default=None,
                        help="the ONNX file to write (default: MODEL with the suffix .onnx, beside it)")
    parser.add_argument("--runtime", choices=RUNTIMES, default=None,
                        help="serving runtime that checks the export against PyTorch "
                             "(default: $FER_RUNTIME or openvino)")
    add_version_argument(parser)
    args = parser.parse_args(argv)
    model_path = args.model or default_model_path()
    out = args.out or model_path.with_suffix(".onnx")
    try:
        result = export(load_model(model_path), out, args.runtime or default_runtime())
    except (OSError, ValueError, ImportError) as error:  # ExportMismatch included
        print_error(PROG, str(error))
        return EXIT_FAILED
    except KeyboardInterrupt:
        print_error(PROG, "interrupted; nothing written")
        return EXIT_INTERRUPTED
    print(json.dumps({"onnx": str(result.onnx), "runtime": result.runtime, "max_difference": result.max_difference,
                      "source_weights_sha256": result.source_weights_sha256}))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
