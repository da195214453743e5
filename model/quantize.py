"""The int8 form of the served model: the ONNX export quantized by NNCF, saved as an OpenVINO IR pair.

Why: on a CPU with AVX512-VNNI the classifier is the second-largest cost of a served frame after YuNet,
and int8 runs it several times cheaper at about the same accuracy (docs/performance.md#design-measurements
and docs/model-card.md#design-measurements; the shipped pair's figures come from `fer-bench classifier`
and `fer-eval`).

How: NNCF post-training quantization (weights per channel, activations per tensor, mixed preset:
asymmetric activations), statistics taken on FER2013 Training faces after the model's declared
preprocessing, never on PublicTest (the selection set) or PrivateTest. Quantized through OpenVINO's
own reader: the same model quantized in its ONNX form by NNCF's ONNX backend lost more accuracy. The IR
keeps the ONNX file's metadata (rt_info "framework"), so runtime.load_classifier reads it like the .onnx;
only OpenVINO runs it (ONNX Runtime serves the .onnx).

Two choices keep the int8 graph close to the f32 one on every CPU (fer-export --int8 measures both forms
on PublicTest and records it; runtime.choose_form serves int8 only within 0.2 points):
- The first convolution (which sees the raw, standardised pixels) and the classifier's last layer stay
  in f32: the int8 graph then agrees with the f32 one on more faces, at no measurable cost
  (docs/model-card.md#design-measurements).
- 7-bit weights everywhere (NNCF's overflow fix): without VNNI, CPUs add pairs of u8 x s8 products in
  16 bits, which can saturate with 8-bit weights and not with 7-bit ones, so every CPU computes the same
  integer sums and an accuracy measured on one holds on all.

Needs nncf (the [train] extra); serving an .xml needs only OpenVINO.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import numpy as np

from .preprocess import Preprocessing

# Faces the activation ranges are estimated on; NNCF's default subset size is 300, more changed nothing
# measurable and costs seconds.
CALIBRATION_FACES = 600


def quantize_int8(onnx_model: bytes, crops: np.ndarray, preprocessing: Preprocessing):
    """An openvino.Model: onnx_model (a ferstream ONNX export) with int8 weights and activations.

    crops: (N, S, S) uint8 grey training faces whose activations set the quantization ranges, one at a
    time through preprocessing. ValueError for no crops; ImportError when nncf or openvino is missing.
    """
    import nncf
    import openvino

    if len(crops) == 0:
        raise ValueError("int8 quantization needs calibration faces, got none")
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    # NNCF logs each layer it leaves in f32 to stdout, where fer-export prints its JSON answer.
    nncf.set_log_level(logging.WARNING)
    model = openvino.Core().read_model(onnx_model)
    samples = nncf.Dataset([preprocessing.apply(crops[index:index + 1]) for index in range(len(crops))])
    # Its progress bar goes to stdout too: keep it on stderr with the other progress.
    with contextlib.redirect_stdout(sys.stderr):
        return nncf.quantize(model, samples, subset_size=len(crops), preset=nncf.QuantizationPreset.MIXED,
                             ignored_scope=nncf.IgnoredScope(names=end_layers(model)),
                             advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE))


def end_layers(model) -> list[str]:
    """Names of the first and the last weighted layer (Convolution or MatMul) of an openvino.Model, in
    execution order; [] for a graph without any."""
    weighted = [op.get_friendly_name() for op in model.get_ordered_ops()
                if op.get_type_name() in ("Convolution", "MatMul")]
    return [weighted[0], weighted[-1]] if weighted else []


def save_ir(model, xml_path: Path) -> None:
    """Writes model as xml_path and the .bin beside it (weights kept as they are: no f16 compression)."""
    import openvino

    xml_path.parent.mkdir(parents=True, exist_ok=True)
    openvino.save_model(model, str(xml_path), compress_to_fp16=False)
