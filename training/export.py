"""fer-export: the model as TorchScript and ONNX, checked against PyTorch.

Both exports take a (N, 1, 48, 48) float32 batch of grey pixels in 0-255 and return (N, 7)
probabilities in EMOTIONS order: normalisation and softmax are inside, so other runtimes need no
knowledge of ours.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ferstream.model.modelfile import INPUT_SIZE, MEAN, STD, EmotionClassifier, load_model

PARITY_TOLERANCE = 1e-4


class ProbabilityModel(nn.Module):
    """Pixels 0-255 in, probabilities out."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network((pixels / 255.0 - MEAN) / STD), dim=1)


@dataclass
class ExportResult:
    torchscript: Path
    onnx: Path
    torchscript_max_difference: float
    onnx_max_difference: float


def sample_batch(n: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, INPUT_SIZE, INPUT_SIZE), dtype=np.uint8)


def export_torchscript(classifier: EmotionClassifier, target: Path) -> None:
    example = torch.zeros(1, 1, INPUT_SIZE, INPUT_SIZE)
    traced = torch.jit.trace(ProbabilityModel(classifier.network).eval(), example)
    traced.save(str(target))


def export_onnx(classifier: EmotionClassifier, target: Path) -> None:
    example = torch.zeros(1, 1, INPUT_SIZE, INPUT_SIZE)
    torch.onnx.export(ProbabilityModel(classifier.network).eval(), (example,), str(target),
                      input_names=["pixels"], output_names=["probabilities"],
                      dynamic_axes={"pixels": {0: "batch"}, "probabilities": {0: "batch"}},
                      opset_version=17, dynamo=False)


def run_torchscript(path: Path, crops: np.ndarray) -> np.ndarray:
    module = torch.jit.load(str(path))
    with torch.inference_mode():
        return module(torch.from_numpy(crops).float().unsqueeze(1)).numpy()


def run_onnx(path: Path, crops: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"pixels": crops.astype(np.float32)[:, None]})[0]


def export(classifier: EmotionClassifier, out_dir: Path) -> ExportResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(classifier.path).stem
    torchscript, onnx = out_dir / f"{stem}.torchscript.pt", out_dir / f"{stem}.onnx"
    export_torchscript(classifier, torchscript)
    export_onnx(classifier, onnx)
    crops = sample_batch()
    expected = classifier(crops)
    return ExportResult(
        torchscript=torchscript,
        onnx=onnx,
        torchscript_max_difference=float(np.abs(run_torchscript(torchscript, crops) - expected).max()),
        onnx_max_difference=float(np.abs(run_onnx(onnx, crops) - expected).max()),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fer-export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model file (default: the shipped model)")
    parser.add_argument("--out-dir", type=Path, default=Path("exports"), help="where to write (default: exports)")
    args = parser.parse_args(argv)
    try:
        classifier = load_model(args.model)
        result = export(classifier, args.out_dir)
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"fer-export: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"torchscript": str(result.torchscript), "onnx": str(result.onnx),
                      "torchscript_max_difference": result.torchscript_max_difference,
                      "onnx_max_difference": result.onnx_max_difference}))
    worst = max(result.torchscript_max_difference, result.onnx_max_difference)
    if worst > PARITY_TOLERANCE:
        print(f"fer-export: exported outputs differ from PyTorch by {worst:.2e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
