"""The PyTorch model file: weights plus what is needed to use them, and `load_model` for PyTorch.

One format for every file the trainer writes and everything we ship or evaluate: a torch.save'd dict
  format          "ferstream-emotion-v2"
  arch            ArchSpec fields (rebuilds the network)
  preprocessing   Preprocessing fields (what a crop goes through before the network)
  state_dict      the weights
  meta            class names, training command and data, metrics, and the sha256 of the weights
                  (checked on load)
  training_state  optional: whatever a resumed run needs (optimiser, EMA, RNG states, history);
                  `load_model` ignores it, `read_training_state` returns it.
Files are read with torch.load(weights_only=True), so they hold only tensors and plain Python values.

Version 1 files ("ferstream-emotion-v1", the first shipped model) had no preprocessing field: they
load with Preprocessing(equalize=False) and the input size and normalisation their meta recorded,
which is what the server did with them. The server itself runs the ONNX export (runtime.py); this
module is for training, evaluation with test-time augmentation, and export.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .architectures import ArchSpec, build_model, count_parameters, fold_batch_norm
from .labels import EMOTIONS
from .preprocess import Preprocessing

FORMAT = "ferstream-emotion-v2"
FORMAT_V1 = "ferstream-emotion-v1"
SHIPPED_MODEL = Path(__file__).parent / "shipped" / "ferstream-emotion.pt"
# Version 1 meta keys whose content the preprocessing field now holds.
V1_PREPROCESSING_KEYS = ("input_size", "normalization")


def default_model_path() -> Path:
    """$FER_MODEL when set, else the shipped PyTorch model file."""
    return Path(os.environ.get("FER_MODEL", SHIPPED_MODEL))


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """Hex sha256 over the weights' names and raw bytes in name order (independent of the file's pickling)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def model_payload(network: nn.Module, spec: ArchSpec, preprocessing: Preprocessing, meta: dict[str, Any],
                  training_state: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dict save_model writes: CPU copies of the weights, meta completed with class names and sha256."""
    state = {name: value.detach().cpu().clone() for name, value in network.state_dict().items()}
    meta = {"class_names": list(EMOTIONS),
            **{key: value for key, value in meta.items() if key not in V1_PREPROCESSING_KEYS},
            "weights_sha256": weights_sha256(state)}
    payload = {"format": FORMAT, "arch": spec.to_dict(), "preprocessing": preprocessing.to_dict(),
               "state_dict": state, "meta": meta}
    if training_state is not None:
        payload["training_state"] = training_state
    return payload


def save_model(path: str | os.PathLike, network: nn.Module, spec: ArchSpec, preprocessing: Preprocessing,
               meta: dict[str, Any], training_state: dict[str, Any] | None = None) -> None:
    """Writes a model file atomically (a temporary file beside it, then a rename).

    network: its state_dict must match build_model(spec) (e.g. the EMA module, not a DDP wrapper).
    meta: JSON-like values (training command, config, metrics...); class_names defaults to EMOTIONS and
        weights_sha256 is always recomputed.
    training_state: optional resumable state; like everything else it must load with
        torch.load(weights_only=True): tensors, numbers, strings, None and lists/tuples/dicts of them
        (e.g. store np.random.get_state()'s key array as a tensor). ValueError, and nothing written,
        when the payload would not load that way.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(model_payload(network, spec, preprocessing, meta, training_state), buffer)
    try:
        torch.load(io.BytesIO(buffer.getvalue()), map_location="cpu", weights_only=True)
    except Exception as error:  # the file would be unreadable by load_model: refuse it now, not at load
        raise ValueError(f"{path}: the model file would not load with weights_only=True "
                         f"({first_line(error)}); keep meta and training_state to tensors and plain values") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(buffer.getvalue())
    temporary.replace(path)


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (torch's are long), or its type name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_payload(path: str | os.PathLike) -> dict[str, Any]:
    """The raw dict of a model file (either version), checked for its format, not yet for its contents.

    FileNotFoundError when there is no file; ValueError (one line, naming the file) when it is not a
    readable ferstream model file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file, with long explanations
        raise ValueError(f"{path}: not a readable model file ({first_line(error)})") from None
    if not isinstance(payload, dict) or payload.get("format") not in (FORMAT, FORMAT_V1):
        found = payload.get("format") if isinstance(payload, dict) else None
        raise ValueError(f"{path}: not a ferstream model file (format {found!r}; this version reads "
                         f"{FORMAT} and {FORMAT_V1})")
    return payload


def payload_preprocessing(payload: dict[str, Any], path: str | os.PathLike) -> Preprocessing:
    """The preprocessing a payload declares; version 1 files get equalize=False and their recorded normalisation.

    ValueError naming the file for a missing, unknown or malformed field.
    """
    try:
        if payload["format"] == FORMAT_V1:
            meta = payload.get("meta", {})
            normalization = meta.get("normalization", {})
            return Preprocessing(equalize=False, input_size=int(meta.get("input_size", 48)),
                                 mean=normalization.get("mean", 0.5), std=normalization.get("std", 0.25))
        if "preprocessing" not in payload:
            raise ValueError("preprocessing: the field is missing")
        return Preprocessing.from_dict(payload["preprocessing"])
    except (TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"{path}: {error}") from None


def read_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """The training_state section save_model wrote; ValueError (naming the file) when there is none."""
    payload = read_payload(path)
    state = payload.get("training_state")
    if state is None:
        raise ValueError(f"{path}: holds no training state (a model file saved without training_state)")
    return state


def to_input_tensor(crops: np.ndarray, preprocessing: Preprocessing) -> torch.Tensor:
    """(N, S, S) uint8 grey crops -> (N, 1, S, S) float32 CPU tensor: preprocessing.apply, as a tensor.

    ValueError for crops of another shape or dtype (see Preprocessing.apply).
    """
    return torch.from_numpy(preprocessing.apply(crops))


@dataclass
class EmotionClassifier:
    """A model file loaded into PyTorch: call it on (N, S, S) uint8 grey crops for (N, classes) probabilities.

    S is preprocessing.input_size (48). Used for training-side work (fine-tuning, TTA, export, teachers);
    the server runs the ONNX export through runtime.ServedClassifier instead.
    """

    network: nn.Module
    spec: ArchSpec
    meta: dict[str, Any]
    path: str
    preprocessing: Preprocessing
    # The trained network's count, which folding batch norm for inference does not change.
    parameters: int = 0

    def __post_init__(self) -> None:
        self.parameters = self.parameters or count_parameters(self.network)

    def for_inference(self) -> EmotionClassifier:
        """This model with batch norm folded into the convolutions (same outputs, faster in PyTorch).

        Keep the original for fine-tuning or export; the returned one cannot be trained.
        """
        return replace(self, network=fold_batch_norm(self.network))

    @property
    def class_names(self) -> tuple[str, ...]:
        """The output classes in order (EMOTIONS for every model we train)."""
        return tuple(self.meta["class_names"])

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S) uint8 crops -> (N, classes) float32 probabilities, each row summing to 1."""
        return self.run(self.preprocessing.apply(crops))

    @torch.inference_mode()
    def run(self, x: np.ndarray) -> np.ndarray:
        """(N, 1, S, S) float32 input, already preprocessed -> (N, classes) float32 probabilities."""
        if len(x) == 0:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).contiguous(memory_format=torch.channels_last)
        return torch.softmax(self.network(x), dim=1).numpy()


def load_model(path: str | os.PathLike | None = None) -> EmotionClassifier:
    """The model file at path (default: default_model_path()) in PyTorch, in eval mode on the CPU.

    Reads both format versions and ignores any training_state. FileNotFoundError when the file is
    missing; ValueError naming the file when it is unreadable, declares unknown preprocessing or
    architecture fields, or its weights do not match their recorded sha256.
    """
    path = Path(path) if path is not None else default_model_path()
    payload = read_payload(path)
    preprocessing = payload_preprocessing(payload, path)
    try:
        spec = ArchSpec.from_dict(payload["arch"])
    except (KeyError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None
    state = payload["state_dict"]
    expected = payload["meta"].get("weights_sha256")
    if expected and weights_sha256(state) != expected:
        raise ValueError(f"{path}: weights do not match their recorded sha256")
    network = build_model(spec)
    network.load_state_dict(state)
    network.eval()
    return EmotionClassifier(network=network, spec=spec, meta=payload["meta"], path=str(path),
                             preprocessing=preprocessing)
